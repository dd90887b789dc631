// Admin pages: environments, pipelines and stages, sharing, access (role
// grants, API tokens), webhooks and the audit log. Every page is a client of
// the admin REST API (/api/v1/...) exactly as `slipway admin` is: the API
// decides what is valid, the forms only make the common mistakes hard and
// put whatever the API still refuses next to the field it names.
import {
  html, raw, api, ApiError, route, patch, flash, onSubmit, onLeave, when, go, currentNav, mountAt,
} from "./app.js";

// ------------------------------------------------------------------ helpers

const ADMIN = ["admin"];

/** `name` as an attribute when `cond` holds (checked, selected, disabled…). */
const attr = (cond, name) => (cond ? raw(name) : "");

/** A 422 the browser raises itself, shaped like the API's. */
function invalid(problems) {
  return new ApiError(422, {
    error: problems.map((p) => `${p.field}: ${p.reason}`).join("; "),
    fields: problems,
  });
}

/** A secret reference: `env:NAME` or `file:/absolute/path`. */
const REF = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/\S.*)$/;

function refProblem(field, value, what) {
  if (!value) return { field, reason: `give where the ${what} is: env:NAME or file:/path` };
  if (!REF.test(value)) {
    return {
      field,
      reason: `is not a reference; put the ${what} in an environment variable or a file of the gateway and workers, and give env:NAME (letters, digits, _) or file:/absolute/path. Never paste the secret itself.`,
    };
  }
  return null;
}

const pathSegment = /(\[\d+\]|\.[^.[\]]+)$/;

/** "[2]" → "entry 3", ".start" → "start": the part of an API field path
 *  below the input the error is shown at. */
function describeRest(rest) {
  return rest.replace(/\[(\d+)\]/g, (_, i) => ` entry ${Number(i) + 1}`).replace(/\./g, " ").trim();
}

/** Moves each field of a 422 to the deepest input of `form` its path
 *  reaches (`policies.allowed_connectors[2]` → the allowed connectors box,
 *  saying "entry 3"), so `showErrors` can put it next to that input. */
function placeable(form, err) {
  if (!(err instanceof ApiError) || !err.fields.length) return err;
  const has = (p) => form.querySelector(`[data-field="${CSS.escape(p)}"], [name="${CSS.escape(p)}"]`);
  const fields = err.fields.map((f) => {
    let path = f.field;
    let rest = "";
    while (path && !has(path)) {
      const m = pathSegment.exec(path);
      if (!m) return f;
      rest = m[1] + rest;
      path = path.slice(0, m.index);
    }
    if (!path || !rest) return f;
    return { field: path, reason: `${describeRest(rest)}: ${f.reason}` };
  });
  return new ApiError(err.status, { error: err.message, fields });
}

/** `onSubmit`, with the API's field paths moved to this form's inputs. */
function wire(form, action) {
  onSubmit(form, async (values, f, submitter) => {
    try {
      await action(values, f, submitter);
    } catch (err) {
      throw placeable(f, err);
    }
  });
}

/** Runs a button's action with the button disabled; errors go to the
 *  status line (there is no form to put them in). */
async function busy(button, text, action) {
  const label = button.textContent;
  button.disabled = true;
  if (text) button.textContent = text;
  try {
    return await action();
  } catch (err) {
    if (err.name !== "AbortError") flash(err.message, "error");
    return undefined;
  } finally {
    if (button.isConnected) {
      button.disabled = false;
      button.textContent = label;
    }
  }
}

/** Clicks on `[data-action]` buttons inside `el`, handled by name. */
function actions(el, handlers) {
  el.addEventListener("click", (ev) => {
    const button = ev.target.closest("[data-action]");
    if (!button || !el.contains(button)) return;
    const handler = handlers[button.dataset.action];
    if (handler) handler(button, ev);
  });
}

/** Re-renders `selector` and puts focus back on the control that had it
 *  (matched by `data-key`), so a refresh never throws a keyboard user out. */
