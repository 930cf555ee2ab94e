// The hosted setup page: reads the connection through /setup/{token}/api and lets the IT admin
// generate a token, follow their identity provider's steps and watch the requests arrive.
"use strict";

const token = decodeURIComponent(location.pathname.split("/")[2] || "");
const api = `/setup/${encodeURIComponent(token)}/api`;
const $ = (id) => document.getElementById(id);

const IDPS = [
  { id: "okta", name: "Okta" },
  { id: "entra_id", name: "Microsoft Entra ID" },
  { id: "google_workspace", name: "Google Workspace" },
  { id: "onelogin", name: "OneLogin" },
  { id: "jumpcloud", name: "JumpCloud" },
  { id: "generic", name: "Other (SCIM 2.0)" },
];

// Each step is text with {url} and {token} placeholders, filled in (as code) by render().
const STEPS = {
  okta: [
    "In the Okta Admin Console, open <b>Applications → Applications</b> and select this app (or <b>Create App Integration → SAML 2.0</b> if it is not there yet).",
    "On the <b>General</b> tab, edit <b>App Settings</b>, set <b>Provisioning</b> to <b>SCIM</b> and save.",
    "On the <b>Provisioning</b> tab, choose <b>Integration → Edit</b>. Set <b>SCIM connector base URL</b> to {url} and <b>Unique identifier field for users</b> to {userName}.",
    "Tick <b>Push New Users</b>, <b>Push Profile Updates</b> and <b>Push Groups</b>. Set <b>Authentication Mode</b> to <b>HTTP Header</b> and paste the token from step 2 as the <b>Bearer</b> token.",
    "Click <b>Test Connector Configuration</b>, then <b>Save</b>.",
    "Under <b>Provisioning → To App</b>, enable <b>Create Users</b>, <b>Update User Attributes</b> and <b>Deactivate Users</b>.",
    "Assign people and groups on the <b>Assignments</b> tab, and push groups on the <b>Push Groups</b> tab. They appear in step 4 within seconds.",
  ],
  entra_id: [
    "In the Microsoft Entra admin center, open <b>Enterprise applications</b> and select this app (or <b>New application → Create your own application</b>, non-gallery).",
    "Open <b>Provisioning</b> and choose <b>Get started</b> (or <b>Connect your application</b>). Set <b>Provisioning Mode</b> to <b>Automatic</b>.",
    "Under <b>Admin Credentials</b>, set <b>Tenant URL</b> to {url}. Keep the part after <code>?</code>: it makes Entra ID follow the SCIM standard.",
    "Paste the token from step 2 into <b>Secret Token</b>, click <b>Test Connection</b>, then <b>Save</b>.",
    "Under <b>Users and groups</b>, assign the people and groups to provision.",
    "Back in <b>Provisioning</b>, set <b>Provisioning Status</b> to <b>On</b> and save. Entra ID syncs every 40 minutes; use <b>Provision on demand</b> to test one user now.",
  ],
  google_workspace: [
    "In the Google Admin console, open <b>Apps → Web and mobile apps</b> and select this app.",
    "Open <b>Auto-provisioning</b> and choose <b>Set up auto-provisioning</b>.",
    "When asked for the access token, paste the token from step 2; when asked for the endpoint URL, paste {url}.",
    "Keep the default attribute mapping (the primary email becomes {userName}), choose the groups whose members to provision, and finish.",
    "Turn auto-provisioning <b>ON</b>. Google provisions within about an hour; new users appear in step 4.",
  ],
  onelogin: [
    "In OneLogin, open <b>Applications → Add App</b> and add <b>SCIM Provisioner with SAML (SCIM v2 Enterprise)</b>, or select this app if it exists.",
    "On the <b>Configuration</b> tab, set <b>SCIM Base URL</b> to {url} and paste the token from step 2 into <b>SCIM Bearer Token</b>. Keep the default <b>SCIM JSON Template</b>.",
    "Click <b>Enable</b> under <b>API Connection</b> and save.",
    "On the <b>Provisioning</b> tab, tick <b>Enable provisioning</b> and choose what happens when users are deleted or suspended. Save.",
    "Assign users (and roles for groups) to the app. Their requests appear in step 4.",
  ],
  jumpcloud: [
    "In the JumpCloud Admin Portal, open <b>SSO Applications</b> and select this app (or <b>Add New Application → Custom Application</b>).",
    "On the <b>Identity Management</b> tab, choose <b>SCIM 2.0</b> as the API type.",
    "Set <b>Base URL</b> to {url}, paste the token from step 2 as the <b>Token Key</b> (Bearer), and click <b>Test Connection</b>.",
    "Click <b>Activate</b>, then bind user groups on the <b>User Groups</b> tab: their members are provisioned, and the groups too if group management is on.",
  ],
  generic: [
    "Point your identity provider's SCIM 2.0 client at the base URL {url}. Users live at <code>/Users</code>, groups at <code>/Groups</code>.",
    "Authenticate with the header <code>Authorization: Bearer</code> followed by the token from step 2.",
    "Use {userName} as the unique identifier; PATCH, filters (<code>userName eq \"…\"</code>) and paging are supported.",
    "Discovery lives at <code>/ServiceProviderConfig</code>, <code>/ResourceTypes</code> and <code>/Schemas</code>.",
  ],
};

let baseUrl = "";
let selectedIdp = "generic";

