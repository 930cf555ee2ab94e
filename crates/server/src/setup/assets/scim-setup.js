// <scim-setup>: a framework-free custom element for the app's own settings page. It talks to
// the app's backend route (the `endpoint` attribute) with the contract:
//   GET    -> {hasApiKey, expiresAt}
//   POST   {expiresAt} -> {scimApiKey}     (generate)
//   PUT    {expiresAt} -> {scimApiKey}     (reset)
//   DELETE                                  (delete)
// expiresAt is UNIX seconds or null (never). It fires `scim-generate`, `scim-reset` (detail:
// {scimApiKey, expiresAt}) and `scim-delete`. Theme it with --scim-setup-* custom properties.
(() => {
  "use strict";

  const STYLE = `
    :host {
      display: block;
      font-family: var(--scim-setup-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
      color: var(--scim-setup-text, #1a1d23);
      --accent: var(--scim-setup-accent, #3451d1);
      --accent-text: var(--scim-setup-accent-text, #ffffff);
      --surface: var(--scim-setup-surface, #ffffff);
      --border: var(--scim-setup-border, #dde1e7);
      --muted: var(--scim-setup-muted, #5b6270);
      --danger: var(--scim-setup-danger, #b02a37);
      --ok-bg: var(--scim-setup-success-background, #d9f2e4);
      --radius: var(--scim-setup-radius, 10px);
    }
    .box { background: var(--surface); border: 1px solid var(--border); border-radius: var(--radius); padding: 20px; }
    h3 { margin: 0 0 4px; font-size: 1.05rem; }
    p { margin: 6px 0; }
    .muted { color: var(--muted); font-size: .9rem; }
    label { display: block; font-weight: 600; font-size: .85rem; margin: 12px 0 6px; }
    .row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
    input, select { font: inherit; color: inherit; background: transparent; border: 1px solid var(--border); border-radius: 8px; padding: 8px 10px; min-height: 40px; }
    input[readonly] { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; line-height: 1.5; flex: 1; min-width: 0; }
    button { font: inherit; font-weight: 600; border-radius: 8px; padding: 8px 14px; min-height: 40px; cursor: pointer; border: 1px solid var(--border); background: var(--surface); color: inherit; }
    button.primary { background: var(--accent); border-color: var(--accent); color: var(--accent-text); }
    button.danger { color: var(--danger); }
    button:disabled { opacity: .6; cursor: progress; }
    button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
    .key { background: var(--ok-bg); border-radius: 8px; padding: 12px; margin-top: 12px; }
    .error { color: var(--danger); margin-top: 10px; }
    [hidden] { display: none !important; }
  `;

  const TEMPLATE = `
    <div class="box" part="container">
      <h3 part="title">SCIM provisioning</h3>
      <p class="muted" part="status"></p>
      <div class="endpoint" hidden>
        <label for="url">SCIM endpoint URL</label>
        <div class="row"><input id="url" readonly><button type="button" data-copy="url">Copy</button></div>
      </div>
      <label for="expiry">Key expires</label>
      <div class="row">
        <select id="expiry">
          <option value="never">Never</option>
          <option value="30">In 30 days</option>
          <option value="90" selected>In 90 days</option>
          <option value="365">In 365 days</option>
          <option value="date">On a date…</option>
        </select>
        <input id="date" type="date" aria-label="Expiry date" hidden>
      </div>
      <div class="row" style="margin-top:12px">
        <button type="button" class="primary" data-action="generate" hidden>Generate API key</button>
        <button type="button" class="primary" data-action="reset" hidden>Reset API key</button>
        <button type="button" class="danger" data-action="delete" hidden>Delete</button>
      </div>
      <div class="key" role="status" hidden>
        <label for="key">New SCIM API key: copy it now, it is shown only once</label>
        <div class="row"><input id="key" readonly><button type="button" data-copy="key">Copy</button></div>
      </div>
      <p class="error" role="alert" hidden></p>
    </div>
  `;

  class ScimSetup extends HTMLElement {
    static get observedAttributes() {
      return ["endpoint", "scim-endpoint-url"];
    }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `<style>${STYLE}</style>${TEMPLATE}`;
      this.$ = (selector) => root.querySelector(selector);
      this.state = { hasApiKey: false, expiresAt: null };
      root.addEventListener("click", (event) => {
        const button = event.target.closest("button");
        if (!button) return;
        if (button.dataset.copy) this.copy(button);
        if (button.dataset.action) this.act(button.dataset.action, button);
      });
      this.$("#expiry").addEventListener("change", () => {
        this.$("#date").hidden = this.$("#expiry").value !== "date";
      });
    }

    connectedCallback() {
      this.render();
      this.load();
    }

    attributeChangedCallback(name, before, after) {
      if (before === after || !this.isConnected) return;
      if (name === "endpoint") this.load();
      else this.render();
    }

    get endpoint() {
      return this.getAttribute("endpoint") || "";
    }

    async request(method, body) {
      const response = await fetch(this.endpoint, {
        method,
        credentials: "same-origin",
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await response.text();
      let data = {};
      try {
        data = text ? JSON.parse(text) : {};
      } catch {
        data = { error: text };
      }
      if (!response.ok) {
        const message = data.error || data.message || data.error_message || `${method} failed with status ${response.status}`;
        throw new Error(typeof message === "string" ? message : JSON.stringify(message));
      }
      return data;
    }

    async load() {
      if (!this.endpoint) return;
      try {
        const data = await this.request("GET");
        this.state = { hasApiKey: Boolean(data.hasApiKey), expiresAt: data.expiresAt ?? null };
        this.showError(null);
      } catch (error) {
        this.showError(error.message);
      }
      this.render();
    }

    expiresAt() {
      const choice = this.$("#expiry").value;
      if (choice === "never") return null;
      if (choice === "date") {
        const value = this.$("#date").value;
        if (!value) throw new Error("Choose the date the key expires.");
        const at = Math.floor(new Date(`${value}T23:59:59`).getTime() / 1000);
        if (at <= Date.now() / 1000) throw new Error("The expiry date must be in the future.");
        return at;
      }
      return Math.floor(Date.now() / 1000) + Number(choice) * 86400;
    }

    async act(action, button) {
      const buttons = [...this.shadowRoot.querySelectorAll("button[data-action]")];
      buttons.forEach((b) => (b.disabled = true));
      this.showError(null);
      try {
        if (action === "delete") {
          await this.request("DELETE");
          this.state = { hasApiKey: false, expiresAt: null };
          this.$(".key").hidden = true;
          this.dispatchEvent(new CustomEvent("scim-delete", { bubbles: true, composed: true }));
        } else {
          const expiresAt = this.expiresAt();
          const data = await this.request(action === "generate" ? "POST" : "PUT", { expiresAt });
          this.state = { hasApiKey: true, expiresAt };
          this.$("#key").value = data.scimApiKey;
          this.$(".key").hidden = false;
          this.dispatchEvent(
            new CustomEvent(`scim-${action}`, {
              bubbles: true,
              composed: true,
              detail: { scimApiKey: data.scimApiKey, expiresAt },
            }),
          );
          this.$("#key").focus();
          this.$("#key").select();
        }
      } catch (error) {
        this.showError(error.message);
      } finally {
        buttons.forEach((b) => (b.disabled = false));
        this.render();
        if (button.hidden) this.$("button[data-action]:not([hidden])")?.focus();
      }
    }

    showError(message) {
      const error = this.$(".error");
      error.textContent = message || "";
      error.hidden = !message;
    }

    render() {
      const { hasApiKey, expiresAt } = this.state;
      const url = this.getAttribute("scim-endpoint-url");
      this.$(".endpoint").hidden = !url;
      this.$("#url").value = url || "";
      const expiry = expiresAt
        ? `expires ${new Date(Number(expiresAt) * 1000).toLocaleDateString(undefined, { dateStyle: "medium" })}`
        : "never expires";
      this.$(".muted").textContent = hasApiKey
        ? `An API key is active and ${expiry}. Resetting it stops the current key at once.`
        : "No API key yet. Generate one and paste it into your identity provider.";
      this.$('[data-action="generate"]').hidden = hasApiKey;
      this.$('[data-action="reset"]').hidden = !hasApiKey;
      this.$('[data-action="delete"]').hidden = !hasApiKey;
    }

    async copy(button) {
      const input = this.$(`#${button.dataset.copy}`);
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
  }

  if (!customElements.get("scim-setup")) customElements.define("scim-setup", ScimSetup);
})();