function repaint(selector, content) {
  const el = document.querySelector(selector);
  const active = document.activeElement;
  const key = el && active && el.contains(active) ? active.dataset.key : null;
  patch(selector, content);
  if (key) {
    const again = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
  return el;
}

/** Moves focus to a heading (or any element) without scrolling past it. */
function focusOn(selector) {
  const el = document.querySelector(selector);
  if (!el) return;
  if (!el.hasAttribute("tabindex")) el.setAttribute("tabindex", "-1");
  el.focus();
}

/** Values of the checked checkboxes named `name` in `form`. */
const checkedValues = (form, name) =>
  [...form.querySelectorAll(`input[type="checkbox"][name="${CSS.escape(name)}"]:checked`)].map((c) => c.value);

const byName = (a, b) => a.name.localeCompare(b.name);

/** Shows or hides a block of inputs; hidden inputs are disabled so they are
 *  neither sent nor reachable by Tab. */
function toggle(el, shown) {
  el.hidden = !shown;
  el.querySelectorAll("input, select, textarea").forEach((i) => { i.disabled = !shown; });
}

const shortId = (id) => String(id || "").slice(0, 8);

/** The row an empty table shows, so the table (and its id) is always there. */
const emptyRow = (cols, text) => html`<tr class="empty"><td colspan="${cols}" class="muted">${text}</td></tr>`;

// ------------------------------------------------------------------ environments

const VALIDATION = {
  pending: ["Pending", "warn"],
  success: ["Success", "ok"],
  failed: ["Failed", "bad"],
};

function validationCell(e) {
  const [label, cls] = VALIDATION[e.validation_status] || [e.validation_status, ""];
  return html`<span class="badge ${cls}" data-validation="${e.validation_status}">${label}</span>
    ${e.validation_error && html`<p class="validation-error">${e.validation_error}</p>`}
    <p class="help">${e.validated_at ? `Checked ${when(e.validated_at)}` : e.validation_status === "pending" ? "Checking…" : "Not checked yet"}</p>`;
}

function credentialsSummary(c) {
  if (!c || typeof c !== "object") return "";
  if (c.kind === "static_token") return html`Static token from <code>${c.token_ref}</code>`;
  if (c.kind === "client_secret") {
    return html`Client <code>${c.client_id}</code>, secret from <code>${c.client_secret_ref}</code>`;
  }
  return c.kind || "";
}

function envTable(envs) {
  return html`<div class="table-wrap"><table id="environments" class="stack">
    <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">URL</th><th scope="col">Credentials</th><th scope="col">Validation</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${envs.length ? "" : emptyRow(6, "No environments yet. Add the development environment makers build in, then the targets (test, production) below.")}${envs.map((e) => html`<tr data-environment="${e.id}">
      <td data-label="Name"><strong>${e.name}</strong></td>
      <td data-label="Kind">${e.kind}</td>
      <td data-label="URL" class="wrap"><code>${e.url}</code></td>
      <td data-label="Credentials" class="wrap">${credentialsSummary(e.credentials)}</td>
      <td data-label="Validation" data-status="${e.validation_status}">${validationCell(e)}</td>
      <td data-label="Actions"><div class="row actions">
        <button type="button" data-action="check" data-id="${e.id}" data-key="check:${e.id}" aria-label="Check ${e.name} again">Check again</button>
        <button type="button" data-action="edit" data-id="${e.id}" data-key="edit:${e.id}" aria-label="Edit ${e.name}">Edit</button>
        <button type="button" class="danger" data-action="delete" data-id="${e.id}" data-key="delete:${e.id}" aria-label="Delete ${e.name}">Delete</button>
      </div></td>
    </tr>`)}</tbody></table></div>`;
}

/** The add / edit form of an environment. `p` prefixes ids so both forms
 *  can be on the page at once. */
function envForm(formId, p, env, submitText) {
  const c = (env && env.credentials) || { kind: "client_secret" };
  const kind = c.kind === "static_token" ? "static_token" : "client_secret";
  return html`<form id="${formId}" novalidate>
    <div class="field">
      <label for="${p}-name">Name</label>
      <input id="${p}-name" name="name" type="text" required autocomplete="off" value="${env ? env.name : ""}" aria-describedby="${p}-name-help">
      <p id="${p}-name-help" class="help">How pipelines and makers refer to it, e.g. <code>contoso-dev</code> or <code>Production</code>.</p>
    </div>
    <div class="field">
      <label for="${p}-url">URL</label>
      <input id="${p}-url" name="url" type="url" required autocomplete="off" spellcheck="false" placeholder="https://contoso.crm4.dynamics.com" value="${env ? env.url : ""}" aria-describedby="${p}-url-help">
      <p id="${p}-url-help" class="help">The environment URL as shown in the Power Platform admin center, e.g. <code>https://contoso.crm4.dynamics.com</code>: https, no <code>/api/data/…</code> path, no user name or password. Plain http is accepted only to this machine (the simulator).</p>
    </div>
    <div class="field">
      <label for="${p}-kind">Kind</label>
      <select id="${p}-kind" name="kind" aria-describedby="${p}-kind-help">
        <option value="development" ${attr(env && env.kind === "development", "selected")}>development</option>
        <option value="target" ${attr(!env || env.kind === "target", "selected")}>target</option>
      </select>
      <p id="${p}-kind-help" class="help">Development: makers build solutions here and pipelines deploy from it. Target: pipelines deploy to it (test, production…). Never both.</p>
    </div>
    <fieldset data-field="credentials" tabindex="-1">
      <legend>Credentials</legend>
      <p class="help" id="${p}-cred-help">Slipway never stores secrets. Put the secret in an environment variable or a mounted file of the gateway and worker processes and give its <strong>reference</strong>: <code>env:NAME</code> or <code>file:/absolute/path</code>.</p>
      <div class="row" role="radiogroup" aria-label="Credential type">
        <div class="field inline"><input type="radio" id="${p}-cred-client_secret" name="credentials.kind" value="client_secret" ${attr(kind === "client_secret", "checked")}><label for="${p}-cred-client_secret">Client secret (app registration)</label></div>
        <div class="field inline"><input type="radio" id="${p}-cred-static_token" name="credentials.kind" value="static_token" ${attr(kind === "static_token", "checked")}><label for="${p}-cred-static_token">Static token (development only)</label></div>
      </div>
      <div data-cred="client_secret">
        <div class="field">
          <label for="${p}-token_url">Token URL</label>
          <input id="${p}-token_url" name="credentials.token_url" type="url" autocomplete="off" spellcheck="false" placeholder="https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token" value="${c.token_url || ""}">
        </div>
        <div class="field">
          <label for="${p}-client_id">Application (client) id</label>
          <input id="${p}-client_id" name="credentials.client_id" type="text" autocomplete="off" spellcheck="false" value="${c.client_id || ""}">
        </div>
        <div class="field">
          <label for="${p}-client_secret_ref">Client secret reference</label>
          <input id="${p}-client_secret_ref" name="credentials.client_secret_ref" type="text" autocomplete="off" spellcheck="false" placeholder="env:DEV_CLIENT_SECRET" value="${c.client_secret_ref || ""}" aria-describedby="${p}-cred-help">
        </div>
        <div class="field">
          <label for="${p}-scope">Scope (optional)</label>
          <input id="${p}-scope" name="credentials.scope" type="text" autocomplete="off" spellcheck="false" value="${c.scope || ""}" aria-describedby="${p}-scope-help">
          <p id="${p}-scope-help" class="help">Leave empty for <code>&lt;environment URL&gt;/.default</code>.</p>
        </div>
      </div>
      <div data-cred="static_token">
        <div class="field">
          <label for="${p}-token_ref">Token reference</label>
          <input id="${p}-token_ref" name="credentials.token_ref" type="text" autocomplete="off" spellcheck="false" placeholder="env:DEV_TOKEN" value="${c.token_ref || ""}" aria-describedby="${p}-cred-help">
        </div>
      </div>
    </fieldset>
    ${formButtons(submitText, env)}
  </form>`;
}

/** A form's submit button, and Cancel when it edits something that exists. */
function formButtons(submitText, editing) {
  return html`<div class="row">
      <button type="submit" class="primary">${submitText}</button>
      ${editing && html`<button type="button" data-cancel>Cancel</button>`}
    </div>`;
}

/** Shows only the inputs of the chosen credential type; returns the
 *  function that does it (call it again after `form.reset()`). */
function wireCredentials(form) {
  const sync = () => {
    const kind = form.querySelector('input[name="credentials.kind"]:checked').value;
    form.querySelectorAll("[data-cred]").forEach((b) => toggle(b, b.dataset.cred === kind));
  };
  form.querySelectorAll('input[name="credentials.kind"]').forEach((r) => r.addEventListener("change", sync));
  sync();
  return sync;
}

/** The environment request from the form: exactly the API's fields. */
function envBody(form) {
  const v = (n) => (form.querySelector(`[name="${n}"]`).value || "").trim();
  const problems = [];
  const kind = form.querySelector('input[name="credentials.kind"]:checked').value;
  let credentials;
  if (kind === "static_token") {
    credentials = { kind, token_ref: v("credentials.token_ref") };
    const bad = refProblem("credentials.token_ref", credentials.token_ref, "token");
    if (bad) problems.push(bad);
  } else {
    credentials = {
      kind,
      token_url: v("credentials.token_url"),
      client_id: v("credentials.client_id"),
      client_secret_ref: v("credentials.client_secret_ref"),
    };
    const scope = v("credentials.scope");
    if (scope) credentials.scope = scope;
    const bad = refProblem("credentials.client_secret_ref", credentials.client_secret_ref, "client secret");
    if (bad) problems.push(bad);
  }
  const url = v("url");
  if (/\/api\/data(\/|$)/i.test(url)) {
    problems.push({ field: "url", reason: "this is the Web API address; give the environment URL without /api/data/…, e.g. https://contoso.crm4.dynamics.com" });
  }
  if (problems.length) throw invalid(problems);
  return { name: v("name"), url, kind: v("kind"), credentials };
}

async function environmentsPage() {
  const nav = currentNav();
  let envs = await api("GET", "/api/v1/environments");
  mountAt(nav, html`<h1>Environments</h1>
    <p class="muted">The Dataverse environments Slipway deploys from and to. Each is checked (WhoAmI with its credentials) when it is added or its URL or credentials change.</p>
    <section aria-labelledby="envs-h">
      <h2 id="envs-h" tabindex="-1">Registered environments</h2>
      <div id="env-table"></div>
    </section>
    <section id="env-editor" class="card" hidden></section>
    <section class="card" aria-labelledby="new-env-h">
      <h2 id="new-env-h">Add an environment</h2>
      ${envForm("new-environment", "new-env", null, "Add environment")}
    </section>`);

  let timer = null;
  const stopPolling = () => { clearTimeout(timer); timer = null; };
  onLeave(stopPolling);

  const show = () => {
    repaint("#env-table", envTable(envs.slice().sort(byName)));
    // Poll while a check runs in the background, so the page shows the
    // outcome without a reload.
    if (envs.some((e) => e.validation_status === "pending") && !timer) {
      timer = setTimeout(async () => {
        timer = null;
        try {
          envs = await api("GET", "/api/v1/environments");
          if (document.getElementById("env-table")) show();
        } catch (err) {
          flash(`Could not refresh the environments: ${err.message}`, "error");
        }
      }, 2000);
    }
  };
  const reload = async () => { envs = await api("GET", "/api/v1/environments"); show(); };
  show();

  const addForm = document.getElementById("new-environment");
  const syncCredentials = wireCredentials(addForm);
  wire(addForm, async (_values, form) => {
    const env = await api("POST", "/api/v1/environments", envBody(form));
    flash(`Environment ${env.name} added; checking that Slipway can reach it…`);
    form.reset();
    syncCredentials();
    await reload();
  });

  const editor = document.getElementById("env-editor");
  const closeEditor = () => { editor.hidden = true; editor.innerHTML = ""; };
  const openEditor = (env) => {
    editor.hidden = false;
    editor.innerHTML = String(html`<h2 id="edit-env-h" tabindex="-1">Edit ${env.name}</h2>
      <p class="help">A new URL or new credentials are checked again.</p>
      ${envForm("edit-environment", "edit-env", env, "Save changes")}`);
    const form = document.getElementById("edit-environment");
    wireCredentials(form);
    form.querySelector("[data-cancel]").addEventListener("click", () => {
      closeEditor();
      focusOn(`[data-key="edit:${env.id}"]`);
    });
    wire(form, async (_values, f) => {
      const body = envBody(f);
      // Only what changed: an unchanged URL or credentials keep the result
      // of the last check.
      const changes = {};
      if (body.name !== env.name) changes.name = body.name;
      if (body.url.replace(/\/$/, "") !== env.url) changes.url = body.url;
      if (body.kind !== env.kind) changes.kind = body.kind;
      if (JSON.stringify(body.credentials) !== JSON.stringify(env.credentials)) changes.credentials = body.credentials;
      if (Object.keys(changes).length) {
        const saved = await api("PATCH", `/api/v1/environments/${env.id}`, changes);
        flash(`Environment ${saved.name} saved.`);
      } else {
        flash("Nothing changed.", "info");
      }
      closeEditor();
      await reload();
      focusOn(`[data-key="edit:${env.id}"]`);
    });
    focusOn("#edit-env-h");
  };

  actions(document.getElementById("env-table"), {
    check: (button) => busy(button, "Checking…", async () => {
      const env = await api("POST", `/api/v1/environments/${button.dataset.id}/validate`);
      envs = envs.map((e) => (e.id === env.id ? env : e));
      show();
      flash(env.validation_status === "success" ? `${env.name} answered: it is reachable.` : `${env.name}: ${env.validation_error || env.validation_status}`,
        env.validation_status === "success" ? "ok" : "error");
    }),
    edit: (button) => {
      const env = envs.find((e) => e.id === button.dataset.id);
      if (env) openEditor(env);
    },
    delete: (button) => {
      const env = envs.find((e) => e.id === button.dataset.id);
      if (!env || !window.confirm(`Delete environment ${env.name}? Pipelines that use it must drop it first.`)) return;
      busy(button, "Deleting…", async () => {
        await api("DELETE", `/api/v1/environments/${env.id}`);
        flash(`Environment ${env.name} deleted.`);
        if (document.querySelector("#edit-environment")) closeEditor();
        await reload();
        focusOn("#envs-h");
      });
    },
  });
}

// ------------------------------------------------------------------ pipelines

const envOptions = (envs, kind) => envs.filter((e) => e.kind === kind).sort(byName);

/** Checkboxes of the development environments a pipeline deploys from. */
function sourceBoxes(p, envs, chosen) {
  const devs = envOptions(envs, "development");
  return html`<fieldset data-field="source_environment_ids" tabindex="-1">
    <legend>Deploys from (development environments)</legend>
    ${devs.length
      ? html`<p class="help">Makers deploy solutions from these; pick at least one.</p>
        <div class="checks">${devs.map((e) => html`<div class="field inline">
          <input type="checkbox" id="${p}-src-${e.id}" name="source_environment_ids" value="${e.id}" ${attr(chosen.includes(e.id), "checked")}>
          <label for="${p}-src-${e.id}">${e.name}</label></div>`)}</div>`
      : html`<p class="help">There is no development environment yet. <a href="#/admin/environments">Add one on the Environments page</a> first.</p>`}
  </fieldset>`;
}

function pipelineFields(p, envs, pipeline) {
  const chosen = pipeline ? pipeline.source_environments.map((e) => e.id) : [];
  return html`<div class="field">
      <label for="${p}-name">Name</label>
      <input id="${p}-name" name="name" type="text" required autocomplete="off" value="${pipeline ? pipeline.name : ""}">
    </div>
    <div class="field">
      <label for="${p}-description">Description (optional)</label>
      <textarea id="${p}-description" name="description">${pipeline ? pipeline.description : ""}</textarea>
    </div>
    ${sourceBoxes(p, envs, chosen)}
    <div class="field inline">
      <input type="checkbox" id="${p}-older" name="allow_redeploy_older" ${attr(pipeline && pipeline.allow_redeploy_older, "checked")} aria-describedby="${p}-older-help">
      <label for="${p}-older">Allow redeploying older versions</label>
    </div>
    <p id="${p}-older-help" class="help">Lets a maker roll a target back to a version older than the one installed.</p>`;
}

function pipelineBody(form) {
  return {
    name: (form.querySelector('[name="name"]').value || "").trim(),
    description: (form.querySelector('[name="description"]').value || "").trim(),
    allow_redeploy_older: form.querySelector('[name="allow_redeploy_older"]').checked,
    source_environment_ids: checkedValues(form, "source_environment_ids"),
  };
}

/** Stages in chain order, as "Test → Production". */
const chainText = (stages) => (stages.length ? stages.map((s) => s.name).join(" → ") : "no stages yet");

async function pipelinesPage() {
  const nav = currentNav();
  const [pipelines, envs] = await Promise.all([api("GET", "/api/v1/pipelines"), api("GET", "/api/v1/environments")]);
  mountAt(nav, html`<h1>Manage pipelines</h1>
    <p class="muted">A pipeline takes solutions from development environments through its stages (e.g. Test, then Production). Makers see the pipelines shared with them.</p>
    <section aria-labelledby="pl-h">
      <h2 id="pl-h">Pipelines</h2>
      <div id="pipeline-list" class="table-wrap"><table id="pipelines" class="stack">
          <thead><tr><th scope="col">Name</th><th scope="col">Deploys from</th><th scope="col">Stages</th><th scope="col">Shared with</th></tr></thead>
          <tbody>${pipelines.length ? "" : emptyRow(4, "No pipelines yet: create the first one below.")}${pipelines.slice().sort(byName).map((pl) => html`<tr data-pipeline="${pl.id}">
            <td data-label="Name"><a href="#/admin/pipelines/${pl.id}">${pl.name}</a>${pl.description && html`<p class="help">${pl.description}</p>`}</td>
            <td data-label="Deploys from">${pl.source_environments.map((e) => e.name).join(", ")}</td>
            <td data-label="Stages">${chainText(pl.stages)}</td>
            <td data-label="Shared with">${pl.shares.length ? pl.shares.map((s) => `${s.kind} ${s.name}`).join(", ") : html`<span class="muted">nobody yet</span>`}</td>
          </tr>`)}</tbody></table></div>
    </section>
    <section class="card" aria-labelledby="new-pl-h">
      <h2 id="new-pl-h">Create a pipeline</h2>
      <form id="new-pipeline" novalidate>
        ${pipelineFields("new-pl", envs, null)}
        <button type="submit" class="primary">Create pipeline</button>
      </form>
    </section>`);
  wire(document.getElementById("new-pipeline"), async (_values, form) => {
    const created = await api("POST", "/api/v1/pipelines", pipelineBody(form));
    flash(`Pipeline ${created.name} created. Add its stages next.`);
    go(`/admin/pipelines/${created.id}`);
  });
}

// ------------------------------------------------------------------ stages

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_NAMES = { mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun" };

/** IANA zones this browser knows, for the time zone suggestions. */
function timeZones() {
  let zones = [];
  try { zones = Intl.supportedValuesOf("timeZone"); } catch { /* older browser: free text only */ }
  return zones.includes("UTC") ? zones : ["UTC", ...zones];
}

const localZone = () => {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch { return "UTC"; }
};

/** Days as "Mon–Fri" when consecutive, else "Mon, Wed". */
function dayText(days) {
  const idx = days.map((d) => DAYS.indexOf(d)).sort((a, b) => a - b);
  const run = idx.length > 2 && idx.every((v, i) => i === 0 || v === idx[i - 1] + 1);
  if (run) return `${DAY_NAMES[DAYS[idx[0]]]}–${DAY_NAMES[DAYS[idx[idx.length - 1]]]}`;
  return idx.map((i) => DAY_NAMES[DAYS[i]]).join(", ");
}

const mb = (n) => (n == null ? "" : String(Math.round((n / 1_000_000) * 1000) / 1000));

function policyLines(pol) {
  const lines = [];
  if (!pol) return lines;
  if (pol.allowed_connectors && pol.allowed_connectors.length) lines.push(`Only connectors: ${pol.allowed_connectors.join(", ")}`);
  if (pol.blocked_connectors && pol.blocked_connectors.length) lines.push(`Blocked connectors: ${pol.blocked_connectors.join(", ")}`);
  if (pol.managed_only) lines.push("Managed solutions only");
  if (pol.max_artifact_bytes != null) lines.push(`Solution file at most ${mb(pol.max_artifact_bytes)} MB`);
  for (const w of pol.deployment_windows || []) lines.push(`Deploys start ${dayText(w.days)} ${w.start}–${w.end} (${w.time_zone})`);
  if (pol.require_notes) lines.push("Deployment notes required");
  return lines;
}

function deployAsText(d) {
  if (!d || d.mode === "environment") return "the target environment's credentials";
  if (d.mode === "service_principal") return html`service principal <code>${d.application_id}</code>`;
  if (d.mode === "user") return html`user ${d.user}`;
  return d.mode;
}

function stageCard(stage, stages, i) {
  const prev = stages.find((s) => s.id === stage.previous_stage_id);
  const lines = policyLines(stage.policies);
  const flags = [
    stage.approval_required && "Approval required",
    stage.pre_export_gate && "Pre-export gate",
    stage.pre_deployment_gate && "Pre-deployment gate",
  ].filter(Boolean);
  return html`<li class="stage" data-stage="${stage.id}">
    <div class="stage-body">
      <h3 id="stage-h-${stage.id}" tabindex="-1"><span class="muted">${i + 1}.</span> ${stage.name}</h3>
      <dl class="facts">
        <dt>After</dt><dd>${prev ? prev.name : html`<span class="muted">nothing: first stage</span>`}</dd>
        <dt>Deploys to</dt><dd>${stage.targets.map((t) => t.name).join(", ")}</dd>
        <dt>Imports as</dt><dd>${deployAsText(stage.deploy_as)}</dd>
        <dt>Checks</dt><dd>${flags.length ? flags.map((f) => html`<span class="badge warn">${f}</span> `) : html`<span class="muted">none</span>`}</dd>
        <dt>Policies</dt><dd>${lines.length ? html`<ul class="plain">${lines.map((l) => html`<li>${l}</li>`)}</ul>` : html`<span class="muted">none</span>`}</dd>
      </dl>
      <div class="row actions">
        <button type="button" data-action="edit-stage" data-id="${stage.id}" data-key="edit-stage:${stage.id}" aria-label="Edit stage ${stage.name}">Edit</button>
        <button type="button" class="danger" data-action="delete-stage" data-id="${stage.id}" data-key="delete-stage:${stage.id}" aria-label="Delete stage ${stage.name}">Delete</button>
      </div>
    </div>
    <div class="stage-edit" hidden></div>
  </li>`;
}

/** Stages that follow `id`, directly or not: choosing one of them as the
 *  previous stage would close a cycle. */
function followers(stages, id) {
  const out = new Set();
  let grew = true;
  while (grew) {
    grew = false;
    for (const s of stages) {
      if (!out.has(s.id) && (s.previous_stage_id === id || out.has(s.previous_stage_id))) {
        out.add(s.id);
        grew = true;
      }
    }
  }
  return out;
}

function windowRow(p, n, w) {
  const days = (w && w.days) || ["mon", "tue", "wed", "thu", "fri"];
  return html`<fieldset class="window" data-window tabindex="-1">
    <legend data-window-title>Window</legend>
    <fieldset class="days" data-days tabindex="-1">
      <legend>Days</legend>
      <div class="checks">${DAYS.map((d) => html`<div class="field inline">
        <input type="checkbox" id="${p}-w${n}-${d}" value="${d}" data-day ${attr(days.includes(d), "checked")}>
        <label for="${p}-w${n}-${d}">${DAY_NAMES[d]}</label></div>`)}</div>
    </fieldset>
    <div class="window-times">
      <div class="field"><label for="${p}-w${n}-start">Start</label>
        <input id="${p}-w${n}-start" type="time" data-part="start" value="${(w && w.start) || "08:00"}"></div>
      <div class="field"><label for="${p}-w${n}-end">End</label>
        <input id="${p}-w${n}-end" type="time" data-part="end" value="${(w && w.end) || "18:00"}"></div>
      <div class="field tz"><label for="${p}-w${n}-tz">Time zone</label>
        <input id="${p}-w${n}-tz" type="text" list="${p}-zones" data-part="time_zone" autocomplete="off" spellcheck="false" value="${(w && w.time_zone) || localZone()}"></div>
    </div>
    <button type="button" class="danger" data-remove-window>Remove window</button>
  </fieldset>`;
}

/** The add / edit form of a stage. Options that would be refused are not
 *  offered (a stage cannot follow itself or a later stage) or disabled and
 *  labelled (a target another stage uses). */
function stageForm(formId, p, pipeline, envs, stage, submitText) {
  const stages = pipeline.stages;
  const excluded = stage ? followers(stages, stage.id).add(stage.id) : new Set();
  const prevChoices = stages.filter((s) => !excluded.has(s.id));
  // A new stage follows the last one by default: the usual straight chain.
  const prev = stage ? stage.previous_stage_id : (stages.length ? stages[stages.length - 1].id : null);
  const targets = envOptions(envs, "target");
  const chosen = stage ? stage.targets.map((t) => t.id) : [];
  const usedBy = (envId) => stages.find((s) => (!stage || s.id !== stage.id) && s.targets.some((t) => t.id === envId));
  const pol = (stage && stage.policies) || {};
  const mode = (stage && stage.deploy_as && stage.deploy_as.mode) || "environment";
  return html`<form id="${formId}" novalidate>
    <div class="field">
      <label for="${p}-name">Stage name</label>
      <input id="${p}-name" name="name" type="text" required autocomplete="off" placeholder="Test" value="${stage ? stage.name : ""}">
    </div>
    <div class="field">
      <label for="${p}-prev">Previous stage</label>
      <select id="${p}-prev" name="previous_stage_id" aria-describedby="${p}-prev-help">
        <option value="" ${attr(!prev, "selected")}>None: a first stage (deploys what comes from development)</option>
        ${prevChoices.map((s) => html`<option value="${s.id}" ${attr(s.id === prev, "selected")}>${s.name}</option>`)}
      </select>
      <p id="${p}-prev-help" class="help">A deployment here must have succeeded in the previous stage first.${stage && excluded.size > 1 ? " Stages that follow this one are not offered: they would make a loop." : ""}</p>
    </div>
    <fieldset data-field="target_environment_ids" tabindex="-1">
      <legend>Target environments</legend>
      ${targets.length
        ? html`<p class="help">One or more; a deployment to this stage goes to the one the maker picks. An environment is the target of one stage per pipeline.</p>
          <div class="checks">${targets.map((e) => {
            const other = usedBy(e.id);
            return html`<div class="field inline">
              <input type="checkbox" id="${p}-t-${e.id}" name="target_environment_ids" value="${e.id}" ${attr(chosen.includes(e.id), "checked")} ${attr(other, "disabled")} ${other ? raw(`aria-describedby="${p}-t-${e.id}-why"`) : ""}>
              <label for="${p}-t-${e.id}">${e.name}</label>
              ${other && html`<span id="${p}-t-${e.id}-why" class="help">already the target of stage ${other.name}</span>`}
            </div>`;
          })}</div>`
        : html`<p class="help">There is no target environment yet. <a href="#/admin/environments">Add one on the Environments page</a> (kind “target”) first.</p>`}
    </fieldset>
    <fieldset>
      <legend>Checks before importing</legend>
      <div class="field inline"><input type="checkbox" id="${p}-approval" name="approval_required" ${attr(stage && stage.approval_required, "checked")} aria-describedby="${p}-approval-help">
        <label for="${p}-approval">Approval required</label></div>
      <p id="${p}-approval-help" class="help">An approver of this pipeline approves each deployment after it is validated.</p>
      <div class="field inline"><input type="checkbox" id="${p}-pre-export" name="pre_export_gate" ${attr(stage && stage.pre_export_gate, "checked")} aria-describedby="${p}-pre-export-help">
        <label for="${p}-pre-export">Pre-export gate</label></div>
      <p id="${p}-pre-export-help" class="help">An external system must complete the gate before the export starts (OnPreExportStarted webhook).</p>
      <div class="field inline"><input type="checkbox" id="${p}-pre-deploy" name="pre_deployment_gate" ${attr(stage && stage.pre_deployment_gate, "checked")} aria-describedby="${p}-pre-deploy-help">
        <label for="${p}-pre-deploy">Pre-deployment gate</label></div>
      <p id="${p}-pre-deploy-help" class="help">An external system must complete the gate before the import starts (OnPreDeploymentStarted webhook).</p>
    </fieldset>
    <fieldset data-field="deploy_as" tabindex="-1">
      <legend>Import as</legend>
      <div class="field inline"><input type="radio" id="${p}-as-environment" name="deploy_as.mode" value="environment" ${attr(mode === "environment", "checked")}>
        <label for="${p}-as-environment">The target environment's own credentials</label></div>
      <div class="field inline"><input type="radio" id="${p}-as-sp" name="deploy_as.mode" value="service_principal" ${attr(mode === "service_principal", "checked")}>
        <label for="${p}-as-sp">A service principal (delegated deployment)</label></div>
      <div class="field dependent" data-mode="service_principal">
        <label for="${p}-as-app">Application (client) id</label>
        <input id="${p}-as-app" name="deploy_as.application_id" type="text" autocomplete="off" spellcheck="false" placeholder="00000000-0000-0000-0000-000000000000" value="${mode === "service_principal" ? stage.deploy_as.application_id : ""}">
      </div>
      <div class="field inline"><input type="radio" id="${p}-as-user" name="deploy_as.mode" value="user" ${attr(mode === "user", "checked")}>
        <label for="${p}-as-user">A named user</label></div>
      <div class="field dependent" data-mode="user">
        <label for="${p}-as-user-name">User</label>
        <input id="${p}-as-user-name" name="deploy_as.user" type="text" autocomplete="off" spellcheck="false" placeholder="owner@contoso.com" value="${mode === "user" ? stage.deploy_as.user : ""}">
      </div>
    </fieldset>
    <fieldset>
      <legend>Policies</legend>
      <p class="help">Checked when a deployment is validated; a deployment that breaks one is stopped with the reason.</p>
      <div class="field">
        <label for="${p}-allowed">Allowed connectors</label>
        <textarea id="${p}-allowed" name="policies.allowed_connectors" data-field="policies.allowed_connectors" spellcheck="false" rows="2" aria-describedby="${p}-conn-help">${(pol.allowed_connectors || []).join("\n")}</textarea>
      </div>
      <div class="field">
        <label for="${p}-blocked">Blocked connectors</label>
        <textarea id="${p}-blocked" name="policies.blocked_connectors" data-field="policies.blocked_connectors" spellcheck="false" rows="2" aria-describedby="${p}-conn-help">${(pol.blocked_connectors || []).join("\n")}</textarea>
        <p id="${p}-conn-help" class="help">One per line or separated by commas: a short name like <code>shared_office365</code> or the full id <code>/providers/Microsoft.PowerApps/apis/shared_office365</code>. Allowed empty: every connector not blocked.</p>
      </div>
      <div class="field inline"><input type="checkbox" id="${p}-managed" name="policies.managed_only" ${attr(pol.managed_only, "checked")}>
        <label for="${p}-managed">Managed solutions only</label></div>
      <div class="field">
        <label for="${p}-max">Largest solution file, in MB (optional)</label>
        <input id="${p}-max" name="policies.max_artifact_mb" data-field="policies.max_artifact_bytes" type="number" min="0.001" step="any" inputmode="decimal" value="${mb(pol.max_artifact_bytes)}" aria-describedby="${p}-max-help">
        <p id="${p}-max-help" class="help">1 MB = 1,000,000 bytes. Empty: no limit.</p>
      </div>
      <fieldset data-field="policies.deployment_windows" tabindex="-1">
        <legend>Deployment windows</legend>
        <p class="help">If there are any, a deployment may start only inside one of them, in the window's own time zone (daylight saving time is followed). An end before the start runs past midnight.</p>
        <div data-windows>${(pol.deployment_windows || []).map((w, n) => windowRow(p, n, w))}</div>
        <button type="button" data-add-window>Add a window</button>
        <datalist id="${p}-zones">${timeZones().map((z) => html`<option value="${z}"></option>`)}</datalist>
      </fieldset>
      <div class="field inline"><input type="checkbox" id="${p}-notes" name="policies.require_notes" ${attr(pol.require_notes, "checked")}>
        <label for="${p}-notes">Deployment notes required</label></div>
    </fieldset>
    ${formButtons(submitText, stage)}
  </form>`;
}

/** Numbers the window rows and names their inputs by the API's paths
 *  (`policies.deployment_windows[1].start`), so refusals land beside them. */
function renumberWindows(form) {
  form.querySelectorAll("[data-window]").forEach((row, i) => {
    const at = `policies.deployment_windows[${i}]`;
    row.dataset.field = at;
    row.querySelector("[data-window-title]").textContent = `Window ${i + 1}`;
    row.querySelector("[data-days]").dataset.field = `${at}.days`;
    row.querySelectorAll("[data-part]").forEach((input) => { input.dataset.field = `${at}.${input.dataset.part}`; });
    row.querySelector("[data-remove-window]").textContent = `Remove window ${i + 1}`;
  });
}

function wireStageForm(form, p) {
  const syncMode = () => {
    const mode = form.querySelector('input[name="deploy_as.mode"]:checked').value;
    form.querySelectorAll("[data-mode]").forEach((b) => toggle(b, b.dataset.mode === mode));
  };
  form.querySelectorAll('input[name="deploy_as.mode"]').forEach((r) => r.addEventListener("change", syncMode));
  syncMode();
  const rows = form.querySelector("[data-windows]");
  let next = rows.children.length;
  form.querySelector("[data-add-window]").addEventListener("click", () => {
    rows.insertAdjacentHTML("beforeend", String(windowRow(p, next, null)));
    next += 1;
    renumberWindows(form);
    rows.lastElementChild.querySelector("input").focus();
  });
  rows.addEventListener("click", (ev) => {
    const remove = ev.target.closest("[data-remove-window]");
    if (!remove) return;
    remove.closest("[data-window]").remove();
    renumberWindows(form);
    form.querySelector("[data-add-window]").focus();
  });
  renumberWindows(form);
}

const connectorList = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);

/** The stage request from the form: exactly the API's fields. */
function stageBody(form) {
  const problems = [];
  const value = (name) => (form.querySelector(`[name="${name}"]`).value || "").trim();
  const checked = (name) => form.querySelector(`[name="${name}"]`).checked;
  const mode = form.querySelector('input[name="deploy_as.mode"]:checked').value;
  const deployAs = { mode };
  if (mode === "service_principal") deployAs.application_id = value("deploy_as.application_id");
  if (mode === "user") deployAs.user = value("deploy_as.user");
  let maxBytes = null;
  const max = value("policies.max_artifact_mb");
  if (max !== "") {
    const n = Number(max);
    if (!Number.isFinite(n) || n <= 0) {
      problems.push({ field: "policies.max_artifact_bytes", reason: "give a size in MB greater than 0, or leave it empty for no limit" });
    } else {
      maxBytes = Math.round(n * 1_000_000);
    }
  }
  const windows = [...form.querySelectorAll("[data-window]")].map((row) => ({
    days: [...row.querySelectorAll("[data-day]:checked")].map((c) => c.value),
    start: row.querySelector('[data-part="start"]').value.trim(),
    end: row.querySelector('[data-part="end"]').value.trim(),
    time_zone: row.querySelector('[data-part="time_zone"]').value.trim(),
  }));
  if (problems.length) throw invalid(problems);
  return {
    name: value("name"),
    previous_stage_id: value("previous_stage_id") || null,
    target_environment_ids: checkedValues(form, "target_environment_ids"),
    approval_required: checked("approval_required"),
    pre_export_gate: checked("pre_export_gate"),
    pre_deployment_gate: checked("pre_deployment_gate"),
    deploy_as: deployAs,
    policies: {
      allowed_connectors: connectorList(value("policies.allowed_connectors")),
      blocked_connectors: connectorList(value("policies.blocked_connectors")),
      managed_only: checked("policies.managed_only"),
      max_artifact_bytes: maxBytes,
      deployment_windows: windows,
      require_notes: checked("policies.require_notes"),
    },
  };
}

// ------------------------------------------------------------------ pipeline page

function sharesTable(shares) {
  return html`<div class="table-wrap"><table id="shares" class="stack">
    <thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${shares.length ? "" : emptyRow(3, "Not shared with anyone yet: only admins see it. Share it with the makers who deploy through it and the approvers who approve.")}${shares.map((s) => html`<tr data-share="${s.kind}:${s.name}">
      <td data-label="Kind">${s.kind}</td><td data-label="Name">${s.name}</td>
      <td data-label="Actions"><button type="button" class="danger" data-action="unshare" data-kind="${s.kind}" data-name="${s.name}" data-key="unshare:${s.kind}:${s.name}" aria-label="Unshare ${s.kind} ${s.name}">Unshare</button></td>
    </tr>`)}</tbody></table></div>`;
}

function pipelineSummary(pl) {
  return html`<dl class="facts">
    <dt>Description</dt><dd>${pl.description || html`<span class="muted">none</span>`}</dd>
    <dt>Deploys from</dt><dd>${pl.source_environments.map((e) => e.name).join(", ")}</dd>
    <dt>Older versions</dt><dd>${pl.allow_redeploy_older ? "may be redeployed" : "refused (a target only moves forward)"}</dd>
    <dt>Stages</dt><dd>${chainText(pl.stages)}</dd>
  </dl>`;
}

async function pipelinePage({ id }) {
  const nav = currentNav();
  let [pl, envs] = await Promise.all([api("GET", `/api/v1/pipelines/${encodeURIComponent(id)}`), api("GET", "/api/v1/environments")]);
  mountAt(nav, html`<h1 id="pipeline-name">${pl.name}</h1>
    <p><a href="#/admin/pipelines">All pipelines</a></p>
    <section class="card" aria-labelledby="about-h">
      <h2 id="about-h">About</h2>
      <div id="pipeline-summary"></div>
      <details id="pipeline-edit">
        <summary>Edit name, description and sources</summary>
        <div id="pipeline-edit-slot"></div>
      </details>
      <p><button type="button" class="danger" id="delete-pipeline">Delete pipeline</button></p>
    </section>
    <section aria-labelledby="stages-h">
      <h2 id="stages-h" tabindex="-1">Stages</h2>
      <div id="stage-list"></div>
    </section>
    <section class="card" aria-labelledby="new-stage-h">
      <h2 id="new-stage-h">Add a stage</h2>
      <div id="new-stage-slot"></div>
    </section>
    <section class="card" aria-labelledby="share-h">
      <h2 id="share-h" tabindex="-1">Sharing</h2>
      <p class="help">Makers deploy through, and approvers approve on, the pipelines shared with them or with one of their groups.</p>
      <div id="share-list"></div>
      <form id="share" novalidate>
        <div class="row share-row">
          <div class="field"><label for="share-kind">Share with a</label>
            <select id="share-kind" name="kind"><option value="user">user</option><option value="group">group</option></select></div>
          <div class="field"><label for="share-name">Name</label>
            <input id="share-name" name="name" type="text" required autocomplete="off" spellcheck="false" placeholder="alice@contoso.com or Makers"></div>
          <button type="submit" class="primary">Share</button>
        </div>
      </form>
    </section>`);

  const renderStages = () => {
    patch("#stage-list", pl.stages.length
      ? html`<ol class="chain" id="stages">${pl.stages.map((s, i) => stageCard(s, pl.stages, i))}</ol>`
      : html`<p class="muted">No stages yet. Add the first stage (e.g. Test) below; later stages follow it.</p>`);
  };
  const renderNewStage = () => {
    patch("#new-stage-slot", stageForm("new-stage", "ns", pl, envs, null, "Add stage"));
    const form = document.getElementById("new-stage");
    wireStageForm(form, "ns");
    wire(form, async (_values, f) => {
      const stage = await api("POST", `/api/v1/pipelines/${pl.id}/stages`, stageBody(f)).catch((err) => {
        // The stage limit is about the pipeline, not a field: say it plainly.
        const full = err instanceof ApiError && err.fields.find((x) => x.field === "stages");
        throw full ? new ApiError(err.status, { error: `No stage added: ${full.reason}. Delete a stage first, or raise the limit in the gateway's configuration.` }) : err;
      });
      flash(`Stage ${stage.name} added.`);
      await reload();
      focusOn(`#stage-h-${CSS.escape(stage.id)}`);
    });
  };
  const renderSummary = () => {
    patch("#pipeline-summary", pipelineSummary(pl));
    document.getElementById("pipeline-name").textContent = pl.name;
    document.title = `${pl.name} · Slipway`;
  };
  const renderEdit = () => {
    patch("#pipeline-edit-slot", html`<form id="edit-pipeline" novalidate>
      ${pipelineFields("ep", envs, pl)}
      <button type="submit" class="primary">Save pipeline</button></form>`);
    wire(document.getElementById("edit-pipeline"), async (_values, f) => {
      pl = await api("PATCH", `/api/v1/pipelines/${pl.id}`, pipelineBody(f));
      flash(`Pipeline ${pl.name} saved.`);
      renderSummary();
      document.getElementById("pipeline-edit").open = false;
      document.querySelector("#pipeline-edit summary").focus();
      renderEdit();
    });
  };
  const renderShares = () => repaint("#share-list", sharesTable(pl.shares));
  const reload = async () => {
    pl = await api("GET", `/api/v1/pipelines/${pl.id}`);
    renderSummary();
    renderStages();
    renderNewStage();
    renderShares();
  };
  renderSummary();
  renderEdit();
  renderStages();
  renderNewStage();
  renderShares();

  document.getElementById("delete-pipeline").addEventListener("click", (ev) => {
    if (!window.confirm(`Delete pipeline ${pl.name} with its ${pl.stages.length} stage(s) and shares? Its past runs stay in the audit log.`)) return;
    busy(ev.currentTarget, "Deleting…", async () => {
      await api("DELETE", `/api/v1/pipelines/${pl.id}`);
      flash(`Pipeline ${pl.name} deleted.`);
      go("/admin/pipelines");
    });
  });

  actions(document.getElementById("stage-list"), {
    "edit-stage": (button) => {
      const stage = pl.stages.find((s) => s.id === button.dataset.id);
      if (!stage) return;
      const li = button.closest("[data-stage]");
      // One stage is edited at a time.
      document.querySelectorAll("#stage-list .stage-edit").forEach((el) => {
        el.hidden = true;
        el.innerHTML = "";
        el.previousElementSibling.hidden = false;
      });
      const body = li.querySelector(".stage-body");
      const slot = li.querySelector(".stage-edit");
      slot.innerHTML = String(html`<h3 id="edit-stage-h" tabindex="-1">Edit stage ${stage.name}</h3>
        ${stageForm("edit-stage", "es", pl, envs, stage, "Save stage")}`);
      body.hidden = true;
      slot.hidden = false;
      const form = document.getElementById("edit-stage");
      wireStageForm(form, "es");
      form.querySelector("[data-cancel]").addEventListener("click", () => {
        slot.hidden = true;
        slot.innerHTML = "";
        body.hidden = false;
        focusOn(`[data-key="edit-stage:${stage.id}"]`);
      });
      wire(form, async (_values, f) => {
        const saved = await api("PUT", `/api/v1/pipelines/${pl.id}/stages/${stage.id}`, stageBody(f));
        flash(`Stage ${saved.name} saved.`);
        await reload();
        focusOn(`#stage-h-${CSS.escape(saved.id)}`);
      });
      focusOn("#edit-stage-h");
    },
    "delete-stage": (button) => {
      const stage = pl.stages.find((s) => s.id === button.dataset.id);
      if (!stage || !window.confirm(`Delete stage ${stage.name}? Deployments can no longer go to ${stage.targets.map((t) => t.name).join(", ")} through this pipeline.`)) return;
      busy(button, "Deleting…", async () => {
        await api("DELETE", `/api/v1/pipelines/${pl.id}/stages/${stage.id}`);
        flash(`Stage ${stage.name} deleted.`);
        await reload();
        focusOn("#stages-h");
      });
    },
  });

  wire(document.getElementById("share"), async (values, form) => {
    pl = await api("POST", `/api/v1/pipelines/${pl.id}/shares`, { kind: values.kind, name: values.name || "" });
    flash(`Shared with ${values.kind} ${values.name}.`);
    form.querySelector('[name="name"]').value = "";
    renderShares();
  });
  actions(document.getElementById("share-list"), {
    unshare: (button) => {
      const { kind, name } = button.dataset;
      if (!window.confirm(`Stop sharing ${pl.name} with ${kind} ${name}? They can no longer deploy through it or approve on it.`)) return;
      busy(button, "Unsharing…", async () => {
        await api("DELETE", `/api/v1/pipelines/${pl.id}/shares/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`);
        pl.shares = pl.shares.filter((s) => !(s.kind === kind && s.name === name));
        flash(`No longer shared with ${kind} ${name}.`);
        renderShares();
        focusOn("#share-h");
      });
    },
  });
}

// ------------------------------------------------------------------ access

const ROLES = ["admin", "maker", "approver"];
const ROLE_HELP = {
  admin: "sets up environments, pipelines, sharing and tokens; sees everything",
  maker: "deploys through the pipelines shared with them",
  approver: "approves or rejects deployments on the pipelines shared with them",
};

function grantsTable(grants) {
  const sorted = grants.slice().sort((a, b) => a.principal.name.localeCompare(b.principal.name) || a.role.localeCompare(b.role));
  return html`<div class="table-wrap"><table id="grants" class="stack">
    <thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col">Role</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${sorted.length ? "" : emptyRow(4, "No role grants.")}${sorted.map((g) => {
      const key = `${g.principal.kind}:${g.principal.name}:${g.role}`;
      return html`<tr data-grant="${key}">
        <td data-label="Kind">${g.principal.kind}</td><td data-label="Name">${g.principal.name}</td><td data-label="Role">${g.role}</td>
        <td data-label="Actions"><button type="button" class="danger" data-action="revoke" data-kind="${g.principal.kind}" data-name="${g.principal.name}" data-role="${g.role}" data-key="revoke:${key}" aria-label="Revoke ${g.role} from ${g.principal.kind} ${g.principal.name}">Revoke</button></td>
      </tr>`;
    })}</tbody></table></div>`;
}

function tokenState(t) {
  if (t.revoked_at) return ["revoked", "bad"];
  if (t.expires_at && new Date(t.expires_at) <= new Date()) return ["expired", "warn"];
  return ["active", "ok"];
}

/** The roles a token's user holds now: granted to the user, or to one of
 *  the token's groups. */
function roleHints(t, grants) {
  const out = [];
  for (const g of grants) {
    if (g.principal.kind === "user" && g.principal.name === t.subject) out.push(g.role);
    else if (g.principal.kind === "group" && t.groups.includes(g.principal.name)) out.push(`${g.role} (group ${g.principal.name})`);
  }
  return out;
}

function tokensTable(tokens, grants) {
  return html`<div class="table-wrap"><table id="tokens" class="stack">
    <thead><tr><th scope="col">Name</th><th scope="col">Subject</th><th scope="col">Roles now</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${tokens.length ? "" : emptyRow(8, "No API tokens.")}${tokens.map((t) => {
      const [state, cls] = tokenState(t);
      const hints = roleHints(t, grants);
      return html`<tr data-token="${t.id}">
        <td data-label="Name">${t.name}<p class="help"><code>${t.display_prefix}…</code></p></td>
        <td data-label="Subject">${t.subject}${t.groups.length ? html`<p class="help">groups: ${t.groups.join(", ")}</p>` : ""}</td>
        <td data-label="Roles now">${hints.length ? hints.join(", ") : html`<span class="muted">none</span>`}</td>
        <td data-label="Created">${when(t.created_at)}<p class="help">by ${t.created_by}</p></td>
        <td data-label="Expires">${t.expires_at ? when(t.expires_at) : "never"}</td>
        <td data-label="Last used">${t.last_used_at ? when(t.last_used_at) : html`<span class="muted">never</span>`}</td>
        <td data-label="State"><span class="badge ${cls}">${state}</span>${t.revoked_at && html`<p class="help">${when(t.revoked_at)}</p>`}</td>
        <td ${state === "active" ? raw('data-label="Actions"') : ""}>${state === "active"
          ? html`<button type="button" class="danger" data-action="revoke-token" data-id="${t.id}" data-key="revoke-token:${t.id}" aria-label="Revoke token ${t.name} of ${t.subject}">Revoke</button>`
          : ""}</td>
      </tr>`;
    })}</tbody></table></div>`;
}

/** Copies `text`; where the clipboard API is unavailable, selects the
 *  element's text so Ctrl+C copies it. */
async function copyText(text, el) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const range = document.createRange();
    range.selectNodeContents(el);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    return false;
  }
}

