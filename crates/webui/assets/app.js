// Slipway web UI: the core. Signs in, calls the REST API with the caller's
// bearer token (the UI is a client of /api/v1 exactly as the CLI is), routes
// between pages by the URL's hash and renders them with escaped templates.
// Pages live in maker.js (pipelines, deploy, runs, approvals) and admin.js.

import * as maker from "./maker.js";
import * as admin from "./admin.js";

const TOKEN_KEY = "slipway.token";
const OIDC_KEY = "slipway.oidc";

// ------------------------------------------------------------------ html

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe to put in HTML (element content or a quoted attribute). */
export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

/** HTML that is already safe: the result of `html` or `raw`. */
class Safe {
  constructor(s) { this.s = s; }
  toString() { return this.s; }
}

/** Marks trusted markup; never pass data from the API through it. */
export const raw = (s) => new Safe(s);

function render(v) {
  if (v instanceof Safe) return v.s;
  if (Array.isArray(v)) return v.map(render).join("");
  if (v === null || v === undefined || v === false) return "";
  return esc(v);
}

/** A template tag: every interpolated value is escaped unless it is
 *  itself `html`/`raw`; arrays are joined; null, undefined and false
 *  render nothing (so `${cond && html`...`}` works). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += render(v) + strings[i + 1]; });
  return new Safe(out);
}

// ------------------------------------------------------------------ api

/** An answer of the API that is not a success: status, the one-line
 *  message and, for 422, every unusable field. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `the gateway answered ${status}`);
    this.status = status;
    this.fields = (body && body.fields) || [];
  }
}

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  /** GET /api/v1/me: subject, groups, roles, authenticated_by. */
  me: null,
  /** Admins hold every role. */
  has(role) {
    return !!this.me && (this.me.roles.includes("admin") || this.me.roles.includes(role));
  },
  isAdmin() { return !!this.me && this.me.roles.includes("admin"); },
};

/** Calls the API. Resolves to the parsed JSON (null for 204); rejects with
 *  an ApiError that names the problem. `opts.raw` resolves to the Response. */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const init = { method, headers, signal: opts.signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { error: "The gateway cannot be reached. Check that it is running and that your network allows it." });
  }
  if (!res.ok) {
    let b;
    try { b = await res.json(); } catch { b = { error: `the gateway answered ${res.status} ${res.statusText}` }; }
    const err = new ApiError(res.status, b);
    if (res.status === 401 && path !== "/api/v1/me") {
      signOut(`Your sign-in is no longer accepted (${err.message}). Sign in again.`);
    }
    throw err;
  }
  if (opts.raw) return res;
  if (res.status === 204 || res.status === 202 && res.headers.get("content-length") === "0") return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

/** Reads a server-sent-event stream of the API (fetch, so the bearer token
 *  goes in a header), calling `onEvent(name, data)` for each event until it
 *  ends or `signal` aborts. Resolves when the stream ends. */
export async function stream(path, onEvent, signal) {
  const res = await api("GET", path, undefined, { raw: true, signal });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue;
      let parsed = data.join("\n");
      try { parsed = JSON.parse(parsed); } catch { /* plain text data */ }
      onEvent(name, parsed);
    }
  }
}

// ------------------------------------------------------------------ page helpers

const main = () => document.getElementById("main");
let leaving = [];

/** Runs `fn` when the user leaves the current page (close streams, timers). */
export function onLeave(fn) { leaving.push(fn); }

let navSeq = 0;

/** Thrown by `mountAt` for a page the user has already left: its page
 *  function stops there, and `navigate` ignores it. */
class StaleNavigation extends Error {}

/** The current navigation; a page takes it before its first await. */
export function currentNav() { return navSeq; }

/** `mount` for the page of navigation `nav`, unless the user has moved on
 *  while it loaded (then the newer page stays and this one stops). */
export function mountAt(nav, content) {
  if (nav !== navSeq) throw new StaleNavigation("left this page while it loaded");
  return mount(content);
}

/** Replaces the page's content and moves focus to its heading, so keyboard
 *  and screen-reader users land on the new page. */
