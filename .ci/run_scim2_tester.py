"""Runs scim2-tester against one SCIM connection and fails on any ERROR or CRITICAL check.

usage: python run_scim2_tester.py BASE_URL TOKEN [MIN_CHECKS]
"""

import sys
from collections import Counter

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

base_url, token = sys.argv[1], sys.argv[2]
min_checks = int(sys.argv[3]) if len(sys.argv) > 3 else 100

client = SyncSCIMClient(Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}))
results = check_server(client)

counts = Counter(r.status.name for r in results)
failed = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
for r in failed:
    print(f"{r.status.name}: {r.resource_type or '-'}: {r.title}: {r.reason}")
print(f"scim2-tester: {len(results)} checks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
if failed:
    sys.exit(1)
if len(results) < min_checks:
    print(f"scim2-tester ran only {len(results)} checks (expected at least {min_checks}): discovery is incomplete")
    sys.exit(1)