async function accessPage() {
  const nav = currentNav();
  let [grants, tokens] = await Promise.all([api("GET", "/api/v1/role-grants"), api("GET", "/api/v1/tokens")]);
  mountAt(nav, html`<h1>Access</h1>
    <p class="muted">Who may do what. Roles: ${ROLES.map((r, i) => html`${i ? "; " : ""}<strong>${r}</strong> ${ROLE_HELP[r]}`)}.</p>
    <section aria-labelledby="grants-h">
      <h2 id="grants-h" tabindex="-1">Role grants</h2>
      <div id="grant-list"></div>
      <form id="grant" class="card" novalidate>
        <h3>Grant a role</h3>
        <div class="row form-row">
          <div class="field"><label for="grant-kind">To a</label>
            <select id="grant-kind" name="principal.kind"><option value="user">user</option><option value="group">group</option></select></div>
          <div class="field"><label for="grant-name">Name</label>
            <input id="grant-name" name="principal.name" type="text" required autocomplete="off" spellcheck="false" placeholder="alice@contoso.com or Makers"></div>
          <div class="field"><label for="grant-role">Role</label>
            <select id="grant-role" name="role">${ROLES.map((r) => html`<option value="${r}" ${attr(r === "maker", "selected")}>${r}</option>`)}</select></div>
          <button type="submit" class="primary">Grant role</button>
        </div>
        <p class="help">Group names are those of the identity provider's groups claim, or given to an API token.</p>
      </form>
    </section>
    <section aria-labelledby="tokens-h">
      <h2 id="tokens-h" tabindex="-1">API tokens</h2>
      <div id="new-token-result" aria-live="polite"></div>
      <div id="token-list"></div>
      <form id="new-token" class="card" novalidate>
        <h3>Create a token</h3>
        <div class="field"><label for="token-subject">Subject (user)</label>
          <input id="token-subject" name="subject" type="text" required autocomplete="off" spellcheck="false" placeholder="alice@contoso.com" aria-describedby="token-subject-help">
          <p id="token-subject-help" class="help">The user the token signs in as; shares and grants to this user apply to it.</p></div>
        <div class="field"><label for="token-name">What it is for (optional)</label>
          <input id="token-name" name="name" type="text" autocomplete="off" placeholder="ci-prod-deploys" aria-describedby="token-name-help">
          <p id="token-name-help" class="help">Empty: “&lt;subject&gt; token”.</p></div>
        <div class="field"><label for="token-groups">Groups (optional)</label>
          <input id="token-groups" name="groups" type="text" autocomplete="off" spellcheck="false" placeholder="Makers, Approvers" aria-describedby="token-groups-help">
          <p id="token-groups-help" class="help">Comma-separated groups the user is taken to belong to.</p></div>
        <fieldset data-field="roles" tabindex="-1">
          <legend>Also grant the user</legend>
          <div class="checks">${ROLES.map((r) => html`<div class="field inline">
            <input type="checkbox" id="token-role-${r}" name="roles" value="${r}">
            <label for="token-role-${r}">${r}</label></div>`)}</div>
          <p class="help">Grants stay when the token is revoked; revoke them above.</p>
        </fieldset>
        <div class="field"><label for="token-days">Expires in (days)</label>
          <input id="token-days" name="expires_in_days" type="number" min="1" max="3650" step="1" value="90" inputmode="numeric" aria-describedby="token-days-help">
          <p id="token-days-help" class="help">1 to 3650.</p></div>
        <button type="submit" class="primary">Create token</button>
      </form>
    </section>`);

  const render = () => {
    repaint("#grant-list", grantsTable(grants));
    repaint("#token-list", tokensTable(tokens, grants));
  };
  const reload = async () => {
    [grants, tokens] = await Promise.all([api("GET", "/api/v1/role-grants"), api("GET", "/api/v1/tokens")]);
    render();
  };
  render();

  wire(document.getElementById("grant"), async (values, form) => {
    const grant = { principal: { kind: values["principal.kind"], name: values["principal.name"] || "" }, role: values.role };
    await api("POST", "/api/v1/role-grants", grant);
    flash(`${grant.principal.kind} ${grant.principal.name} has the role ${grant.role}.`);
    form.querySelector('[name="principal.name"]').value = "";
    await reload();
  });
  actions(document.getElementById("grant-list"), {
    revoke: (button) => {
      const { kind, name, role } = button.dataset;
      if (!window.confirm(`Revoke the role ${role} from ${kind} ${name}?`)) return;
      busy(button, "Revoking…", async () => {
        await api("DELETE", `/api/v1/role-grants/${encodeURIComponent(kind)}/${encodeURIComponent(name)}/${encodeURIComponent(role)}`);
        flash(`${kind} ${name} no longer has the role ${role}.`);
        await reload();
        focusOn("#grants-h");
      });
    },
  });

  wire(document.getElementById("new-token"), async (values, form) => {
    const days = values.expires_in_days;
    if (days !== undefined && !/^\d+$/.test(days)) {
      throw invalid([{ field: "expires_in_days", reason: "give a whole number of days from 1 to 3650" }]);
    }
    const subject = values.subject || "";
    const body = {
      name: values.name || `${subject} token`,
      subject,
      groups: (values.groups || "").split(",").map((g) => g.trim()).filter(Boolean),
      roles: checkedValues(form, "roles"),
    };
    if (days !== undefined) body.expires_in_days = Number(days);
    const created = await api("POST", "/api/v1/tokens", body);
    patch("#new-token-result", html`<div class="card secret-once" role="alert">
      <h3 id="new-token-h" tabindex="-1">Token for ${created.api_token.subject} created</h3>
      <p><strong>Copy it now: it is shown only this once.</strong> Slipway keeps only its hash, so it cannot be shown again; if it is lost, revoke it and create another.</p>
      <p class="token-line"><code id="new-token-value">${created.token}</code></p>
      <div class="row">
        <button type="button" id="copy-token" class="primary">Copy token</button>
        <button type="button" id="hide-token">I have stored it</button>
      </div>
      <p class="help">Use it to sign in here, with <code>slipway profile set --token …</code>, or as <code>Authorization: Bearer …</code>. Expires ${when(created.api_token.expires_at)}.</p>
    </div>`);
    const value = document.getElementById("new-token-value");
    document.getElementById("copy-token").addEventListener("click", async () => {
      const copied = await copyText(created.token, value);
      flash(copied ? "Token copied to the clipboard." : "Copying is not allowed here: the token is selected, press Ctrl+C (⌘C) to copy it.", copied ? "ok" : "info");
    });
    document.getElementById("hide-token").addEventListener("click", () => {
      patch("#new-token-result", "");
      focusOn("#tokens-h");
    });
    form.reset();
    await reload();
    focusOn("#new-token-h");
  });
  actions(document.getElementById("token-list"), {
    "revoke-token": (button) => {
      const t = tokens.find((x) => x.id === button.dataset.id);
      if (!t || !window.confirm(`Revoke token ${t.name} of ${t.subject}? Anything using it is refused at once.`)) return;
      busy(button, "Revoking…", async () => {
        await api("DELETE", `/api/v1/tokens/${t.id}`);
        flash(`Token ${t.name} revoked.`);
        await reload();
        focusOn("#tokens-h");
      });
    },
  });
}

