// Checks the README's TypeScript snippet, transpiled with `typescript`, against the real
// deliveries webhook_snippets.py saved, beside the npm `standardwebhooks` package.
// usage: node webhook_snippets.cjs DELIVERIES_JSON
const fs = require("node:fs");
const path = require("node:path");
const os = require("node:os");
const ts = require("typescript");
const { Webhook } = require("standardwebhooks");

const readme = fs.readFileSync("README.md", "utf8");
const source = readme.match(/<!-- snippet: typescript -->\n```typescript\n([\s\S]*?)```/)[1];
const js = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 },
}).outputText;
const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "snippet-")), "verify.cjs");
fs.writeFileSync(file, js);
const { verifyWebhook } = require(file);

const { secret, deliveries } = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const library = new Webhook(secret);
for (const { headers, body } of deliveries) {
  library.verify(body, headers);
  if (!verifyWebhook(secret, headers, body)) throw new Error("README TypeScript snippet refused a real delivery");
  const tampered = body.replace("}", " }");
  if (verifyWebhook(secret, headers, tampered)) throw new Error("README TypeScript snippet accepted a tampered body");
  let refused = false;
  try {
    library.verify(tampered, headers);
  } catch {
    refused = true;
  }
  if (!refused) throw new Error("standardwebhooks accepted a tampered body");
}
console.log(`typescript: ${deliveries.length} deliveries verified by standardwebhooks and the README snippet`);
