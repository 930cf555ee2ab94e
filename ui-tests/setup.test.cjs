// Browser tests of the hosted setup page and the <scim-setup> web component, in headless
// Chromium driven by playwright-core. .ci/ui-tests starts scimgate and the example app and
// passes their addresses:
//   SCIMGATE_URL, SCIMGATE_INTEGRATION_KEY, EXAMPLE_APP_URL, SCREENSHOT_DIR
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { chromium } = require("playwright-core");

const scimgate = process.env.SCIMGATE_URL;
const integrationKey = process.env.SCIMGATE_INTEGRATION_KEY;
const exampleApp = process.env.EXAMPLE_APP_URL;
const screenshots = process.env.SCREENSHOT_DIR;

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
});

async function management(method, urlPath, body) {
  const response = await fetch(scimgate + urlPath, {
    method,
    headers: { Authorization: `Bearer ${integrationKey}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${urlPath}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, ...options });
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(error.message));
  // A 4xx page or fetch is logged by the browser itself; those are asserted where they happen.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  return { context, page, problems };
}

async function shoot(page, name) {
  if (screenshots) await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}

async function setupLink(customer, identityProvider) {
  const created = await management("POST", "/v1/connections", {
    customer_id: `${customer}-${Date.now()}`,
    display_name: "Acme Inc",
    identity_provider: identityProvider,
  });
  const link = await management("POST", `/v1/connections/${created.connection_id}/setup-links`, {});
  return { created, link };
}

test("the setup page takes an IT admin from link to a working key", async () => {
  const { created, link } = await setupLink("acme", "okta");
  const { context, page, problems } = await newPage();
  const response = await page.goto(link.url);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /default-src 'none'/);

  await page.getByRole("heading", { level: 1 }).filter({ hasText: "Acme Inc" }).waitFor();
  assert.equal(await page.locator("#base-url").inputValue(), created.scim_base_url);
  assert.equal(await page.getByRole("tab", { name: "Okta" }).getAttribute("aria-selected"), "true");
  await page.getByRole("tabpanel").getByText(created.scim_base_url).first().waitFor();
  await page.locator("#status").filter({ hasText: "Active" }).waitFor();

  // Keyboard: arrows move between identity providers.
  await page.getByRole("tab", { name: "Okta" }).focus();
  await page.keyboard.press("ArrowRight");
  assert.equal(await page.getByRole("tab", { name: "Microsoft Entra ID" }).getAttribute("aria-selected"), "true");
  await page.getByRole("tabpanel").getByText("Tenant URL").waitFor();
  await page.keyboard.press("ArrowLeft");

  // Copy the URL.
  await page.locator('[data-copy="base-url"]').click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), created.scim_base_url);

  // Generate a key that expires in 30 days; it is shown once and copied.
  await page.getByLabel("New token expires").selectOption("30");
  await page.getByRole("button", { name: "Generate a new token" }).click();
  await page.locator("#new-key").waitFor();
  const first = await page.locator("#key-value").inputValue();
  assert.match(first, /^scim_/);
  await page.locator('[data-copy="key-value"]').click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), first);
  await page.locator("#key-expires").filter({ hasNotText: "Never" }).waitFor();
  await shoot(page, "setup-page-new-key");

  // After a reload the key is gone from the page for good.
  await page.reload();
  await page.locator("#status").filter({ hasText: "Active" }).waitFor();
  assert.equal(await page.locator("#new-key").isHidden(), true);
  assert.equal((await page.content()).includes(first), false);

  // Reset: a new key; the old one stops at once.
  await page.getByLabel("New token expires").selectOption("never");
  await page.getByRole("button", { name: "Generate a new token" }).click();
  await page.locator("#new-key").waitFor();
  const second = await page.locator("#key-value").inputValue();
  assert.match(second, /^scim_/);
  assert.notEqual(second, first);
  await page.locator("#key-expires").filter({ hasText: "Never" }).waitFor();

  // The IdP calls with the new key, and with the old one: both show up in the activity list.
  const users = `${created.scim_base_url.split("?")[0]}/Users?count=1`;
  const good = await fetch(users, { headers: { Authorization: `Bearer ${second}` } });
  assert.equal(good.status, 200);
  const stale = await fetch(users, { headers: { Authorization: `Bearer ${first}` } });
  assert.equal(stale.status, 401);
  const rows = page.locator("#activity tr");
  await rows.filter({ hasText: "GET /Users" }).filter({ hasText: "200" }).first().waitFor({ timeout: 15000 });
  await rows.filter({ hasText: "401" }).filter({ hasText: "replaced" }).first().waitFor({ timeout: 15000 });
  await page.locator("#key-used").filter({ hasNotText: "Not yet" }).waitFor({ timeout: 15000 });
  await shoot(page, "setup-page-activity");

  await page.emulateMedia({ colorScheme: "dark" });
  await shoot(page, "setup-page-dark");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: "light" });
  await shoot(page, "setup-page-mobile");
  assert.deepEqual(problems, []);
  await context.close();
});

test("each identity provider's steps carry the connection's URL", async () => {
  const { created, link } = await setupLink("entra", "entra_id");
  const { context, page } = await newPage();
  await page.goto(link.url);
  const entra = page.getByRole("tab", { name: "Microsoft Entra ID" });
  await entra.waitFor();
  assert.equal(await entra.getAttribute("aria-selected"), "true", "preselected from identity_provider");
  assert.match(created.scim_base_url, /aadOptscim062020/);
  for (const name of ["Okta", "Microsoft Entra ID", "Google Workspace", "OneLogin", "JumpCloud", "Other (SCIM 2.0)"]) {
    await page.getByRole("tab", { name }).click();
    await page.getByRole("tabpanel").getByText(created.scim_base_url).first().waitFor();
  }
  await page.getByRole("tab", { name: "Microsoft Entra ID" }).click();
  await page.locator("#link-expiry").filter({ hasText: "This link works until" }).waitFor();
  await shoot(page, "setup-page-entra");
  await context.close();
});

test("a revoked or unknown link shows a clear page", async () => {
  const { created, link } = await setupLink("revoked", "generic");
  await management("DELETE", `/v1/connections/${created.connection_id}/setup-links/${link.setup_link_id}`);
  const { context, page, problems } = await newPage();
  const revoked = await page.goto(link.url);
  assert.equal(revoked.status(), 410);
  await page.getByRole("heading", { name: "This setup link no longer works" }).waitFor();
  await shoot(page, "setup-link-gone");
  const unknown = await page.goto(`${scimgate}/setup/sgs_not-a-real-token`);
  assert.equal(unknown.status(), 404);
  await page.getByRole("heading", { name: "This setup link no longer works" }).waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test("the web component generates, resets and deletes a key through the app's backend", async () => {
  const { context, page, problems } = await newPage({ viewport: { width: 1000, height: 800 } });
  await page.goto(exampleApp);
  const component = page.locator("scim-setup");
  await component.getByText("No API key yet").waitFor();

  await component.getByLabel("Key expires").selectOption("365");
  await component.getByRole("button", { name: "Generate API key" }).click();
  await page.locator("#log li").filter({ hasText: "scim-generate" }).waitFor();
  const first = await component.locator("#key").inputValue();
  assert.match(first, /^scim_/);
  await component.getByText("An API key is active").waitFor();
  await shoot(page, "web-component-generated");

  await component.getByRole("button", { name: "Reset API key" }).click();
  await page.locator("#log li").filter({ hasText: "scim-reset" }).waitFor();
  const second = await component.locator("#key").inputValue();
  assert.notEqual(second, first);

  // The key works against scimgate: the backend created a real connection.
  const { connections } = await management("GET", "/v1/connections?customer_id=example-customer");
  const users = `${connections[0].scim_base_url.split("?")[0]}/Users`;
  assert.equal((await fetch(users, { headers: { Authorization: `Bearer ${second}` } })).status, 200);

  // A date in the past is refused before any request.
  await component.getByLabel("Key expires").selectOption("date");
  await component.getByRole("button", { name: "Reset API key" }).click();
  await component.getByRole("alert").filter({ hasText: "Choose the date" }).waitFor();

  await component.getByRole("button", { name: "Delete" }).click();
  await page.locator("#log li").filter({ hasText: "scim-delete" }).waitFor();
  await component.getByRole("button", { name: "Generate API key" }).waitFor();
  assert.equal((await fetch(users, { headers: { Authorization: `Bearer ${second}` } })).status, 401);

  // Errors from the route are shown.
  await page.evaluate(() => document.querySelector("scim-setup").setAttribute("endpoint", "/api/does-not-exist"));
  await component.getByRole("alert").filter({ hasText: "GET failed with status 404" }).waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});