// ------------------------------------------------------------------ webhooks

const EVENTS = [
  ["OnDeploymentRequested", "a deployment is requested"],
  ["OnPreExportStarted", "a run waits for its pre-export gate"],
  ["OnApprovalStarted", "a run waits for approval"],
  ["OnPreDeploymentStarted", "a run waits for its pre-deployment gate"],
  ["OnDeploymentStarted", "the import starts"],
  ["OnDeploymentCompleted", "a run succeeded, failed or was canceled"],
];

const DELIVERY = { delivered: "ok", pending: "warn", failed: "bad" };

function webhooksTable(hooks, pipelines) {
  const pipelineName = (id) => (pipelines.find((p) => p.id === id) || { name: shortId(id) }).name;
  return html`<div class="table-wrap"><table id="webhooks" class="stack">
    <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Pipeline</th><th scope="col">Signing secret</th><th scope="col">Created</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${hooks.length ? "" : emptyRow(6, "No webhooks yet: add one below.")}${hooks.map((h) => html`<tr data-webhook="${h.id}">
      <td data-label="URL" class="wrap"><code>${h.url}</code></td>
      <td data-label="Events">${h.events.length ? h.events.join(", ") : "every event"}</td>
      <td data-label="Pipeline">${h.pipeline_id ? pipelineName(h.pipeline_id) : "every pipeline"}</td>
      <td data-label="Signing secret"><code>${h.secret_ref}</code></td>
      <td data-label="Created">${when(h.created_at)}<p class="help">by ${h.created_by}</p></td>
      <td data-label="Actions"><div class="row actions">
        <button type="button" data-action="deliveries" data-id="${h.id}" data-key="deliveries:${h.id}" aria-label="Recent deliveries to ${h.url}">Deliveries</button>
        <button type="button" class="danger" data-action="delete-webhook" data-id="${h.id}" data-key="delete-webhook:${h.id}" aria-label="Delete webhook ${h.url}">Delete</button>
      </div></td>
    </tr>`)}</tbody></table></div>`;
}

