"""Proves the README's signature snippets against real scimgate deliveries.

Starts a receiver, points a webhook endpoint of the running scimgate at it, provokes a few
events, then checks every delivery three ways: the `standardwebhooks` package from PyPI (an
independent implementation), the README's Python snippet, and (in webhook_snippets.cjs) the
README's TypeScript snippet beside the npm `standardwebhooks` package. A tampered body must
fail everywhere.

usage: python webhook_snippets.py BASE_URL INTEGRATION_KEY OUT_JSON
"""

import json
import re
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook

base, integration_key, out = sys.argv[1], sys.argv[2], sys.argv[3]
received = []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()


def call(method, path, body, token=integration_key, content_type="application/json"):
    request = urllib.request.Request(
        base + path if path.startswith("/") else path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


endpoint = call("POST", "/v1/webhook-endpoints", {"url": f"http://127.0.0.1:{server.server_port}/hook"})
secret = endpoint["secret"]
connection = call("POST", "/v1/connections", {"customer_id": "webhook-snippets"})
scim = connection["scim_base_url"].split("?")[0]
user = call(
    "POST",
    scim + "/Users",
    {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "snippets@example.com", "active": True},
    token=connection["scim_api_key"],
    content_type="application/scim+json",
)
call(
    "PATCH",
    scim + "/Users/" + user["id"],
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": False}]},
    token=connection["scim_api_key"],
    content_type="application/scim+json",
)
deadline = time.time() + 30
while len(received) < 3:
    if time.time() > deadline:
        sys.exit(f"only {len(received)} deliveries arrived")
    time.sleep(0.05)

readme = open("README.md").read()
snippet = re.search(r"<!-- snippet: python -->\n```python\n(.*?)```", readme, re.S).group(1)
namespace = {}
exec(snippet, namespace)
verify_webhook = namespace["verify_webhook"]

library = Webhook(secret)
for headers, body in received:
    library.verify(body, headers)
    assert verify_webhook(secret, headers, body), "README Python snippet refused a real delivery"
    tampered = body.replace(b"}", b" }", 1)
    assert not verify_webhook(secret, headers, tampered), "README Python snippet accepted a tampered body"
    try:
        library.verify(tampered, headers)
        sys.exit("standardwebhooks accepted a tampered body")
    except Exception:
        pass
types = [json.loads(body)["type"] for _, body in received]
print(f"python: {len(received)} deliveries ({', '.join(types)}) verified by standardwebhooks and the README snippet")
json.dump(
    {"secret": secret, "deliveries": [{"headers": h, "body": b.decode()} for h, b in received]},
    open(out, "w"),
)