export function mount(content) {
  const m = main();
  m.innerHTML = String(content);
  const h1 = m.querySelector("h1");
  if (h1) {
    document.title = `${h1.textContent.trim()} · Slipway`;
    h1.setAttribute("tabindex", "-1");
    h1.focus();
  } else {
    m.focus();
  }
  return m;
}

/** Updates part of the current page without moving focus. */
export function patch(selector, content) {
  const el = main().querySelector(selector);
  if (el) el.innerHTML = String(content);
  return el;
}

/** A short message in the status line (announced to screen readers). */
export function flash(text, kind = "ok") {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = `flash ${kind}`;
  s.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { s.hidden = true; }, 8000);
}

/** A form's fields as an object; checkboxes are booleans, empty text is
 *  left out. */
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.type === "radio") { if (el.checked) out[el.name] = el.value; }
    else if (el.tagName === "SELECT" && el.multiple) out[el.name] = [...el.selectedOptions].map((o) => o.value);
    else if (el.value.trim() !== "") out[el.name] = el.value.trim();
  }
  return out;
}

/** Clears the errors `showErrors` put on a form. */
export function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-error").forEach((e) => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach((e) => {
    e.removeAttribute("aria-invalid");
    // Give back the help text the input was described by before.
    if (e.dataset.describedby) e.setAttribute("aria-describedby", e.dataset.describedby);
    else e.removeAttribute("aria-describedby");
    delete e.dataset.describedby;
  });
}

/** Shows an API error next to what caused it: each 422 field beside the
 *  input whose `name` (or `data-field`) matches the field's path or its
 *  first segment; anything else at the top of the form. Focuses the first. */
export function showErrors(form, err) {
  clearErrors(form);
  const unplaced = [];
  let first = null;
  const fields = err instanceof ApiError && err.fields.length ? err.fields : null;
  for (const f of fields || []) {
    const head = f.field.split(/[.[]/)[0];
    const input = form.querySelector(`[data-field="${CSS.escape(f.field)}"]`)
      || form.querySelector(`[name="${CSS.escape(f.field)}"]`)
      || form.querySelector(`[data-field="${CSS.escape(head)}"]`)
      || form.querySelector(`[name="${CSS.escape(head)}"]`);
    if (!input) { unplaced.push(`${f.field}: ${f.reason}`); continue; }
    const id = `${input.id || input.name || "f"}-error-${Math.random().toString(36).slice(2, 7)}`;
    const p = document.createElement("p");
    p.className = "field-error";
    p.id = id;
    p.textContent = f.reason;
    input.setAttribute("aria-invalid", "true");
    const help = input.getAttribute("aria-describedby");
    if (help) input.dataset.describedby = help;
    // The error first, then the input's own help.
    input.setAttribute("aria-describedby", help ? `${id} ${help}` : id);
    (input.closest(".field") || input).insertAdjacentElement("afterend", p);
    first = first || input;
  }
  if (!fields) unplaced.push(err.message || String(err));
  if (unplaced.length) {
    const box = document.createElement("div");
    box.className = "form-error";
    box.setAttribute("role", "alert");
    box.textContent = unplaced.join("\n");
    form.prepend(box);
    if (!first) { box.setAttribute("tabindex", "-1"); box.focus(); }
  }
  if (first) first.focus();
}

/** Wires a form: on submit, clears errors, disables its buttons, awaits
 *  `action(values, form)` and shows any error next to its field. */
export function onSubmit(form, action) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action(formValues(form), form, ev.submitter);
    } catch (err) {
      if (err.name !== "AbortError") showErrors(form, err);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
}

/** A page that failed to load: the message and a way back. */
export function failed(err) {
  const heading = err.status === 404 ? "Not found" : err.status === 403 ? "Not allowed" : "Something went wrong";
  mount(html`<h1>${heading}</h1>
    <p class="error" role="alert">${err.message || String(err)}</p>
    <p><a href="#/">Back to pipelines</a></p>`);
}

// ------------------------------------------------------------------ formatting

/** A timestamp in the reader's own time zone. */
export function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A run state as a labelled badge (colour is never the only cue). */
export function stateBadge(state) {
  const label = String(state || "").replaceAll("_", " ");
  return html`<span class="badge state-${state}">${label}</span>`;
}

export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** The query part of the hash route as an object. */
export function query() {
  const q = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(q));
}