function deliveriesTable(hook, list) {
  return html`<h2 id="deliveries-h" tabindex="-1">Recent deliveries to <code>${hook.url}</code></h2>
    ${list.length ? html`<div class="table-wrap"><table id="deliveries" class="stack">
      <thead><tr><th scope="col">Event</th><th scope="col">Run</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Raised</th><th scope="col">Delivered / next attempt</th><th scope="col">Last error</th></tr></thead>
      <tbody>${list.map((d) => html`<tr>
        <td data-label="Event">${d.event}</td>
        <td data-label="Run"><a href="#/runs/${d.run_id}">${shortId(d.run_id)}</a></td>
        <td data-label="Status"><span class="badge ${DELIVERY[d.status] || ""}">${d.status}</span></td>
        <td data-label="Attempts">${d.attempts}</td>
        <td data-label="Raised">${when(d.created_at)}</td>
        <td data-label="Delivered / next attempt">${d.delivered_at ? when(d.delivered_at) : d.next_attempt_at ? `next ${when(d.next_attempt_at)}` : ""}</td>
        <td data-label="Last error" class="wrap">${d.last_error || ""}</td>
      </tr>`)}</tbody></table></div>` : html`<p class="muted">Nothing delivered yet: deliveries appear when runs raise the webhook's events.</p>`}
    <p><button type="button" data-action="close-deliveries">Close deliveries</button></p>`;
}

async function webhooksPage() {
  const nav = currentNav();
  let [hooks, pipelines] = await Promise.all([api("GET", "/api/v1/webhooks"), api("GET", "/api/v1/pipelines")]);
  mountAt(nav, html`<h1>Webhooks</h1>
    <p class="muted">Slipway posts the events of deployment runs to these URLs (JSON, signed with HMAC-SHA256 in <code>X-Slipway-Signature</code>, retried with backoff until delivered).</p>
    <section aria-labelledby="hooks-h">
      <h2 id="hooks-h" tabindex="-1">Registered webhooks</h2>
      <div id="webhook-list"></div>
    </section>
    <section id="delivery-list" class="card" hidden></section>
    <section class="card" aria-labelledby="new-hook-h">
      <h2 id="new-hook-h">Add a webhook</h2>
      <form id="new-webhook" novalidate>
        <div class="field"><label for="hook-url">Receiver URL</label>
          <input id="hook-url" name="url" type="url" required autocomplete="off" spellcheck="false" placeholder="https://hooks.contoso.com/slipway" aria-describedby="hook-url-help">
          <p id="hook-url-help" class="help">https; plain http only to this machine (127.0.0.1, localhost).</p></div>
        <fieldset data-field="events" tabindex="-1">
          <legend>Events</legend>
          <div class="field inline"><input type="radio" id="hook-all" name="events_mode" value="all" checked>
            <label for="hook-all">Every event (also ones added in later versions)</label></div>
          <div class="field inline"><input type="radio" id="hook-some" name="events_mode" value="some">
            <label for="hook-some">Only these:</label></div>
          <div class="checks events" data-events>${EVENTS.map(([e, what]) => html`<div class="field inline">
            <input type="checkbox" id="hook-ev-${e}" name="events" value="${e}">
            <label for="hook-ev-${e}">${e} <span class="help">— ${what}</span></label></div>`)}</div>
        </fieldset>
        <div class="field"><label for="hook-pipeline">Pipeline</label>
          <select id="hook-pipeline" name="pipeline_id"><option value="">Every pipeline</option>
            ${pipelines.slice().sort(byName).map((p) => html`<option value="${p.id}">${p.name}</option>`)}</select></div>
        <div class="field"><label for="hook-secret">Signing secret reference</label>
          <input id="hook-secret" name="secret_ref" type="text" required autocomplete="off" spellcheck="false" placeholder="env:SLIPWAY_WEBHOOK_SECRET" aria-describedby="hook-secret-help">
          <p id="hook-secret-help" class="help">Where the gateway reads the HMAC key: <code>env:NAME</code> or <code>file:/path</code>. The receiver needs the same secret; Slipway never stores or shows it, so there is nothing to copy here.</p></div>
        <button type="submit" class="primary">Add webhook</button>
      </form>
    </section>`);

  const form = document.getElementById("new-webhook");
  const syncEvents = () => {
    const some = form.querySelector('input[name="events_mode"]:checked').value === "some";
    form.querySelectorAll('input[name="events"]').forEach((c) => { c.disabled = !some; });
  };
  form.querySelectorAll('input[name="events_mode"]').forEach((r) => r.addEventListener("change", syncEvents));
  syncEvents();

  const render = () => repaint("#webhook-list", webhooksTable(hooks, pipelines));
  render();
  wire(form, async (values, f) => {
    const problems = [];
    const some = values.events_mode === "some";
    const events = checkedValues(f, "events");
    if (some && !events.length) problems.push({ field: "events", reason: "tick at least one event, or choose every event" });
    const bad = refProblem("secret_ref", values.secret_ref || "", "signing secret");
    if (bad) problems.push(bad);
    if (problems.length) throw invalid(problems);
    const body = { url: values.url || "", secret_ref: values.secret_ref };
    if (some) body.events = events;
    if (values.pipeline_id) body.pipeline_id = values.pipeline_id;
    const hook = await api("POST", "/api/v1/webhooks", body);
    flash(`Webhook to ${hook.url} added.`);
    f.reset();
    syncEvents();
    hooks = await api("GET", "/api/v1/webhooks");
    render();
  });

  const deliveries = document.getElementById("delivery-list");
  actions(deliveries, {
    "close-deliveries": () => {
      const id = deliveries.dataset.webhook;
      deliveries.hidden = true;
      deliveries.innerHTML = "";
      focusOn(`[data-key="deliveries:${id}"]`);
    },
  });
  actions(document.getElementById("webhook-list"), {
    deliveries: (button) => busy(button, "Loading…", async () => {
      const hook = hooks.find((h) => h.id === button.dataset.id);
      const list = await api("GET", `/api/v1/webhooks/${hook.id}/deliveries?limit=25`);
      deliveries.dataset.webhook = hook.id;
      deliveries.innerHTML = String(deliveriesTable(hook, list));
      deliveries.hidden = false;
      focusOn("#deliveries-h");
    }),
    "delete-webhook": (button) => {
      const hook = hooks.find((h) => h.id === button.dataset.id);
      if (!hook || !window.confirm(`Delete the webhook to ${hook.url}? Deliveries not yet sent are dropped.`)) return;
      busy(button, "Deleting…", async () => {
        await api("DELETE", `/api/v1/webhooks/${hook.id}`);
        hooks = hooks.filter((h) => h.id !== hook.id);
        if (deliveries.dataset.webhook === hook.id) { deliveries.hidden = true; deliveries.innerHTML = ""; }
        flash(`Webhook to ${hook.url} deleted.`);
        render();
        focusOn("#hooks-h");
      });
    },
  });
}

// ------------------------------------------------------------------ audit

const ENTITY_KINDS = ["environment", "pipeline", "stage", "share", "role_grant", "api_token", "webhook", "run"];
const PAGE = 100;

/** A datetime-local value ("2026-11-27T18:00") as RFC 3339 in UTC. */
function toRfc3339(local) {
  if (!local) return undefined;
  const d = new Date(local);
  return isNaN(d) ? local : d.toISOString();
}

/** RFC 3339 back to a datetime-local value in the reader's zone. */
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A value in one line, shortened. */
function brief(v) {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  if (s === undefined) return "—";
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** What changed, compactly: the top-level fields that differ. */
function changeSummary(r) {
  const b = r.before && typeof r.before === "object" ? r.before : null;
  const a = r.after && typeof r.after === "object" ? r.after : null;
  if (b && a) {
    const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])]
      .filter((k) => k !== "updated_at" && JSON.stringify(b[k]) !== JSON.stringify(a[k]));
    if (!keys.length) return html`<span class="muted">no visible change</span>`;
    return html`<ul class="plain changes">${keys.slice(0, 6).map((k) => html`<li><span class="change-key">${k}</span>: <span class="diff-removed">${brief(b[k])}</span> → <span class="diff-added">${brief(a[k])}</span></li>`)}${keys.length > 6 ? html`<li class="muted">and ${keys.length - 6} more</li>` : ""}</ul>`;
  }
  const one = a || b;
  if (!one) return "";
  const label = one.name || one.state || (one.principal && `${one.principal.kind} ${one.principal.name}`) || one.subject || "";
  return html`<span class="${a ? "diff-added" : "diff-removed"}">${a ? "created" : "removed"}${label ? ` ${label}` : ""}</span>`;
}

function entityLabel(r) {
  const one = r.after || r.before || {};
  const name = typeof one === "object" && one ? one.name || (one.principal && `${one.principal.kind} ${one.principal.name}`) : "";
  return html`${r.entity_kind} ${name ? html`<strong>${name}</strong>` : ""}<p class="help"><code title="${r.entity_id}">${brief(r.entity_id)}</code></p>`;
}

function auditRows(records) {
  return records.map((r) => html`<tr data-seq="${r.seq}">
    <td data-label="#">${r.seq}</td>
    <td data-label="Time">${when(r.at)}</td>
    <td data-label="Actor">${r.actor}</td>
    <td data-label="Action">${r.action}</td>
    <td data-label="Entity">${entityLabel(r)}</td>
    <td data-label="Change" class="wrap">${changeSummary(r)}
      ${(r.before || r.after) && html`<details><summary>Before and after</summary>
        ${r.before !== null && r.before !== undefined && html`<h4>Before</h4><pre>${JSON.stringify(r.before, null, 2)}</pre>`}
        ${r.after !== null && r.after !== undefined && html`<h4>After</h4><pre>${JSON.stringify(r.after, null, 2)}</pre>`}
      </details>`}</td>
  </tr>`);
}

function chainStatus(v) {
  if (v.intact) {
    return html`<p class="ok"><strong>Chain intact: ${v.records} records</strong> <span class="muted">(head #${v.head_seq}, hash <code>${String(v.head_hash).slice(0, 16)}…</code>)</span></p>`;
  }
  return html`<p class="error" role="alert"><strong>Chain broken at record #${v.first_broken_seq}:</strong> ${v.problem || "no detail given"}. Records may have been altered, removed or reordered: restore the database from a backup and compare.</p>`;
}