function code(text) {
  const c = document.createElement("code");
  c.textContent = text;
  return c.outerHTML;
}

function renderSteps() {
  const list = document.createElement("ol");
  for (const step of STEPS[selectedIdp]) {
    const li = document.createElement("li");
    li.innerHTML = step.replaceAll("{url}", code(baseUrl)).replaceAll("{userName}", code("userName"));
    list.append(li);
  }
  $("idp-panel").replaceChildren(list);
  $("idp-panel").setAttribute("aria-labelledby", `tab-${selectedIdp}`);
}

function selectTab(id, focus) {
  selectedIdp = id;
  for (const tab of $("idp-tabs").children) {
    const on = tab.dataset.idp === id;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
  }
  renderSteps();
}

function buildTabs() {
  const tabs = $("idp-tabs");
  for (const idp of IDPS) {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.id = `tab-${idp.id}`;
    tab.dataset.idp = idp.id;
    tab.textContent = idp.name;
    tab.setAttribute("aria-controls", "idp-panel");
    tab.addEventListener("click", () => selectTab(idp.id, false));
    tabs.append(tab);
  }
  tabs.addEventListener("keydown", (event) => {
    const order = IDPS.map((i) => i.id);
    const at = order.indexOf(selectedIdp);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: order.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      selectTab(order[(moves[event.key] + order.length) % order.length], true);
    }
  });
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const when = (iso) => (iso ? dateTime.format(new Date(iso)) : null);

function relative(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return when(iso);
}

async function call(path, options) {
  const response = await fetch(api + path, { cache: "no-store", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 404 || response.status === 410) location.reload();
    throw new Error(body.error_message || `The server answered ${response.status}.`);
  }
  return body;
}

function setBadge(element, text, tone) {
  element.textContent = text;
  element.className = `badge ${tone}`;
}

async function loadState() {
  const state = await call("/state");
  const c = state.connection;
  baseUrl = c.scim_base_url;
  $("connection-name").textContent = c.display_name || c.customer_id;
  document.title = `Set up user provisioning · ${c.display_name || c.customer_id}`;
  setBadge($("status"), c.status === "active" ? "Active" : "Disabled by the application", c.status === "active" ? "ok" : "bad");
  $("base-url").value = baseUrl;
  const key = state.key;
  setBadge($("key-status"), key.expired ? "Expired" : "Issued", key.expired ? "bad" : "ok");
  $("key-expires").textContent = key.expires_at ? when(key.expires_at) : "Never";
  $("key-used").textContent = key.last_used_at ? relative(key.last_used_at) : "Not yet";
  $("reset-note").hidden = false;
  $("link-expiry").textContent = `This link works until ${when(state.link_expires_at)}`;
  $("users").textContent = state.users;
  $("groups").textContent = state.groups;
  if (!$("idp-tabs").children.length) {
    buildTabs();
    selectTab(IDPS.some((i) => i.id === c.identity_provider) ? c.identity_provider : "generic", false);
  } else {
    renderSteps();
  }
  $("main").setAttribute("aria-busy", "false");
}

function statusTone(status) {
  if (status < 300) return "ok";
  if (status === 401 || status === 403 || status >= 500) return "bad";
  return "warn";
}

async function loadActivity() {
  const { requests } = await call("/requests");
  const rows = requests.slice(0, 15).map((r) => {
    const tr = document.createElement("tr");
    const cell = (cls) => {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      tr.append(td);
      return td;
    };
    cell("when").textContent = relative(r.time);
    cell().innerHTML = `${code(`${r.method} ${r.path}`)}`;
    const badge = document.createElement("span");
    setBadge(badge, String(r.status), statusTone(r.status));
    cell().append(badge);
    cell().textContent = r.detail || (r.warnings && r.warnings.join("; ")) || "";
    return tr;
  });
  if (rows.length) $("activity").replaceChildren(...rows);
  $("activity-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

function chosenExpiry() {
  const choice = $("expiry").value;
  if (choice === "never") return null;
  if (choice === "date") {
    const date = $("expiry-date").value;
    if (!date) throw new Error("Choose the date the token expires.");
    const at = Math.floor(new Date(`${date}T23:59:59`).getTime() / 1000);
    if (at <= Date.now() / 1000) throw new Error("The expiry date must be in the future.");
    return at;
  }
  return Math.floor(Date.now() / 1000) + Number(choice) * 86400;
}

async function generate() {
  const button = $("generate");
  $("key-error").hidden = true;
  button.disabled = true;
  try {
    const issued = await call("/key", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ expires_at: chosenExpiry() }),
    });
    $("key-value").value = issued.scim_api_key;
    $("new-key").hidden = false;
    $("key-value").focus();
    $("key-value").select();
    await loadState();
  } catch (error) {
    $("key-error").textContent = error.message;
    $("key-error").hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function copy(button) {
  const input = $(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = label), 1500);
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", () => copy(button));
  }
  $("expiry").addEventListener("change", () => {
    $("expiry-date").hidden = $("expiry").value !== "date";
  });
  const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
  $("expiry-date").min = tomorrow;
  $("generate").addEventListener("click", generate);
  try {
    await loadState();
    await loadActivity();
  } catch (error) {
    $("load-error").textContent = error.message;
    $("load-error").hidden = false;
  }
  setInterval(() => {
    loadActivity().catch(() => {});
    loadState().catch(() => {});
  }, 4000);
});