export function go(path) { location.hash = `#${path}`; }

// ------------------------------------------------------------------ routing

const routes = [];

/** Registers a page: `pattern` like `/runs/:id`; `roles` any of which the
 *  caller needs (admins pass all). */
export function route(pattern, page, roles = []) {
  const names = [];
  const re = new RegExp(`^${pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return "([^/]+)"; })}$`);
  routes.push({ re, names, page, roles });
}

async function navigate() {
  // In-page anchors (the skip link) are not routes.
  if (location.hash && !location.hash.startsWith("#/")) {
    if (!main().dataset.routed) go("/");
    return;
  }
  main().dataset.routed = "1";
  const nav = ++navSeq;
  const fns = leaving;
  leaving = [];
  fns.forEach((f) => { try { f(); } catch { /* leaving anyway */ } });
  const path = (location.hash.slice(1) || "/").split("?")[0] || "/";
  if (path === "/signin") return signInPage();
  if (!session.token) return go("/signin");
  if (!session.me) {
    try {
      session.me = await api("GET", "/api/v1/me");
    } catch (err) {
      if (err.status === 401) return signOut(`Your token was not accepted: ${err.message}`);
      return failed(err);
    }
  }
  renderChrome();
  for (const r of routes) {
    const m = r.re.exec(path);
    if (!m) continue;
    if (r.roles.length && !r.roles.some((role) => session.has(role))) {
      return mount(html`<h1>Not available</h1><p>This page needs the ${r.roles.join(" or ")} role; you have ${session.me.roles.join(", ") || "none"}. Ask an admin.</p>`);
    }
    const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
    try {
      return await r.page(params, query());
    } catch (err) {
      if (err instanceof StaleNavigation || nav !== navSeq) return undefined;
      return failed(err);
    }
  }
  mount(html`<h1>Page not found</h1><p>There is no page at ${path}. <a href="#/">Go to pipelines</a>.</p>`);
}

function renderChrome() {
  const me = session.me;
  const links = [["#/", "Pipelines"], ["#/runs", "Runs"]];
  if (session.has("approver")) links.push(["#/approvals", "Approvals"]);
  if (session.isAdmin()) {
    links.push(["#/admin/environments", "Environments"], ["#/admin/pipelines", "Manage pipelines"],
      ["#/admin/access", "Access"], ["#/admin/webhooks", "Webhooks"], ["#/admin/audit", "Audit"]);
  }
  const here = `#${(location.hash.slice(1) || "/").split("?")[0]}`;
  document.getElementById("nav").innerHTML = String(html`<ul>${links.map(([href, label]) => html`<li><a href="${href}" ${here === href || (href !== "#/" && here.startsWith(href)) ? raw('aria-current="page"') : ""}>${label}</a></li>`)}</ul>`);
  document.getElementById("who").innerHTML = String(html`<span>${me.subject}</span>
    <span class="muted">${me.roles.join(", ")}</span>
    <button type="button" id="signout" class="link">Sign out</button>`);
  document.getElementById("signout").onclick = () => signOut("Signed out.");
}

export function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.me = null;
  document.getElementById("nav").innerHTML = "";
  document.getElementById("who").innerHTML = "";
  if (message) flash(message, "info");
  if (location.hash !== "#/signin") go("/signin");
  else signInPage();
}

function signedIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  session.token = token;
  session.me = null;
  go("/");
}

// ------------------------------------------------------------------ sign-in