async function auditPage(_params, q) {
  const nav = currentNav();
  const [pipelines, verification] = await Promise.all([
    api("GET", "/api/v1/pipelines"),
    api("GET", "/api/v1/audit/verify").catch((err) => ({ error: err })),
  ]);
  mountAt(nav, html`<h1>Audit log</h1>
    <p class="muted">Every change to environments, pipelines, stages, shares, roles, tokens and webhooks, and every run's moves, oldest first. Records are hash-chained, so an altered, removed or reordered record is detected.</p>
    <section class="card" aria-labelledby="chain-h">
      <h2 id="chain-h">Integrity</h2>
      <div id="chain-status" role="status"></div>
      <button type="button" id="verify-again">Verify again</button>
    </section>
    <form id="audit-filter" class="card" novalidate>
      <h2>Filters</h2>
      <div class="filters">
        <div class="field"><label for="audit-pipeline">Pipeline</label>
          <select id="audit-pipeline" name="pipeline_id"><option value="">Any</option>
            ${pipelines.slice().sort(byName).map((p) => html`<option value="${p.id}" ${attr(q.pipeline_id === p.id, "selected")}>${p.name}</option>`)}</select></div>
        <div class="field"><label for="audit-actor">Actor</label>
          <input id="audit-actor" name="actor" type="text" autocomplete="off" spellcheck="false" value="${q.actor || ""}"></div>
        <div class="field"><label for="audit-kind">Entity kind</label>
          <select id="audit-kind" name="entity_kind"><option value="">Any</option>
            ${ENTITY_KINDS.map((k) => html`<option value="${k}" ${attr(q.entity_kind === k, "selected")}>${k}</option>`)}</select></div>
        <div class="field"><label for="audit-entity">Entity id</label>
          <input id="audit-entity" name="entity_id" type="text" autocomplete="off" spellcheck="false" value="${q.entity_id || ""}"></div>
        <div class="field"><label for="audit-since">From (your time)</label>
          <input id="audit-since" name="since" type="datetime-local" value="${toLocalInput(q.since)}"></div>
        <div class="field"><label for="audit-until">Until (your time, exclusive)</label>
          <input id="audit-until" name="until" type="datetime-local" value="${toLocalInput(q.until)}"></div>
        <div class="field"><label for="audit-after">After record #</label>
          <input id="audit-after" name="after_seq" type="number" min="0" step="1" inputmode="numeric" value="${q.after_seq || ""}"></div>
      </div>
      <div class="row">
        <button type="submit" class="primary">Show records</button>
        <button type="button" id="audit-latest">Latest ${PAGE}</button>
        <button type="button" id="audit-clear">Clear filters</button>
      </div>
    </form>
    <section aria-labelledby="records-h">
      <h2 id="records-h" tabindex="-1">Records</h2>
      <p id="audit-count" class="muted" aria-live="polite"></p>
      <div class="table-wrap"><table id="audit" class="stack">
        <thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Entity</th><th scope="col">Change</th></tr></thead>
        <tbody></tbody></table></div>
      <p><button type="button" id="audit-more" hidden>Show the next ${PAGE}</button></p>
    </section>`);

  let head = 0;
  const showChain = (v) => {
    if (v.error) {
      patch("#chain-status", html`<p class="error">Could not verify the chain: ${v.error.message}</p>`);
      return;
    }
    head = v.head_seq;
    patch("#chain-status", chainStatus(v));
  };
  showChain(verification);
  document.getElementById("verify-again").addEventListener("click", (ev) => busy(ev.currentTarget, "Verifying…", async () => {
    showChain(await api("GET", "/api/v1/audit/verify"));
  }));

  const form = document.getElementById("audit-filter");
  const tbody = document.querySelector("#audit tbody");
  const more = document.getElementById("audit-more");
  let shown = 0;
  let filters = {};

  /** The API's query from the form (times as RFC 3339). */
  const fromForm = () => {
    const v = (n) => (form.querySelector(`[name="${n}"]`).value || "").trim();
    const out = {
      pipeline_id: v("pipeline_id"), actor: v("actor"), entity_kind: v("entity_kind"), entity_id: v("entity_id"),
      since: toRfc3339(v("since")), until: toRfc3339(v("until")), after_seq: v("after_seq"),
    };
    return Object.fromEntries(Object.entries(out).filter(([, x]) => x));
  };
  const load = async (params, append) => {
    const qs = new URLSearchParams({ ...params, limit: String(PAGE) });
    const records = await api("GET", `/api/v1/audit?${qs}`);
    if (append) tbody.insertAdjacentHTML("beforeend", String(html`${auditRows(records)}`));
    else tbody.innerHTML = String(html`${auditRows(records)}`);
    shown = append ? shown + records.length : records.length;
    document.getElementById("audit-count").textContent = shown
      ? `${shown} record${shown === 1 ? "" : "s"} shown${records.length === PAGE ? "; there may be more" : ""}.`
      : "No records match these filters.";
    more.hidden = records.length < PAGE;
    if (records.length) more.dataset.after = String(records[records.length - 1].seq);
  };
  const apply = async (params) => {
    filters = params;
    // Keep the filters in the address, so the view can be bookmarked or
    // shared, without a navigation that would re-render the page.
    const qs = new URLSearchParams(params).toString();
    history.replaceState(null, "", `#/admin/audit${qs ? `?${qs}` : ""}`);
    await load(params, false);
  };

  wire(form, async () => {
    await apply(fromForm());
    focusOn("#records-h");
  });
  document.getElementById("audit-latest").addEventListener("click", (ev) => busy(ev.currentTarget, null, async () => {
    const params = fromForm();
    params.after_seq = String(Math.max(0, head - PAGE));
    form.querySelector('[name="after_seq"]').value = params.after_seq;
    await apply(params);
    focusOn("#records-h");
  }));
  document.getElementById("audit-clear").addEventListener("click", (ev) => busy(ev.currentTarget, null, async () => {
    form.reset();
    form.querySelectorAll("input").forEach((i) => { i.value = ""; });
    form.querySelectorAll("select").forEach((s) => { s.value = ""; });
    await apply({});
  }));
  more.addEventListener("click", () => busy(more, "Loading…", async () => {
    const first = tbody.children.length;
    await load({ ...filters, after_seq: more.dataset.after }, true);
    const row = tbody.children[first];
    if (row) { row.setAttribute("tabindex", "-1"); row.focus(); }
  }));

  const initial = Object.fromEntries(["pipeline_id", "actor", "entity_kind", "entity_id", "since", "until", "after_seq"]
    .filter((k) => q[k]).map((k) => [k, q[k]]));
  try {
    await load(initial, false);
    filters = initial;
  } catch (err) {
    document.getElementById("audit-count").textContent = "";
    const box = document.createElement("div");
    box.className = "form-error";
    box.setAttribute("role", "alert");
    box.textContent = err.message;
    form.prepend(box);
  }
}

// ------------------------------------------------------------------ routes

export function register() {
  route("/admin/environments", environmentsPage, ADMIN);
  route("/admin/pipelines", pipelinesPage, ADMIN);
  route("/admin/pipelines/:id", pipelinePage, ADMIN);
  route("/admin/access", accessPage, ADMIN);
  route("/admin/webhooks", webhooksPage, ADMIN);
  route("/admin/audit", auditPage, ADMIN);
}