async function signInPage() {
  document.getElementById("nav").innerHTML = "";
  document.getElementById("who").innerHTML = "";
  let config = { token: true, oidc: null };
  try { config = await api("GET", "/api/v1/auth/config"); } catch { /* token sign-in still works */ }
  mount(html`<section class="narrow">
    <h1>Sign in to Slipway</h1>
    ${config.oidc && html`<p><button type="button" id="oidc" class="primary">Sign in with your organization</button></p>
      <p class="muted">or with an API token:</p>`}
    <form id="signin" novalidate>
      <div class="field">
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required aria-describedby="token-help">
        <p id="token-help" class="help">An admin creates one for you (<code>slipway admin token create</code>); it starts with <code>slw_</code>. It is kept in this browser tab only.</p>
      </div>
      <button type="submit" class="${config.oidc ? "" : "primary"}">Sign in</button>
    </form></section>`);
  const form = document.getElementById("signin");
  onSubmit(form, async ({ token }) => {
    if (!token) throw new ApiError(422, { error: "enter your API token", fields: [{ field: "token", reason: "enter your API token" }] });
    session.token = token;
    try {
      session.me = await api("GET", "/api/v1/me");
    } catch (err) {
      session.token = null;
      throw new ApiError(422, { error: err.message, fields: [{ field: "token", reason: `not accepted: ${err.message}` }] });
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    go("/");
  });
  const oidc = document.getElementById("oidc");
  if (oidc) oidc.onclick = () => oidcStart(config.oidc).catch((err) => showErrors(form, err));
}

// OIDC: authorization code with PKCE, entirely in the browser; the token
// the provider returns is then the bearer token, checked by the gateway
// like any other.

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

async function oidcEndpoints(oidc) {
  if (oidc.authorization_endpoint && oidc.token_endpoint) return oidc;
  const res = await fetch(`${oidc.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!res.ok) throw new ApiError(0, { error: `the identity provider's discovery document answered ${res.status}` });
  const d = await res.json();
  return { ...oidc, authorization_endpoint: d.authorization_endpoint, token_endpoint: d.token_endpoint };
}

async function oidcStart(config) {
  if (!crypto.subtle) throw new ApiError(0, { error: "Single sign-on needs a secure page: open the gateway over https (or on localhost)." });
  const oidc = await oidcEndpoints(config);
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const stateValue = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const redirect = `${location.origin}/ui/`;
  sessionStorage.setItem(OIDC_KEY, JSON.stringify({ verifier, state: stateValue, token_endpoint: oidc.token_endpoint, client_id: oidc.client_id, redirect }));
  const url = new URL(oidc.authorization_endpoint);
  Object.entries({
    response_type: "code", client_id: oidc.client_id, redirect_uri: redirect, scope: oidc.scope || "openid profile",
    state: stateValue, code_challenge: challenge, code_challenge_method: "S256",
  }).forEach(([k, v]) => url.searchParams.set(k, v));
  location.assign(url.toString());
}

/** Back from the provider with `?code=...&state=...`: trade the code for
 *  a token. Returns true when it handled a return. */
async function oidcFinish() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  history.replaceState(null, "", `${location.pathname}#/`);
  const saved = JSON.parse(sessionStorage.getItem(OIDC_KEY) || "null");
  sessionStorage.removeItem(OIDC_KEY);
  if (params.has("error")) {
    flash(`Sign-in was refused by the identity provider: ${params.get("error_description") || params.get("error")}`, "error");
    go("/signin");
    return true;
  }
  if (!saved || saved.state !== params.get("state")) {
    flash("That sign-in answer does not belong to this tab; sign in again.", "error");
    go("/signin");
    return true;
  }
  let res;
  try {
    res = await fetch(saved.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: params.get("code"), redirect_uri: saved.redirect,
        client_id: saved.client_id, code_verifier: saved.verifier,
      }),
    });
  } catch (err) {
    // A network error, a provider that does not answer CORS for this
    // origin, or a token endpoint the page's policy does not allow.
    flash(`The identity provider's token endpoint ${saved.token_endpoint} cannot be reached from this page (${err.message}); ask an admin to allow this site's origin (CORS) at the provider.`, "error");
    go("/signin");
    return true;
  }
  const body = await res.json().catch(() => ({}));
  const token = body.access_token || body.id_token;
  if (!res.ok || !token) {
    flash(`The identity provider did not issue a token: ${body.error_description || body.error || res.status}`, "error");
    go("/signin");
    return true;
  }
  signedIn(token);
  return true;
}

// ------------------------------------------------------------------ start

// The skip link moves focus to the page's content without changing the route.
document.querySelector(".skip")?.addEventListener("click", (ev) => {
  ev.preventDefault();
  const m = main();
  (m.querySelector("h1") || m).focus();
});

maker.register();
admin.register();
window.addEventListener("hashchange", navigate);
oidcFinish().then((handled) => { if (!handled || location.hash === "#/") navigate(); })
  .catch((err) => { flash(err.message, "error"); navigate(); });
