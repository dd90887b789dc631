// Maker and approver pages: the pipelines shared with the caller, the
// deploy form, one run followed live (steps, pre-validation, settings,
// approval, retry, downloads), the run history and the approvals inbox.
// Everything goes through the REST API with the caller's token (app.js);
// words are a maker's, not DevOps jargon.

import {
  ApiError, api, bytes, flash, go, html, onLeave, onSubmit, patch, raw, route, session,
  showErrors, stateBadge, stream, when, currentNav, mountAt,
} from "./app.js";

/** How often a run page asks again when the gateway has no event stream. */
const POLL_MS = 1500;
/** How often the runs page refreshes while one of its runs is still going. */
const LIST_POLL_MS = 5000;

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
/** The run states in the order a run moves through them (RunState::rank). */
const RANK = {
  requested: 0, awaiting_pre_export: 1, exporting: 2, validating: 3, awaiting_settings: 4,
  awaiting_approval: 5, awaiting_pre_deployment: 6, scheduled: 7, importing: 8,
  succeeded: 9, failed: 9, canceled: 9,
};
const STATES = Object.keys(RANK);
/** A run may be canceled until the import starts. */
const cancelable = (state) => RANK[state] !== undefined && RANK[state] < RANK.importing;

const VERSION_RE = /^\d{1,9}(\.\d{1,9}){1,3}$/;
const enc = encodeURIComponent;
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const on = (cond, attribute) => (cond ? raw(attribute) : "");
const sameName = (a, b) => String(a ?? "").toLowerCase() === String(b ?? "").toLowerCase();

/** `?a=1&b=2` from the non-empty values, or "". */
function qs(params) {
  const p = new URLSearchParams();
  Object.entries(params).forEach(([k, v]) => { if (v !== undefined && v !== null && v !== "") p.set(k, v); });
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** Numeric comparison of two solution versions (1.10 > 1.9). */
function cmpVersion(a, b) {
  const pa = String(a ?? "").split(".").map(Number);
  const pb = String(b ?? "").split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i += 1) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d) return d;
  }
  return 0;
}

/** The version with its last part plus one, as the exporter bumps it. */
function bumped(version) {
  if (!VERSION_RE.test(String(version ?? ""))) return null;
  const parts = version.split(".").map(Number);
  while (parts.length < 4) parts.push(0);
  parts[3] += 1;
  return parts.join(".");
}

const runVersion = (run) => run.artifact?.version || run.deployment.version || null;
const stageOf = (pipeline, id) => pipeline?.stages.find((s) => s.id === id) || null;
const targetNames = (stage) => stage.targets.map((t) => t.name).join(", ");

/** Runs the caller may see, newest first. The filters are asked of the API
 *  and applied again here, so an older gateway that ignores them still
 *  gives the right rows. */
async function listRuns(filter = {}) {
  const runs = await api("GET", `/api/v1/deployments${qs({ ...filter, limit: filter.limit || 200 })}`);
  return runs
    .filter((r) => !filter.pipeline || r.deployment.pipeline_id === filter.pipeline)
    .filter((r) => !filter.stage || r.deployment.stage_id === filter.stage)
    .filter((r) => !filter.solution || sameName(r.deployment.solution_name, filter.solution))
    .filter((r) => !filter.state || r.state === filter.state)
    .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
}

/** The pipelines the caller sees, or none when that fails (pages that only
 *  use them for names still work). */
const pipelinesOrNone = () => api("GET", "/api/v1/pipelines").catch(() => []);

/** "Demo pipeline › test" for a run, from the pipelines list. */
function whereLabel(run, pipelines) {
  const d = run.deployment;
  const p = pipelines.find((x) => x.id === d.pipeline_id);
  const s = stageOf(p, d.stage_id);
  if (!p) return d.pipeline_id ? "a pipeline" : "no pipeline (admin)";
  return s ? `${p.name} › ${s.name}` : p.name;
}

/** `<time>` with the reader's local rendering. */
const at = (ts) => (ts ? html`<time datetime="${ts}">${when(ts)}</time>` : "");

/** "4 s", "2 min 5 s", "1 h 3 min". */
function duration(ms) {
  if (!(ms >= 0)) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// ------------------------------------------------------------------ words

/** A component type (code or name) as makers know it, plural. */
const TYPE_WORDS = {
  1: "Tables", 2: "Columns", 3: "Relationships", 9: "Choices", 10: "Relationships", 14: "Table keys",
  20: "Security roles", 24: "Forms", 26: "Views", 29: "Flows and processes", 31: "Reports",
  36: "Email templates", 59: "Charts", 60: "Forms", 61: "Web resources", 62: "Site maps",
  63: "Connection roles", 66: "Custom controls", 70: "Column security profiles", 80: "Model-driven apps",
  90: "Plug-ins", 91: "Plug-in assemblies", 92: "Plug-in steps", 93: "Plug-in step images",
  95: "Service endpoints", 300: "Canvas apps", 371: "Custom connectors", 372: "Custom connectors",
  380: "Environment variables", 381: "Environment variable values", 400: "AI model types",
  401: "AI models", 402: "AI configurations",
};
const NAME_WORDS = {
  entity: "Tables", attribute: "Columns", relationship: "Relationships", entityrelationship: "Relationships",
  optionset: "Choices", role: "Security roles", form: "Forms", systemform: "Forms", savedquery: "Views",
  workflow: "Flows and processes", webresource: "Web resources", sitemap: "Site maps",
  appmodule: "Model-driven apps", canvasapp: "Canvas apps", pluginassembly: "Plug-in assemblies",
  plugintype: "Plug-ins", sdkmessageprocessingstep: "Plug-in steps", connector: "Custom connectors",
  environmentvariabledefinition: "Environment variables", environmentvariablevalue: "Environment variable values",
  connectionreference: "Connection references", customapi: "Custom APIs", customapirequestparameter: "Custom API parameters",
  customapiresponseproperty: "Custom API properties", botcomponent: "Copilot topics", bot: "Copilots",
};
function typeWord(t) {
  if (typeof t === "number") return TYPE_WORDS[t] || `Components of type ${t}`;
  const key = String(t ?? "").toLowerCase();
  if (/^\d+$/.test(key)) return TYPE_WORDS[Number(key)] || `Components of type ${key}`;
  return NAME_WORDS[key] || String(t);
}

/** A missing dependency's type (the validator's label) in a maker's word. */
const SINGULAR = {
  Entity: "table", Attribute: "column", Relationship: "relationship", EntityRelationship: "relationship",
  OptionSet: "choice", Role: "security role", Form: "form", SystemForm: "form", SavedQuery: "view",
  Workflow: "flow or process", WebResource: "web resource", SiteMap: "site map", AppModule: "model-driven app",
  PluginAssembly: "plug-in assembly", PluginType: "plug-in", CanvasApp: "canvas app", Connector: "custom connector",
  EnvironmentVariableDefinition: "environment variable",
};

/** Each stage policy: its name for a maker, and how to get past it. */
const POLICIES = {
  allowed_connectors: ["Approved connectors only",
    "Replace the connection reference that uses this connector in your solution with one of an approved connector, or ask an admin to approve the connector for this stage."],
  blocked_connectors: ["Blocked connectors",
    "Remove or replace what uses the blocked connector in your solution, then deploy again."],
  managed_only: ["Managed solutions only", "This stage imports managed solutions only; ask an admin if the artifact was exported unmanaged."],
  max_artifact_bytes: ["Size limit",
    "Make the solution smaller (large web resources, images, sample data) or split it, or ask an admin to raise the limit."],
  deployment_windows: ["Deployment times",
    "Deploy again with “At a time” set inside an allowed window, or wait until the window opens."],
  require_notes: ["Notes required", "Deploy again and say in the notes what changes and why."],
};

const STATE_WORDS = {
  requested: "Requested", awaiting_pre_export: "Waiting for a check before export", exporting: "Exporting",
  validating: "Validating", awaiting_settings: "Needs settings", awaiting_approval: "Waiting for approval",
  awaiting_pre_deployment: "Waiting for a check before import", scheduled: "Scheduled", importing: "Importing",
  succeeded: "Succeeded", failed: "Failed", canceled: "Canceled",
};

const DAYS = { mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun" };
const windowText = (w) => `${(w.days || []).map((d) => DAYS[d] || d).join(", ")} ${w.start}–${w.end} (${w.time_zone})`;

/** What a stage asks of a deployment, as short chips. */
function stageRules(stage) {
  const p = stage.policies || {};
  const rules = [];
  if (stage.approval_required) rules.push("Approval required");
  if (stage.pre_export_gate) rules.push("Check before export");
  if (stage.pre_deployment_gate) rules.push("Check before import");
  if (p.require_notes) rules.push("Notes required");
  if (p.managed_only) rules.push("Managed only");
  if (p.max_artifact_bytes) rules.push(`At most ${bytes(p.max_artifact_bytes)}`);
  if (p.allowed_connectors?.length) rules.push(`Connectors: ${p.allowed_connectors.join(", ")}`);
  if (p.blocked_connectors?.length) rules.push(`Blocked: ${p.blocked_connectors.join(", ")}`);
  (p.deployment_windows || []).forEach((w) => rules.push(`Only ${windowText(w)}`));
  return rules;
}

const chips = (items) => (items.length ? html`<ul class="stage-rules">${items.map((t) => html`<li>${t}</li>`)}</ul>` : "");

// ------------------------------------------------------------------ home

/** The newest successful real (not dry-run) run per solution, by stage. */
function deployedByStage(runs) {
  const out = new Map();
  for (const r of runs) {
    if (r.state !== "succeeded" || r.gates?.dry_run) continue;
    const stage = r.deployment.stage_id;
    if (!out.has(stage)) out.set(stage, new Map());
    const key = r.deployment.solution_name.toLowerCase();
    if (!out.get(stage).has(key)) out.get(stage).set(key, r); // runs come newest first
  }
  return out;
}

function stageItem(p, stage, deployed) {
  const here = [...(deployed.get(stage.id)?.values() || [])];
  const previous = stageOf(p, stage.previous_stage_id);
  const sources = p.source_environments.map((e) => e.name).join(", ") || "no environment yet";
  let ready = [];
  if (previous) {
    ready = [...(deployed.get(previous.id)?.values() || [])].filter((r) => {
      const mine = deployed.get(stage.id)?.get(r.deployment.solution_name.toLowerCase());
      return !mine || cmpVersion(runVersion(r), runVersion(mine)) > 0;
    });
  }
  return html`<li class="stage">
    <h3>${stage.name} <span class="muted">→ ${targetNames(stage) || "no target yet"}</span></h3>
    <p class="help">${previous
      ? `Takes versions that succeeded in ${previous.name}.`
      : `Takes any solution from ${sources}.`}</p>
    ${chips(stageRules(stage))}
    <p class="deployed">${here.length
      ? html`Deployed here: ${here.map((r, i) => html`${i ? ", " : ""}<a href="#/runs/${r.id}">${r.deployment.solution_name} ${runVersion(r) || ""}</a>`)}`
      : html`<span class="muted">Nothing deployed here yet.</span>`}</p>
    ${ready.length && session.has("maker") ? html`<p class="ready">Ready to go on: ${ready.map((r, i) => html`${i ? " " : ""}<a class="promote" href="#/deploy/${p.id}${qs({ stage: stage.id, solution: r.deployment.solution_name, source: r.deployment.source_environment, version: runVersion(r) })}">Promote ${r.deployment.solution_name} ${runVersion(r)} to ${stage.name}</a>`)}</p>` : ""}
  </li>`;
}

function pipelineCard(p, runs) {
  const deployed = deployedByStage(runs);
  const canDeploy = session.has("maker") && p.stages.length && p.source_environments.length;
  return html`<section class="card pipeline" data-pipeline="${p.id}" aria-labelledby="pl-${p.id}">
    <div class="card-head">
      <h2 id="pl-${p.id}">${p.name}</h2>
      ${canDeploy ? html`<a class="button primary" href="#/deploy/${p.id}">Deploy</a>` : ""}
    </div>
    ${p.description ? html`<p>${p.description}</p>` : ""}
    <p class="muted">From ${p.source_environments.map((e) => e.name).join(", ") || "no development environment yet"}${p.allow_redeploy_older ? "; older versions may be deployed again" : ""}.</p>
    ${p.stages.length
      ? html`<ol class="pipeline-stages" aria-label="Stages of ${p.name}, in order">${p.stages.map((s) => stageItem(p, s, deployed))}</ol>`
      : html`<p class="warn">This pipeline has no stage yet; an admin adds them.</p>`}
    <p><a href="#/runs${qs({ pipeline: p.id })}">History of this pipeline</a></p>
  </section>`;
}

async function homePage() {
  const nav = currentNav();
  const pipelines = await api("GET", "/api/v1/pipelines");
  const runs = await Promise.all(pipelines.map((p) => listRuns({ pipeline: p.id, state: "succeeded" }).catch(() => [])));
  mountAt(nav, html`<h1>Pipelines</h1>
    ${pipelines.length
      ? html`<p class="muted">Pick a pipeline and press Deploy: Slipway exports your solution, checks it against the target and imports it.</p>`
      : html`<div class="card"><p>No pipeline is shared with you yet (you are <strong>${session.me.subject}</strong>).
          Ask an admin to share one with you or with one of your groups.</p>
          ${session.isAdmin() ? html`<p><a href="#/admin/pipelines">Create a pipeline</a></p>` : ""}</div>`}
    ${pipelines.map((p, i) => pipelineCard(p, runs[i]))}`);
}

// ------------------------------------------------------------------ deploy

/** The `value` of a datetime-local input for a time. */
function localInput(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function deployPage({ pipeline: id }, q) {
  const nav = currentNav();
  const p = await api("GET", `/api/v1/pipelines/${enc(id)}`);
  if (!p.stages.length || !p.source_environments.length) {
    mountAt(nav, html`<h1>Deploy</h1>
      <p class="warn">Pipeline ${p.name} cannot deploy yet: it needs ${!p.source_environments.length ? "a development environment" : ""}${!p.source_environments.length && !p.stages.length ? " and " : ""}${!p.stages.length ? "a stage" : ""}. An admin sets these up.</p>
      <p><a href="#/">Back to pipelines</a></p>`);
    return;
  }
  const stage0 = p.stages.find((s) => s.id === q.stage) || p.stages[0];
  const source0 = p.source_environments.find((e) => sameName(e.name, q.source)) || p.source_environments[0];
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "your time zone";
  mountAt(nav, html`<h1>Deploy</h1>
    <p class="muted">Through <strong>${p.name}</strong> · <a href="#/">Back to pipelines</a> · <a href="#/runs${qs({ pipeline: p.id })}">History of this pipeline</a></p>
    <form id="deploy" class="card form" novalidate>
      <div class="field">
        <label for="source">From</label>
        <select id="source" name="source_environment" aria-describedby="source-help">
          ${p.source_environments.map((e) => html`<option value="${e.name}" data-id="${e.id}" ${on(e.id === source0.id, "selected")}>${e.name}</option>`)}
        </select>
        <p id="source-help" class="help">The development environment where the solution is built.</p>
      </div>
      <div class="field" id="solution-field">
        <label for="solution">Solution</label>
        <select id="solution" name="solution_name" aria-describedby="solution-help" disabled><option value="">Loading the solutions…</option></select>
        <p id="solution-help" class="help" aria-live="polite"></p>
      </div>
      <div class="field">
        <label for="stage">To</label>
        <select id="stage" name="stage_id" aria-describedby="stage-help">
          ${p.stages.map((s) => html`<option value="${s.id}" ${on(s.id === stage0.id, "selected")}>${s.name} (to ${targetNames(s) || "no target yet"})</option>`)}
        </select>
        <div id="stage-help" class="help" aria-live="polite"></div>
      </div>
      <div class="field" id="target-field" hidden>
        <label for="target">Target environment</label>
        <select id="target" name="target_environment" disabled></select>
        <p class="help">This stage deploys to several environments: all of them at once (one run each), or only the one you pick.</p>
      </div>
      <div class="field">
        <label for="version">Version <span class="muted">(optional)</span></label>
        <input id="version" name="version" type="text" inputmode="decimal" autocomplete="off" spellcheck="false"
          placeholder="e.g. 1.2.0.0" value="${q.version || ""}" aria-describedby="version-help">
        <p id="version-help" class="help" aria-live="polite"></p>
      </div>
      <div class="field">
        <label for="notes">Notes <span id="notes-need" class="muted">(optional)</span></label>
        <textarea id="notes" name="notes" aria-describedby="notes-help"></textarea>
        <p id="notes-help" class="help">What changes and why. Approvers read this, and it stays with the deployment.</p>
      </div>
      <fieldset data-field="scheduled_at">
        <legend>When to import</legend>
        <div class="field inline"><input type="radio" id="when-now" name="when" value="now" checked><label for="when-now">Now</label></div>
        <div class="field inline"><input type="radio" id="when-at" name="when" value="at"><label for="when-at">At a time</label></div>
        <div class="field">
          <label for="scheduled_at">Import at (${tz})</label>
          <input id="scheduled_at" name="scheduled_at" type="datetime-local" disabled aria-describedby="scheduled-help">
          <p id="scheduled-help" class="help">Export and checks start now; the import waits until this time (after any approval).</p>
        </div>
      </fieldset>
      <div class="field inline">
        <input id="dry_run" name="dry_run" type="checkbox" aria-describedby="dry-help">
        <label for="dry_run">Validate only (dry run)</label>
      </div>
      <p id="dry-help" class="help">Exports and checks the solution against the target without importing it: nothing changes there.</p>
      <div class="row actions"><button type="submit" class="primary">Deploy</button></div>
    </form>`);

  const form = document.getElementById("deploy");
  const $ = (sel) => form.querySelector(sel);
  let solutions = null; // the listed solutions of the chosen source, or null when unknown
  let previousVersions = null; // versions that succeeded in the previous stage, for the chosen solution
  let deployedHere = null; // first stages: the newest version of it this stage deployed
  let loadSeq = 0;

  const stage = () => stageOf(p, $("#stage").value) || stage0;
  const solution = () => $("#solution").value;
  const listed = () => solutions?.find((s) => sameName(s.unique_name, solution())) || null;

  function describeStage() {
    const s = stage();
    const previous = stageOf(p, s.previous_stage_id);
    const rules = stageRules(s);
    patch("#stage-help", html`<p>${previous
      ? `Deploys a version that already succeeded in ${previous.name} (stages run in order), to ${targetNames(s)}.`
      : `Exports the solution from ${$("#source").value} and imports it into ${targetNames(s)}.`}</p>
      ${rules.length ? html`<p>Rules here: ${rules.join(" · ")}.</p>` : ""}`);
    const targets = s.targets;
    const tf = $("#target-field");
    tf.hidden = targets.length < 2;
    $("#target").disabled = targets.length < 2;
    $("#target").innerHTML = String(html`<option value="">All ${targets.length} targets</option>${targets.map((t) => html`<option value="${t.name}">${t.name}</option>`)}`);
    const notesRequired = !!s.policies?.require_notes;
    $("#notes-need").textContent = notesRequired ? "(required here)" : "(optional)";
    $("#notes").required = notesRequired;
  }

  function describeVersion() {
    const s = stage();
    const previous = stageOf(p, s.previous_stage_id);
    const sol = listed();
    const name = solution() || "the solution";
    const targets = targetNames(s);
    let text;
    let suggest = null;
    if (previous) {
      if (previousVersions === null) text = html`Leave empty to deploy the newest version of ${name} that succeeded in ${previous.name}.`;
      else if (!previousVersions.length) text = html`<span class="warn">${name} has not succeeded in ${previous.name} yet: deploy it there first.</span>`;
      else text = html`Leave empty to deploy ${previousVersions[0]}, the newest that succeeded in ${previous.name}. Versions you can deploy: ${previousVersions.join(", ")}.`;
    } else if (sol && bumped(sol.version)) {
      const next = bumped(sol.version);
      text = html`Leave empty to bump the revision: ${sol.unique_name} is ${sol.version} in ${$("#source").value}, so this deploys ${next}. Or enter a higher version, like ${sol.version.split(".")[0]}.${Number(sol.version.split(".")[1] || 0) + 1}.0.0.`;
      // The bump starts from the development environment's version, which
      // a deployment does not change: a second one would repeat it.
      if (deployedHere && cmpVersion(next, deployedHere) <= 0 && !p.allow_redeploy_older) {
        suggest = bumped(deployedHere);
        text = html`<span class="warn">${targets} already has ${deployedHere} from this pipeline, so leaving this empty would deploy ${next} again and be refused.</span>
          Enter a higher version, like ${suggest}.`;
      }
    } else {
      text = html`Leave empty to bump the revision (the last number): 1.0.0.3 in the development environment becomes 1.0.0.4. Or enter a version like 1.2.0.0.`;
    }
    const older = p.allow_redeploy_older ? " This pipeline also allows deploying an older version again." : "";
    patch("#version-help", html`${text}${older}${suggest && !$("#version").value ? html` <button type="button" class="link" data-version="${suggest}">Use ${suggest}</button>` : ""}`);
  }

  /** What the chosen stage's help needs: the versions that succeeded in
   *  the previous stage, or (first stages) the newest one deployed here. */
  async function loadPreviousVersions() {
    const s = stage();
    previousVersions = null;
    deployedHere = null;
    describeVersion();
    if (!solution()) return;
    const seq = ++loadSeq;
    try {
      const runs = await listRuns({ pipeline: p.id, stage: s.previous_stage_id || s.id, solution: solution(), state: "succeeded" });
      if (seq !== loadSeq) return;
      const versions = [...new Set(runs.filter((r) => !r.gates?.dry_run).map(runVersion).filter(Boolean))].sort((a, b) => cmpVersion(b, a));
      if (s.previous_stage_id) previousVersions = versions;
      else deployedHere = versions[0] || null;
    } catch {
      previousVersions = null;
    }
    describeVersion();
  }

  /** Replaces the solution control: a list when the environment answers,
   *  else a text box with the reason (the maker can still type the name). */
  function solutionControl(content) {
    const old = $("#solution");
    const wrap = document.createElement("div");
    wrap.innerHTML = String(content);
    old.replaceWith(wrap.firstElementChild);
    $("#solution").addEventListener("change", () => { describeVersion(); loadPreviousVersions(); });
  }

  async function loadSolutions() {
    const option = $("#source").selectedOptions[0];
    const envId = option?.dataset.id;
    const wanted = q.solution || (solutions ? solution() : "");
    solutions = null;
    solutionControl(html`<select id="solution" name="solution_name" aria-describedby="solution-help" disabled><option value="">Loading the solutions…</option></select>`);
    patch("#solution-help", `Asking ${option.value} for its solutions…`);
    try {
      const all = await api("GET", `/api/v1/environments/${enc(envId)}/solutions`);
      if ($("#source").selectedOptions[0] !== option) return; // the maker picked another source meanwhile
      solutions = all.filter((s) => !s.managed);
      const managed = all.length - solutions.length;
      if (!solutions.length) {
        solutionControl(html`<input id="solution" name="solution_name" type="text" autocomplete="off" spellcheck="false" value="${wanted}" aria-describedby="solution-help">`);
        patch("#solution-help", `${option.value} has no solution of its own yet (managed ones cannot be deployed from it). Create one in Power Apps, or type its unique name.`);
      } else {
        const chosen = solutions.find((s) => sameName(s.unique_name, wanted)) || null;
        solutionControl(html`<select id="solution" name="solution_name" aria-describedby="solution-help">
          <option value="" ${on(!chosen, "selected")}>Choose a solution…</option>
          ${solutions.map((s) => html`<option value="${s.unique_name}" ${on(s === chosen, "selected")}>${s.friendly_name || s.unique_name} (${s.unique_name}) · ${s.version}${s.publisher ? ` · ${s.publisher}` : ""}</option>`)}
        </select>`);
        patch("#solution-help", `The solutions you build in ${option.value}, with their current version.${managed ? ` ${plural(managed, "managed solution")} installed there cannot be deployed from it and ${managed === 1 ? "is" : "are"} not listed.` : ""}`);
      }
    } catch (err) {
      if ($("#source").selectedOptions[0] !== option) return;
      solutionControl(html`<input id="solution" name="solution_name" type="text" autocomplete="off" spellcheck="false" value="${wanted}" aria-describedby="solution-help">`);
      patch("#solution-help", html`<span class="warn">The solutions of ${option.value} could not be listed (${err.message}).</span> Type the solution's unique name instead (Power Apps › Solutions › Name).`);
    }
    q.solution = "";
    describeVersion();
    loadPreviousVersions();
  }

  $("#source").addEventListener("change", () => { describeStage(); loadSolutions(); });
  $("#stage").addEventListener("change", () => { describeStage(); loadPreviousVersions(); });
  $("#version").addEventListener("change", describeVersion);
  $("#version-help").addEventListener("click", (ev) => {
    const use = ev.target.closest("[data-version]");
    if (!use) return;
    $("#version").value = use.dataset.version;
    describeVersion();
    $("#version").focus();
  });
  const scheduled = $("#scheduled_at");
  const syncWhen = () => {
    const later = $("#when-at").checked;
    scheduled.disabled = !later;
    if (later) {
      scheduled.min = localInput(new Date());
      if (!scheduled.value) scheduled.value = localInput(new Date(Date.now() + 60 * 60 * 1000));
    }
  };
  $("#when-now").addEventListener("change", syncWhen);
  $("#when-at").addEventListener("change", () => { syncWhen(); scheduled.focus(); });
  describeStage();
  loadSolutions();

  onSubmit(form, async (v) => {
    const s = stage();
    const fields = [];
    const body = {
      pipeline_id: p.id,
      stage_id: v.stage_id,
      source_environment: v.source_environment,
      solution_name: v.solution_name || "",
      dry_run: !!v.dry_run,
    };
    if (!v.solution_name) fields.push({ field: "solution_name", reason: "choose the solution to deploy" });
    if (v.target_environment) body.target_environment = v.target_environment;
    if (v.version) {
      if (VERSION_RE.test(v.version)) body.version = v.version;
      else fields.push({ field: "version", reason: `“${v.version}” is not a solution version: use 2 to 4 numbers with dots, like 1.2.0.0, or leave it empty` });
    }
    if (v.notes) body.notes = v.notes;
    else if (s.policies?.require_notes) fields.push({ field: "notes", reason: `stage ${s.name} requires notes: say what changes and why` });
    if (v.when === "at") {
      const d = new Date(v.scheduled_at || "");
      if (!v.scheduled_at || isNaN(d)) fields.push({ field: "scheduled_at", reason: "pick the date and time to import at, or choose Now" });
      else if (d.getTime() <= Date.now()) fields.push({ field: "scheduled_at", reason: "this time has passed; pick a later one, or choose Now" });
      else body.scheduled_at = d.toISOString();
    }
    if (fields.length) throw new ApiError(422, { error: "Some fields need a change.", fields });
    try {
      const run = await api("POST", "/api/v1/deployments", body);
      const others = run.fan_out?.length || 0;
      flash(`${body.dry_run ? "Dry run started: checking without importing." : "Deployment started."}${others ? ` ${others + 1} runs, one per target: this is the first; the others are under Runs.` : ""}`, "ok");
      go(`/runs/${run.id}`);
    } catch (err) {
      if (err.status !== 409) throw err;
      // Stage order and other conflicts: at the top, with the way out.
      showErrors(form, err);
      const box = form.querySelector(".form-error");
      const previous = stageOf(p, s.previous_stage_id);
      if (box && previous) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link";
        b.textContent = `Choose stage ${previous.name} instead`;
        b.addEventListener("click", () => {
          $("#stage").value = previous.id;
          $("#stage").dispatchEvent(new Event("change"));
          box.remove();
          $("#stage").focus();
        });
        box.append(document.createElement("br"), b);
      }
    }
  });
}

// ------------------------------------------------------------------ run page

/** The steps a run goes through, given its gates; `when` decides whether
 *  a step applies to this run. */
const STEPS = [
  { state: "requested", label: () => "Requested" },
  { state: "awaiting_pre_export", when: (r) => r.gates.pre_export_gate, label: () => "Check before export (by an external system)" },
  { state: "exporting", label: (r) => `Export from ${r.deployment.source_environment}` },
  { state: "validating", label: (r) => `Checks against ${r.deployment.target_environment}` },
  { state: "awaiting_settings", when: (r, seen) => seen.has("awaiting_settings") || r.state === "awaiting_settings", label: () => "Settings for the target" },
  { state: "awaiting_approval", when: (r) => r.gates.approval_required, label: () => "Approval" },
  { state: "awaiting_pre_deployment", when: (r) => r.gates.pre_deployment_gate, label: () => "Check before import (by an external system)" },
  { state: "scheduled", when: (r) => !!r.gates.scheduled_at && !r.gates.dry_run, label: (r) => `Wait until ${when(r.gates.scheduled_at)}` },
  { state: "importing", when: (r) => !r.gates.dry_run, label: (r) => `Import into ${r.deployment.target_environment}` },
];
const STEP_OF_EVENT = { export: "exporting", validate: "validating", import: "importing" };

function transitions(history) {
  return history.filter((e) => e.kind === "transition" && e.state);
}

/** Each applicable step with its status (done, current, failed, pending,
 *  skipped) and times, from the run's state and its history. */
function stepModel(run, history) {
  const moves = transitions(history);
  const seen = new Set(moves.map((m) => m.state));
  const applicable = STEPS.filter((s) => !s.when || s.when(run, seen));
  const terminal = TERMINAL.has(run.state);
  // The step a failed or canceled run stopped in: the last state it was in.
  const beforeEnd = [...moves].reverse().find((m) => !TERMINAL.has(m.state));
  const stoppedIn = terminal && run.state !== "succeeded" ? (beforeEnd?.state || "requested") : null;
  const nowRank = terminal ? (stoppedIn ? RANK[stoppedIn] : RANK.succeeded) : RANK[run.state];
  return applicable.map((s) => {
    const entries = moves.map((m, i) => ({ m, i })).filter(({ m }) => m.state === s.state);
    // A step done within moments reports only its end (no transition into
    // its state): its events still show that it ran, and when.
    const events = history.filter((e) => e.kind === "event" && STEP_OF_EVENT[e.step] === s.state);
    const first = entries[0]?.m.at || events[0]?.at || (s.state === "requested" ? run.created_at : null);
    const last = entries[entries.length - 1];
    const left = last ? moves[last.i + 1]?.at
      : s.state === "requested" ? moves.find((m) => m.state !== "requested")?.at
      : events[events.length - 1]?.at || null;
    let status;
    if (stoppedIn === s.state) status = "failed";
    else if (!terminal && run.state === s.state) status = "current";
    else if (RANK[s.state] < nowRank || run.state === "succeeded") status = first ? "done" : "skipped";
    else if (first && left && !terminal) status = "done"; // e.g. settings given, now validating again
    else status = "pending";
    return { ...s, status, first, left };
  });
}

function stepDetail(run, history, step) {
  const g = run.gates;
  const lines = [];
  const decision = (d, what) => d && html`<span class="${d.passed ? "ok" : "bad"}">${d.passed ? what[0] : what[1]} by ${d.by}${d.comment ? html`: “${d.comment}”` : ""}</span>`;
  switch (step.state) {
    case "requested":
      lines.push(html`by ${run.requested_by}`);
      break;
    case "awaiting_pre_export":
      lines.push(decision(g.pre_export, ["Passed", "Refused"]));
      break;
    case "exporting":
      if (step.status === "skipped" && run.artifact) lines.push(html`Reused version ${run.artifact.version}, exported earlier (it is not exported again).`);
      else if (run.artifact && step.status === "done") lines.push(html`Version ${run.artifact.version}, ${bytes(run.artifact.managed_bytes)} managed`);
      break;
    case "validating": {
      const v = run.validation;
      if (v && step.status !== "current") lines.push(verdictWords(v, run));
      break;
    }
    case "awaiting_settings": {
      const given = transitions(history).filter((m) => m.state === "validating" && m.actor && m.actor !== "validator");
      if (step.status === "done" && given.length) lines.push(html`Given by ${given[given.length - 1].actor}`);
      break;
    }
    case "awaiting_approval":
      lines.push(decision(g.approval, ["Approved", "Rejected"]));
      break;
    case "awaiting_pre_deployment":
      lines.push(decision(g.pre_deployment, ["Passed", "Refused"]));
      break;
    case "importing": {
      const done = [...history].reverse().find((e) => e.kind === "event" && e.step === "import" && e.status !== "started" && e.status !== "retrying" && e.detail);
      if (done && step.status !== "failed") lines.push(html`${done.detail}`);
      break;
    }
    default:
  }
  // The last transient problem a step hit (the step is retried).
  const retry = [...history].reverse().find((e) => e.kind === "event" && e.status === "retrying" && STEP_OF_EVENT[e.step] === step.state);
  if (retry && (step.status === "current" || step.status === "failed")) lines.push(html`<span class="warn">Retrying: ${retry.detail || "a temporary problem"}</span>`);
  return lines.filter(Boolean);
}

function stepsHtml(run, history) {
  const model = stepModel(run, history);
  const endLabel = run.state === "succeeded"
    ? (run.gates.dry_run ? "Checked: nothing was imported (dry run)" : "Succeeded")
    : run.state === "failed" ? "Failed" : run.state === "canceled" ? "Canceled" : "Done";
  const ended = transitions(history).find((m) => TERMINAL.has(m.state))?.at || (TERMINAL.has(run.state) ? run.updated_at : null);
  const statusWord = { done: "done", current: "in progress", failed: "stopped here", pending: "not yet", skipped: "skipped" };
  return html`${model.map((s) => {
    const detail = stepDetail(run, history, s);
    const took = s.first && s.left ? ` · took ${duration(new Date(s.left) - new Date(s.first))}` : "";
    return html`<li class="${s.status === "skipped" ? "done" : s.status}" ${on(s.status === "current", 'aria-current="step"')}>
      <span class="step-label">${s.label(run)}</span> <span class="visually-hidden">(${statusWord[s.status]})</span>
      ${s.first ? html`<span class="step-time">${at(s.first)}${took}</span>` : ""}
      ${detail.length ? html`<div class="step-detail">${detail.map((d) => html`<p>${d}</p>`)}</div>` : ""}
    </li>`;
  })}
  <li class="${run.state === "succeeded" ? "done" : TERMINAL.has(run.state) ? "failed" : ""}">
    <span class="step-label">${endLabel}</span>
    ${ended ? html`<span class="step-time">${at(ended)}</span>` : ""}
  </li>`;
}

/** One sentence saying what a validation found. */
function verdictWords(v, run) {
  const target = run.deployment.target_environment;
  if (v.verdict === "passed") return html`<span class="ok">Passed: nothing stands in the way of the import into ${target}.</span>`;
  if (v.verdict === "needs_settings") return html`<span class="warn">${target} needs a few settings before the import.</span>`;
  return html`<span class="bad">This version cannot be imported into ${target} as it is.</span>`;
}

/** What the run is doing now, in one sentence. */
function stateSentence(run, mine) {
  const d = run.deployment;
  const g = run.gates;
  switch (run.state) {
    case "requested": return "Waiting to start.";
    case "awaiting_pre_export": return "Waiting for an external system to allow the export.";
    case "exporting": return `Exporting ${d.solution_name} from ${d.source_environment}.`;
    case "validating": return `Checking ${d.solution_name} against ${d.target_environment}.`;
    case "awaiting_settings": return `${d.target_environment} needs a few settings: fill them in below, then the checks run again.`;
    case "awaiting_approval": return mine
      ? "Waiting for another approver: you requested this deployment, so you cannot approve it."
      : "Waiting for an approver.";
    case "awaiting_pre_deployment": return "Waiting for an external system to allow the import.";
    case "scheduled": return `Checked and ready; the import starts at ${when(g.scheduled_at)}.`;
    case "importing": return `Importing into ${d.target_environment}. This can take a few minutes.`;
    case "succeeded": return g.dry_run
      ? `The checks passed; nothing was imported into ${d.target_environment} (dry run).`
      : `Imported into ${d.target_environment}.`;
    case "failed": return "Failed.";
    case "canceled": return "Canceled.";
    default: return "";
  }
}

function runTitle(run) {
  const d = run.deployment;
  const v = runVersion(run);
  return `Deployment of ${d.solution_name}${v ? ` ${v}` : ""} to ${d.target_environment}`;
}

function summaryHtml(view) {
  const { run, pipeline } = view;
  const d = run.deployment;
  const g = run.gates;
  const stage = stageOf(pipeline, d.stage_id);
  const mine = session.me && run.requested_by === session.me.subject;
  const v = runVersion(run);
  return html`<p class="run-state-line"><span id="run-state">${stateBadge(run.state)}</span>
      ${g.dry_run ? html`<span class="badge">dry run</span>` : ""}
      <span>${stateSentence(run, mine && session.has("approver"))}</span></p>
    <dl class="run-facts">
      <div><dt>Solution</dt><dd>${d.solution_name}</dd></div>
      <div><dt>Version</dt><dd>${v || html`<span class="muted">the next revision (known after the export)</span>`}${run.validation?.installed_version ? html` <span class="muted">(${d.target_environment} has ${run.validation.installed_version})</span>` : ""}</dd></div>
      <div><dt>From → to</dt><dd>${d.source_environment} → ${d.target_environment}</dd></div>
      <div><dt>Pipeline</dt><dd>${pipeline ? `${pipeline.name}${stage ? ` › ${stage.name}` : ""}` : (d.pipeline_id ? "—" : "none (admin deployment)")}</dd></div>
      <div class="span2"><dt>Requested</dt><dd>by ${run.requested_by}${mine ? " (you)" : ""}, ${at(run.created_at)}</dd></div>
      ${g.scheduled_at ? html`<div><dt>Import at</dt><dd>${at(g.scheduled_at)}</dd></div>` : ""}
      ${d.notes ? html`<div class="wide"><dt>Notes</dt><dd class="notes">${d.notes}</dd></div>` : ""}
    </dl>
    <p class="row links">
      ${d.pipeline_id ? html`<a href="#/runs${qs({ pipeline: d.pipeline_id, solution: d.solution_name })}">History of this solution</a>
      <a href="#/runs${qs({ pipeline: d.pipeline_id })}">History of this pipeline</a>` : html`<a href="#/runs${qs({ solution: d.solution_name })}">History of this solution</a>`}
    </p>`;
}

/** The import's progress: the percentage the target environment reports
 *  (the run's `import_progress`, from its import job) once it gives one,
 *  with how long the import has run and how often it was checked. */
function progressHtml(view) {
  const { run, history } = view;
  const started = transitions(history).filter((m) => m.state === "importing").pop()?.at;
  const progress = run.import_progress;
  const checks = Number.isInteger(progress?.polls)
    ? progress.polls
    : Math.max(0, history.filter((e) => e.kind === "event" && e.step === "import" && e.status === "started").length - 1);
  const pct = typeof progress?.percent === "number" ? Math.max(0, Math.min(100, progress.percent)) : null;
  const elapsed = started ? duration(Date.now() - new Date(started)) : "";
  return html`<div class="import-progress">
    <label for="import-progress">Import into ${run.deployment.target_environment}${pct !== null ? `: ${Math.round(pct)} %` : ""}</label>
    ${pct !== null
      ? html`<progress id="import-progress" max="100" value="${pct}">${Math.round(pct)} %</progress>`
      : html`<progress id="import-progress" max="100" aria-describedby="import-progress-text">running</progress>`}
    <p id="import-progress-text" class="help">${elapsed ? `Running for ${elapsed}` : "Starting"}${checks ? `, checked ${plural(checks, "time")}` : ""}. ${pct === null ? "The environment has not reported a percentage yet; this page updates by itself." : ""}</p>
  </div>`;
}

function resultHtml(view) {
  const { run, history } = view;
  const d = run.deployment;
  if (run.state === "importing") return progressHtml(view);
  if (run.state === "failed" || run.state === "canceled") {
    const rejected = run.gates.approval && !run.gates.approval.passed;
    const hint = run.state === "canceled" ? "Nothing was imported. Retry runs it again as it was."
      : rejected ? "An approver rejected it. Change what they asked for, then deploy again."
      : run.validation && run.validation.verdict === "failed" && !transitions(history).some((m) => m.state === "importing")
        ? "Nothing was imported. The checks below say what to change; then deploy again."
        : "Fix the cause, then Retry.";
    const end = transitions(history).find((m) => m.state === run.state);
    const fallback = run.state === "canceled"
      ? `Canceled${end?.actor ? ` by ${end.actor}` : ""}${end?.at ? ` on ${when(end.at)}` : ""}.`
      : "Failed without a reason given.";
    return html`<div class="result bad-box">
      <p id="run-reason" role="alert">${run.reason || fallback}</p>
      <p class="help">${hint}</p></div>`;
  }
  if (run.state === "succeeded") {
    const message = [...history].reverse().find((e) => e.kind === "event" && e.step === "import" && e.status === "succeeded")?.detail;
    return html`<div class="result ok-box"><p>${run.gates.dry_run
      ? `Dry run passed: ${d.solution_name} ${runVersion(run) || ""} can be imported into ${d.target_environment}.`
      : `${d.solution_name} ${runVersion(run) || ""} is installed in ${d.target_environment}.`}</p>
      ${message ? html`<p class="help">${d.target_environment} said: ${message}</p>` : ""}</div>`;
  }
  if (run.state === "awaiting_approval" && document.getElementById("decision")) {
    return html`<p><button type="button" class="link" data-jump="decision">Go to your decision</button> <span class="help">(after the checks below)</span></p>`;
  }
  return "";
}

function actionsHtml(view) {
  const { run, pipeline } = view;
  const maker = session.has("maker");
  const out = [];
  if (maker && cancelable(run.state)) out.push(html`<button type="button" class="danger" data-action="cancel">Cancel deployment</button>`);
  if (maker && (run.state === "failed" || run.state === "canceled")) {
    out.push(html`<button type="button" class="primary" data-action="retry" aria-describedby="retry-help">Retry</button>
      <span id="retry-help" class="help">Runs the same deployment again${run.artifact ? `, with version ${run.artifact.version}` : ""}.</span>`);
  }
  const stage = stageOf(pipeline, run.deployment.stage_id);
  if (maker && run.state === "succeeded" && run.artifact && stage) {
    if (run.gates.dry_run) {
      out.push(html`<button type="button" class="primary" data-action="deploy-real" aria-describedby="real-help">Deploy this version</button>
        <span id="real-help" class="help">Deploys ${run.artifact.version} to ${run.deployment.target_environment} for real.</span>`);
    } else if (pipeline.allow_redeploy_older && view.newer) {
      out.push(html`<button type="button" data-action="redeploy" aria-describedby="redeploy-help">Redeploy</button>
        <span id="redeploy-help" class="help">Installs ${run.artifact.version} in ${run.deployment.target_environment} again, in place of the newer ${view.newer} (this pipeline allows going back).</span>`);
    } else if (view.newer) {
      out.push(html`<span class="help">A newer version (${view.newer}) was deployed since; this pipeline does not allow going back to an older one.</span>`);
    }
  }
  if (run.artifact) {
    const base = `/api/v1/deployments/${run.id}/artifact`;
    out.push(html`<a href="${base}?kind=managed" class="download" data-download="managed">Download managed</a>
      <a href="${base}?kind=unmanaged" class="download" data-download="unmanaged">Download unmanaged</a>
      <span class="help">${run.artifact.version}${run.artifact.managed_bytes ? `, ${bytes(run.artifact.managed_bytes)} managed` : ""}</span>`);
  }
  return html`${out}`;
}

// ---------------------------------------------------------- validation

function missingHtml(v, target) {
  const list = v.missing_dependencies || [];
  if (!list.length) return html`<p id="missing-dependencies" class="ok">None: ${target} has everything the solution needs.</p>`;
  return html`<p class="bad">${target} lacks ${plural(list.length, "component")} the solution needs. Nothing can be imported until ${list.length === 1 ? "it is" : "they are"} there.</p>
    <ul id="missing-dependencies" class="findings">${list.map((m) => {
      const provider = m.provided_by || m.solution || m.required_solution || m.package;
      const prefix = /^([a-z][a-z0-9]{1,7})_/i.exec(m.required || "")?.[1];
      const microsoft = prefix && /^(msdyn|msdynce|mspp|adx|msft|mserp|msfp|msa|mspcat)$/i.test(prefix);
      return html`<li><strong>${SINGULAR[m.required_type] || m.required_type}</strong> <code>${m.required}</code>${m.required_by ? html`, needed by <code>${m.required_by}</code>` : ""}
        ${provider ? html`<br><span class="help">Comes with solution ${provider}: install it in ${target} first.</span>`
          : microsoft ? html`<br><span class="help">Its name starts with <code>${prefix}_</code>: it comes with a Microsoft app (Dynamics 365 or Power Pages). Ask an admin to install that app in ${target}.</span>`
          : prefix ? html`<br><span class="help">Its name starts with <code>${prefix}_</code>: it likely comes from a solution of the publisher with that prefix (maybe another of yours). Install or deploy that solution to ${target} first.</span>` : ""}
      </li>`;
    })}</ul>
    <p class="help">To fix: deploy or install the solution that has ${list.length === 1 ? "it" : "them"} into ${target} first, or add ${list.length === 1 ? "it" : "them"} to your solution (Power Apps › your solution › Add existing), or remove what needs ${list.length === 1 ? "it" : "them"}; then deploy again.</p>`;
}

/** Component keys grouped by maker word, each group listing names. */
function groupKeys(keys) {
  const groups = new Map();
  for (const k of keys || []) {
    const word = typeWord(k.component_type);
    if (!groups.has(word)) groups.set(word, []);
    groups.get(word).push(k.name);
  }
  return [...groups.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}

function diffGroup(kind, title, keys, note) {
  const groups = groupKeys(keys);
  if (!groups.length) return "";
  const max = 12;
  return html`<section class="diff-group" aria-label="${title}">
    <h4 class="diff-${kind}">${title} (${keys.length})</h4>
    ${note ? html`<p class="help">${note}</p>` : ""}
    <ul>${groups.map(([word, names]) => html`<li><strong>${word}</strong> (${names.length}):
      ${names.slice(0, max).map((n, i) => html`${i ? ", " : ""}<code>${n}</code>`)}
      ${names.length > max ? html` <details><summary>and ${names.length - max} more</summary>${names.slice(max).map((n, i) => html`${i ? ", " : ""}<code>${n}</code>`)}</details>` : ""}
    </li>`)}</ul>
  </section>`;
}

function diffHtml(v, target) {
  const diff = v.diff;
  if (!diff) return html`<div id="diff"><p class="muted">No comparison with ${target} is available.</p></div>`;
  const added = diff.components_added || [];
  const changed = diff.components_changed || [];
  const removed = diff.components_removed || [];
  const installed = v.installed_version;
  const nothing = !added.length && !changed.length && !removed.length && !diff.customizations_changed;
  const named = (list) => (list || []).map((x) => x.display_name || x.logical_name || x.schema_name).join(", ");
  return html`<div id="diff">
    <p>${installed ? `Compared with version ${installed}, installed in ${target}:` : `${target} does not have this solution yet: everything is new there.`}</p>
    ${nothing ? html`<p>No component changes: the same components as in ${target}.</p>` : ""}
    <div class="diff-groups">
      ${diffGroup("added", "Added", added)}
      ${diffGroup("changed", "Changed", changed)}
      ${diffGroup("removed", "Removed", removed, `The import deletes these from ${target}, with their data for tables and columns.`)}
    </div>
    ${diff.customizations_changed ? html`<p class="diff-changed">Table, form or view definitions changed.</p>` : ""}
    ${diff.connection_references_added?.length ? html`<p class="diff-added">New connection references: ${named(diff.connection_references_added)}</p>` : ""}
    ${diff.connection_references_removed?.length ? html`<p class="diff-removed">Connection references removed: ${named(diff.connection_references_removed)}</p>` : ""}
    ${diff.environment_variables_added?.length ? html`<p class="diff-added">New environment variables: ${named(diff.environment_variables_added)}</p>` : ""}
    ${diff.environment_variables_removed?.length ? html`<p class="diff-removed">Environment variables removed: ${named(diff.environment_variables_removed)}</p>` : ""}
  </div>`;
}

function policyHtml(v) {
  const list = v.policy_violations || [];
  if (!list.length) return html`<p id="policy-violations" class="ok">The stage's rules are met.</p>`;
  return html`<ul id="policy-violations" class="findings">${list.map((p) => {
    const [name, fix] = POLICIES[p.policy] || [p.policy, "Ask an admin of this pipeline about this rule."];
    return html`<li><strong>${name}</strong>: ${p.message}<br><span class="help">How to fix: ${fix}</span></li>`;
  })}</ul>`;
}

function settingsChecksHtml(v, target) {
  const refs = v.connection_references || [];
  const vars = v.environment_variables || [];
  if (!refs.length && !vars.length) return "";
  const source = { settings: "given in these settings", current: `already set in ${target}`, default: "the solution's default" };
  return html`<h3>Connections and environment variables</h3>
    <div class="table-wrap"><table class="stack run-checks">
      <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">In ${target}</th></tr></thead>
      <tbody>
        ${refs.map((c) => {
          const chosen = c.candidates?.find((x) => x.id === c.connection_id);
          return html`<tr><td data-label="Name">${c.display_name || c.logical_name} <code class="muted">${c.logical_name}</code></td>
            <td data-label="Kind">Connection (${connectorName(c.connector_id)})</td>
            <td data-label="In ${target}">${c.problem ? html`<span class="bad">⚠ ${connProblem(c, target)}</span>` : html`<span class="ok">✔ uses ${chosen?.display_name || c.connection_id || "its connection"}</span>`}</td></tr>`;
        })}
        ${vars.map((e) => html`<tr><td data-label="Name">${e.display_name || e.schema_name} <code class="muted">${e.schema_name}</code></td>
          <td data-label="Kind">Variable (${typeLabel(e.type_name)})</td>
          <td data-label="In ${target}">${e.problem ? html`<span class="bad">⚠ ${envProblem(e, target)}</span>` : html`<span class="ok">✔ ${source[e.value_source] || "has a value"}</span>`}</td></tr>`)}
      </tbody></table></div>`;
}

function validationHtml(view) {
  const { run } = view;
  const v = run.validation;
  const target = run.deployment.target_environment;
  if (!v) {
    const waiting = RANK[run.state] <= RANK.validating && !TERMINAL.has(run.state);
    return html`<h2 id="validation-h">Checks before import</h2>
      <p class="muted">${waiting ? `Slipway checks the solution against ${target} before importing: missing components, what changes, settings and the stage's rules. The results appear here.` : "No checks were made."}</p>`;
  }
  return html`<h2 id="validation-h">Checks before import</h2>
    ${run.state === "validating" ? html`<p class="muted">Checking again; these are the previous results.</p>` : ""}
    <p>${verdictWords(v, run)}</p>
    ${v.version_problem ? html`<p class="bad">⚠ ${v.version_problem}</p>` : ""}
    ${(v.errors || []).length ? html`<h3>${target} refused the solution</h3><ul class="findings">${v.errors.map((e) => html`<li class="bad">${e}</li>`)}</ul>` : ""}
    <h3>Missing dependencies</h3>
    ${missingHtml(v, target)}
    <h3>What changes in ${target}</h3>
    ${diffHtml(v, target)}
    <h3>Stage rules</h3>
    ${policyHtml(v)}
    ${run.state === "awaiting_settings" ? "" : settingsChecksHtml(v, target)}
    ${(v.warnings || []).length ? html`<h3>Warnings</h3><p class="help">These could not be checked; they do not stop the deployment.</p>
      <ul class="findings">${v.warnings.map((w) => html`<li class="warn">${w}</li>`)}</ul>` : ""}`;
}

// ---------------------------------------------------------- settings form

/** A connection reference's problem in a maker's words. */
function connProblem(c, target) {
  if (!c.problem) return null;
  const connector = connectorName(c.connector_id);
  if (!c.connection_id && c.candidates?.length) return `needs a connection: choose which ${connector} connection it uses in ${target}`;
  if (!c.connection_id) return `needs a ${connector} connection, and Slipway sees none in ${target}: ask the owner of ${target} to create one (Power Apps › Connections), or give the id of an existing one`;
  return c.problem;
}

/** An environment variable's problem in a maker's words. */
function envProblem(e, target) {
  if (!e.problem) return null;
  return e.value_source ? e.problem : `needs a value in ${target}`;
}

const connectorName = (id) => String(id || "").split("/").filter(Boolean).pop() || String(id || "");
const typeLabel = (t) => ({ string: "text", number: "number", boolean: "yes/no", json: "JSON", data_source: "data source", secret: "Key Vault secret" }[t] || t);
const KEY_VAULT_FORM = "/subscriptions/{subscription id}/resourceGroups/{resource group}/providers/Microsoft.KeyVault/vaults/{vault name}/secrets/{secret name}";

/** Why a Key Vault secret reference is unusable, or null when it is fine
 *  (the validator's rule: fixed segments in any case, a guid, the rest
 *  non-blank). */
function keyVaultProblem(value) {
  const parts = value.split("/");
  const fixed = [[1, "subscriptions"], [3, "resourceGroups"], [5, "providers"], [6, "Microsoft.KeyVault"], [7, "vaults"], [9, "secrets"]];
  if (parts.length !== 11 || parts[0] !== "") return `must have the form ${KEY_VAULT_FORM}`;
  const wrong = fixed.find(([i, word]) => parts[i].toLowerCase() !== word.toLowerCase());
  if (wrong) return `needs “${wrong[1]}” where it has “${parts[wrong[0]]}”: the form is ${KEY_VAULT_FORM}`;
  if (!/^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i.test(parts[2])) return "needs a GUID as the subscription id, like 00000000-0000-0000-0000-000000000000";
  if ([4, 8, 10].some((i) => !parts[i].trim() || parts[i].trim() !== parts[i])) return "needs resource group, vault and secret names, without spaces around them";
  return null;
}

/** Why a value does not fit a variable's type, or null. */
function valueProblem(type, value, input) {
  if (type === "number") {
    if (input?.validity?.badInput) return "must be a number, like 42 or 3.5";
    return Number.isFinite(Number(value)) ? null : "must be a number, like 42 or 3.5";
  }
  if (type === "boolean") return /^(yes|no|true|false)$/i.test(value) ? null : "must be yes or no";
  if (type === "json") {
    try { JSON.parse(value); return null; } catch (e) { return `is not valid JSON (${e.message})`; }
  }
  if (type === "secret") return keyVaultProblem(value.trim());
  return value.trim() ? null : "must not be blank";
}

/** `obj[key]` with the key compared ignoring case, as the workers read it. */
function getCI(obj, key) {
  if (!obj || typeof obj !== "object") return undefined;
  const k = Object.keys(obj).find((x) => x.toLowerCase() === key.toLowerCase());
  return k === undefined ? undefined : obj[k];
}

/** The run's current settings, as maps by lowercase name. */
function currentSettings(run) {
  const s = run.deployment.settings;
  const conns = new Map();
  const vals = new Map();
  for (const c of getCI(s, "ConnectionReferences") || []) {
    const name = getCI(c, "LogicalName");
    if (name) conns.set(String(name).toLowerCase(), c);
  }
  for (const e of getCI(s, "EnvironmentVariables") || []) {
    const name = getCI(e, "SchemaName");
    if (name) vals.set(String(name).toLowerCase(), e);
  }
  return { conns, vals };
}

function connField(c, current, target) {
  const id = `conn-${c.logical_name}`;
  const saved = getCI(current.conns.get(c.logical_name.toLowerCase()), "ConnectionId");
  const chosen = saved || c.connection_id || "";
  const candidates = [...(c.candidates || [])];
  const connector = connectorName(c.connector_id);
  const needsChoice = c.problem && !c.connection_id;
  const problem = c.problem && c.connection_id ? connProblem(c, target) : null;
  const attrs = html`id="${id}" name="${id}" data-conn="${c.logical_name}" data-connector="${c.connector_id}" aria-describedby="${id}-help"`;
  if (!candidates.length) {
    // Nothing to pick from (the target lists none, or none of this
    // connector): the id of a connection made there by hand.
    return html`<div class="field">
      <label for="${id}">${c.display_name || c.logical_name} <span class="muted">(${connector} connection id)</span></label>
      <input type="text" ${attrs} value="${chosen}" autocomplete="off" spellcheck="false" class="code">
      <p id="${id}-help" class="help">Connection reference <code>${c.logical_name}</code>. ${target} lists no ${connector} connection Slipway can offer:
        ask the owner of ${target} to create one (Power Apps › Connections), then paste its id here (the last part of its address).
        ${problem ? html`<br><span class="bad">⚠ ${problem}</span>` : ""}</p>
    </div>`;
  }
  if (chosen && !candidates.some((x) => x.id === chosen)) candidates.push({ id: chosen, display_name: `${chosen} (not among ${target}'s connections)` });
  return html`<div class="field">
    <label for="${id}">${c.display_name || c.logical_name} <span class="muted">(${connector})</span></label>
    <select ${attrs}>
      <option value="">Choose a connection…</option>
      ${candidates.map((x) => html`<option value="${x.id}" ${on(x.id === chosen, "selected")}>${x.display_name || x.id}</option>`)}
    </select>
    <p id="${id}-help" class="help">Connection reference <code>${c.logical_name}</code>: what flows and apps use to reach ${connector} in ${target}.
      ${needsChoice ? html`<strong>Required.</strong>` : ""}
      ${problem ? html`<br><span class="bad">⚠ ${problem}</span>` : ""}</p>
  </div>`;
}

function envField(e, current, target) {
  const id = `env-${e.schema_name}`;
  const savedEntry = current.vals.get(e.schema_name.toLowerCase());
  const raw0 = savedEntry ? getCI(savedEntry, "Value") : null;
  const saved = raw0 === null || raw0 === undefined ? "" : typeof raw0 === "object" ? JSON.stringify(raw0) : String(raw0);
  const sourceWords = {
    settings: "Set in this deployment's settings.",
    current: `${target} already has a value; leave empty to keep it.`,
    default: "The solution's default value applies; leave empty to keep it.",
  };
  const status = e.value_source ? sourceWords[e.value_source] || "" : `No value yet in ${target}: enter one.`;
  const problem = e.problem && e.value_source ? html`<br><span class="bad">⚠ ${e.problem}</span>` : "";
  const describe = `${id}-help${["json", "secret"].includes(e.type_name) ? ` ${id}-check` : ""}`;
  const common = html`id="${id}" name="${id}" data-env="${e.schema_name}" data-type="${e.type_name}" aria-describedby="${describe}"`;
  let input;
  let help;
  switch (e.type_name) {
    case "number":
      input = html`<input type="number" step="any" inputmode="decimal" ${common} value="${saved}">`;
      help = "A number, like 42 or 3.5.";
      break;
    case "boolean":
      input = html`<select ${common}>
        <option value="" ${on(!saved, "selected")}>${e.value_source ? "Keep as it is" : "Choose…"}</option>
        <option value="yes" ${on(/^(yes|true)$/i.test(saved), "selected")}>Yes (true)</option>
        <option value="no" ${on(/^(no|false)$/i.test(saved), "selected")}>No (false)</option></select>`;
      help = "Yes or no.";
      break;
    case "json":
      input = html`<textarea ${common} spellcheck="false" class="code">${saved}</textarea>`;
      help = "JSON, like {\"retries\": 3}; checked as you type.";
      break;
    case "secret":
      input = html`<input type="text" ${common} value="${saved}" autocomplete="off" spellcheck="false" class="code">`;
      help = html`A reference to the secret in Azure Key Vault, never the secret itself: <code>${KEY_VAULT_FORM}</code>. Checked as you type.`;
      break;
    case "data_source":
      input = html`<input type="text" ${common} value="${saved}" autocomplete="off">`;
      help = "The data source (for example a SharePoint site or list) in the target.";
      break;
    default:
      input = html`<input type="text" ${common} value="${saved}" autocomplete="off">`;
      help = "Text.";
  }
  return html`<div class="field">
    <label for="${id}">${e.display_name || e.schema_name} <span class="muted">(${typeLabel(e.type_name)})</span></label>
    ${input}
    ${["json", "secret"].includes(e.type_name) ? html`<p id="${id}-check" class="live-check" aria-live="polite"></p>` : ""}
    <p id="${id}-help" class="help"><code>${e.schema_name}</code>. ${help} ${status}${problem}</p>
  </div>`;
}

function settingsFormHtml(view) {
  const { run } = view;
  const v = run.validation;
  if (run.state !== "awaiting_settings" || !v || !session.has("maker")) return "";
  const target = run.deployment.target_environment;
  const current = currentSettings(run);
  const refs = v.connection_references || [];
  const vars = v.environment_variables || [];
  return html`<h2 id="settings-h">Settings for ${target}</h2>
    <p>Some things differ per environment. Connections say which account flows and apps use in ${target};
      environment variables hold values such as addresses or limits. Fill in what is marked; leave the rest as it is.</p>
    <form id="settings" class="card form" novalidate>
      ${refs.length ? html`<fieldset><legend>Connections</legend>${refs.map((c) => connField(c, current, target))}</fieldset>` : ""}
      ${vars.length ? html`<fieldset><legend>Environment variables</legend>${vars.map((e) => envField(e, current, target))}</fieldset>` : ""}
      <div class="row actions"><button type="submit" class="primary">Save settings and validate again</button></div>
    </form>`;
}

/** Live checks of JSON and Key Vault values, next to the input. */
function wireLiveChecks(form) {
  form.querySelectorAll("[data-type=json], [data-type=secret]").forEach((input) => {
    const out = document.getElementById(`${input.id}-check`);
    const check = () => {
      const value = input.value;
      if (!value.trim()) {
        out.textContent = "";
        out.className = "live-check";
        input.removeAttribute("aria-invalid");
        return;
      }
      const problem = valueProblem(input.dataset.type, value, input);
      const json = input.dataset.type === "json";
      out.textContent = problem
        ? (json ? `⚠ Not valid JSON yet: ${problem.replace(/^is not valid JSON \((.*)\)$/, "$1")}` : `⚠ Not a Key Vault secret reference yet: it ${problem}`)
        : (json ? "✔ Valid JSON" : "✔ Looks like a Key Vault secret reference");
      // The live check replaces an error a save showed for this input.
      const after = input.closest(".field")?.nextElementSibling;
      if (after?.classList.contains("field-error")) after.remove();
      out.className = `live-check ${problem ? "bad" : "ok"}`;
      if (problem) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    };
    input.addEventListener("input", check);
    check();
  });
}

function wireSettings(view, form) {
  wireLiveChecks(form);
  onSubmit(form, async () => {
    const { run } = view;
    const v = run.validation;
    const fields = [];
    const conns = [];
    const vals = [];
    for (const select of form.querySelectorAll("[data-conn]")) {
      const check = (v?.connection_references || []).find((c) => c.logical_name === select.dataset.conn);
      if (select.value.trim()) conns.push({ LogicalName: select.dataset.conn, ConnectionId: select.value.trim(), ConnectorId: select.dataset.connector });
      else if (check?.problem) {
        fields.push({ field: select.name, reason: check.candidates?.length ? "choose a connection" : `give the id of a ${connectorName(check.connector_id)} connection in ${run.deployment.target_environment}` });
      }
    }
    for (const input of form.querySelectorAll("[data-env]")) {
      const check = (v?.environment_variables || []).find((e) => e.schema_name === input.dataset.env);
      const value = input.value;
      if (value.trim() === "" && !input.validity?.badInput) {
        if (check?.problem) fields.push({ field: input.name, reason: check.value_source ? "enter a new value: the one it has cannot be used" : "needs a value" });
        continue;
      }
      const problem = valueProblem(input.dataset.type, value, input);
      if (problem) fields.push({ field: input.name, reason: problem });
      else vals.push({ SchemaName: input.dataset.env, Value: input.dataset.type === "secret" ? value.trim() : value });
    }
    if (fields.length) {
      // The error shown beside each input replaces its live check.
      fields.forEach((f) => { const out = document.getElementById(`${f.field}-check`); if (out) out.textContent = ""; });
      throw new ApiError(422, { error: "Some settings need a change.", fields });
    }
    // Replace the run's settings: what was there for names not on this form,
    // then what the form says, in pac's `create-settings` shape.
    const old = currentSettings(run);
    const onForm = (key) => new Set([...form.querySelectorAll(`[${key}]`)].map((el) => el.getAttribute(key).toLowerCase()));
    const formConns = onForm("data-conn");
    const formVals = onForm("data-env");
    const settings = {
      EnvironmentVariables: [...[...old.vals.entries()].filter(([k]) => !formVals.has(k)).map(([, e]) => e), ...vals],
      ConnectionReferences: [...[...old.conns.entries()].filter(([k]) => !formConns.has(k)).map(([, c]) => c), ...conns],
    };
    const updated = await api("PUT", `/api/v1/deployments/${run.id}/settings`, { settings });
    flash("Settings saved; checking again.", "ok");
    view.update({ run: updated });
    view.refresh();
    document.getElementById("run-title")?.focus();
  });
}

// ---------------------------------------------------------- decision form

function decisionHtml(view) {
  const { run } = view;
  if (run.state !== "awaiting_approval" || !session.has("approver")) return "";
  if (session.me && run.requested_by === session.me.subject) {
    return html`<h2 id="decision-h">Approval</h2><p class="muted">You requested this deployment, so another approver of this pipeline decides.</p>`;
  }
  const target = run.deployment.target_environment;
  return html`<h2 id="decision-h">Your decision</h2>
    <p>Approving lets the import into ${target} go ahead${run.gates.scheduled_at ? ` at ${when(run.gates.scheduled_at)}` : ""}.
      Rejecting ends this deployment; ${run.requested_by} sees your comment.</p>
    <form id="decision" class="card form" novalidate>
      <div class="field">
        <label for="comment">Comment <span class="muted">(required to reject)</span></label>
        <textarea id="comment" name="comment" aria-describedby="comment-help"></textarea>
        <p id="comment-help" class="help">Shown to the maker and kept in the audit log.</p>
      </div>
      <div class="row actions">
        <button type="submit" class="primary" value="approve">Approve</button>
        <button type="submit" class="danger" value="reject">Reject</button>
      </div>
    </form>`;
}

function wireDecision(view, form) {
  onSubmit(form, async (values, _form, submitter) => {
    const reject = submitter?.value === "reject";
    const comment = values.comment || "";
    if (reject && !comment) throw new ApiError(422, { error: "say why", fields: [{ field: "comment", reason: "say why you reject it, for the maker" }] });
    const updated = await api("POST", `/api/v1/deployments/${view.run.id}/${reject ? "reject" : "approve"}`, comment ? { comment } : {});
    flash(reject ? "Rejected." : "Approved.", "ok");
    view.update({ run: updated });
    view.refresh();
    document.getElementById("run-title")?.focus();
  });
}

// ---------------------------------------------------------- history table

function historyHtml(history) {
  if (!history.length) return "";
  const what = (e) => (e.kind === "transition"
    ? html`→ ${stateBadge(e.state)}`
    : html`${e.step || "run"} ${e.status || ""}`);
  return html`<details><summary>Full history (${history.length})</summary>
    <div class="table-wrap"><table class="stack">
      <thead><tr><th scope="col">When</th><th scope="col">What</th><th scope="col">Detail</th><th scope="col">By</th></tr></thead>
      <tbody>${history.map((e) => html`<tr>
        <td data-label="When">${at(e.at)}</td>
        <td data-label="What">${what(e)}</td>
        <td data-label="Detail" class="detail">${e.detail || ""}</td>
        <td data-label="By">${e.actor || e.service || ""}${e.instance ? html` <span class="muted">(${e.instance})</span>` : ""}</td>
      </tr>`)}</tbody></table></div></details>`;
}

// ---------------------------------------------------------- run page

/** Saves a run's artifact: fetched with the bearer token, then handed to
 *  the browser through a temporary object URL. */
async function download(link) {
  const res = await api("GET", link.getAttribute("href"), undefined, { raw: true });
  const blob = await res.blob();
  const disposition = res.headers.get("content-disposition") || "";
  const name = /filename="?([^";]+)"?/i.exec(disposition)?.[1] || `${link.dataset.download}.zip`;
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  flash(`Downloaded ${name} (${bytes(blob.size)}).`, "ok");
}

/** An error from an action, shown in the actions row. */
function actionError(err) {
  const box = document.getElementById("run-actions-error");
  if (!box) return;
  box.hidden = false;
  box.textContent = err.message || String(err);
  box.focus();
}

async function runPage({ id }) {
  const nav = currentNav();
  const ctl = new AbortController();
  onLeave(() => ctl.abort());
  const signal = ctl.signal;
  const base = `/api/v1/deployments/${enc(id)}`;
  const [run, history] = await Promise.all([api("GET", base), api("GET", `${base}/events`).catch(() => [])]);
  const pipeline = run.deployment.pipeline_id
    ? await api("GET", `/api/v1/pipelines/${run.deployment.pipeline_id}`).catch(() => null)
    : null;

  const view = {
    run, history, pipeline, newer: null, rendered: {},
    update(parts) { Object.assign(view, parts); render(); },
    refresh: () => refresh(),
  };

  /** Replaces a part of the page only when it changed, keeping the
   *  keyboard focus where it was if the focused element is redrawn. */
  function put(selector, content) {
    const s = String(content);
    if (view.rendered[selector] === s) return false;
    view.rendered[selector] = s;
    const active = document.activeElement;
    const el = document.querySelector(selector);
    const refocus = active && el?.contains(active) ? active.id || (active.dataset.action && `[data-action="${active.dataset.action}"]`) : null;
    patch(selector, s);
    if (refocus) {
      const again = refocus.startsWith("[") ? el.querySelector(refocus) : document.getElementById(refocus);
      again?.focus();
    }
    return true;
  }

  function render() {
    const r = view.run;
    if (r.state !== view.shownState) {
      view.shownState = r.state;
      if (r.state === "succeeded") findNewer();
    }
    const title = document.getElementById("run-title");
    if (title && title.textContent !== runTitle(r)) title.textContent = runTitle(r);
    put("#run-summary", summaryHtml(view));
    if (put("#run-settings", settingsFormHtml(view))) {
      const form = document.getElementById("settings");
      if (form) wireSettings(view, form);
    }
    put("#run-steps", html`<h2 id="steps-h">Steps</h2><ol id="steps" class="steps">${stepsHtml(r, view.history)}</ol>`);
    put("#validation", validationHtml(view));
    if (put("#run-decision", decisionHtml(view))) {
      const form = document.getElementById("decision");
      if (form) wireDecision(view, form);
    }
    put("#run-result", resultHtml(view));
    put("#run-actions", actionsHtml(view));
    put("#run-history", historyHtml(view.history));
    document.getElementById("run-settings").hidden = !view.rendered["#run-settings"];
    document.getElementById("run-decision").hidden = !view.rendered["#run-decision"];
  }

  let refreshing = null;
  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const [r, h] = await Promise.all([api("GET", base, undefined, { signal }), api("GET", `${base}/events`, undefined, { signal })]);
        view.run = r;
        view.history = h;
        render();
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  /** Whether a newer version succeeded in the same stage and target since
   *  (for Redeploy). */
  async function findNewer() {
    const r = view.run;
    if (r.state !== "succeeded" || r.gates.dry_run || !r.artifact || !r.deployment.stage_id) return;
    try {
      const runs = await listRuns({ pipeline: r.deployment.pipeline_id, stage: r.deployment.stage_id, solution: r.deployment.solution_name, state: "succeeded" });
      const versions = runs.filter((x) => !x.gates.dry_run && x.deployment.target_environment === r.deployment.target_environment)
        .map(runVersion).filter(Boolean).sort((a, b) => cmpVersion(b, a));
      if (versions.length && cmpVersion(versions[0], r.artifact.version) > 0) view.update({ newer: versions[0] });
    } catch { /* the Redeploy button is left out */ }
  }

  /** Submits the same deployment as this run, with its version (for a
   *  pipeline's first stage the stored artifact of that version is reused;
   *  later stages take it from the previous stage). */
  async function deployAgain(why) {
    const d = view.run.deployment;
    const body = {
      pipeline_id: d.pipeline_id, stage_id: d.stage_id, solution_name: d.solution_name,
      source_environment: d.source_environment, target_environment: d.target_environment,
      version: view.run.artifact.version, dry_run: false,
      notes: `${d.notes ? `${d.notes}\n` : ""}(${why} ${view.run.artifact.version}, run ${view.run.id})`,
    };
    if (d.settings) body.settings = d.settings;
    const created = await api("POST", "/api/v1/deployments", body);
    go(`/runs/${created.id}`);
  }

  mountAt(nav, html`<h1 id="run-title">${runTitle(run)}</h1>
    <div id="run-summary"></div>
    <div id="run-result" class="run-result"></div>
    <div id="run-actions" class="row run-actions"></div>
    <p id="run-actions-error" class="error" role="alert" tabindex="-1" hidden></p>
    <section id="run-settings" aria-labelledby="settings-h" hidden></section>
    <section id="run-steps" aria-labelledby="steps-h"></section>
    <section id="validation" aria-labelledby="validation-h"></section>
    <section id="run-decision" aria-labelledby="decision-h" hidden></section>
    <section id="run-history" aria-label="Full history"></section>`);
  render();

  // In-page jumps: the hash belongs to the router, so focus instead.
  document.getElementById("run-result").addEventListener("click", (ev) => {
    if (!ev.target.closest("[data-jump]")) return;
    const heading = document.getElementById("decision-h");
    heading?.setAttribute("tabindex", "-1");
    heading?.focus();
    heading?.scrollIntoView({ block: "start" });
  });

  document.getElementById("run-actions").addEventListener("click", async (ev) => {
    const link = ev.target.closest("a[data-download]");
    const button = ev.target.closest("button[data-action]");
    if (!link && !button) return;
    ev.preventDefault();
    const errBox = document.getElementById("run-actions-error");
    errBox.hidden = true;
    const target = link || button;
    if (target.getAttribute("aria-busy") === "true") return;
    target.setAttribute("aria-busy", "true");
    if (button) button.disabled = true;
    try {
      if (link) await download(link);
      else if (button.dataset.action === "cancel") {
        view.update({ run: await api("POST", `${base}/cancel`) });
        flash("Deployment canceled.", "ok");
        refresh().catch(() => {});
      } else if (button.dataset.action === "retry") {
        const created = await api("POST", `${base}/retry`);
        flash("Running it again.", "ok");
        if (created?.id) go(`/runs/${created.id}`);
        else refresh();
      } else if (button.dataset.action === "redeploy") {
        await deployAgain("redeploys version");
      } else if (button.dataset.action === "deploy-real") {
        await deployAgain("after a dry run of version");
      }
    } catch (err) {
      if (err.name !== "AbortError") actionError(err);
    } finally {
      target.removeAttribute("aria-busy");
      if (button && button.isConnected) button.disabled = false;
    }
  });

  // Live: the event stream when the gateway has one, else polling.
  const live = () => !TERMINAL.has(view.run.state) && !signal.aborted;
  let timer = null;
  onLeave(() => clearTimeout(timer));
  let soon = null;
  const refreshSoon = () => {
    clearTimeout(soon);
    soon = setTimeout(() => refresh().catch(() => {}), 250);
  };
  onLeave(() => clearTimeout(soon));
  const poll = () => {
    timer = setTimeout(async () => {
      try { await refresh(); } catch (err) { if (err.name === "AbortError") return; }
      if (live()) poll();
    }, POLL_MS);
  };
  // The stream (stream.rs): `run` with the RunView on every change,
  // `history` with each history line and its `index`, `end` when over.
  // Lines come in bursts; they are drawn once per burst.
  let drawQueued = false;
  const drawSoon = () => {
    if (drawQueued) return;
    drawQueued = true;
    queueMicrotask(() => { drawQueued = false; render(); });
  };
  const onEvent = (name, data) => {
    if (!data || typeof data !== "object") return;
    if (name === "run" && data.id === view.run.id && data.state && data.deployment) {
      view.run = data;
      drawSoon();
    } else if (name === "history" && Number.isInteger(data.index)) {
      const lines = view.history.slice();
      lines[data.index] = data;
      view.history = lines.filter(Boolean);
      drawSoon();
    } else if (name === "end") {
      refreshSoon();
    }
  };
  // Ticks the import's elapsed time while importing.
  const tick = setInterval(() => { if (view.run.state === "importing") put("#run-result", resultHtml(view)); }, 5000);
  onLeave(() => clearInterval(tick));
  if (live()) {
    stream(`${base}/stream`, onEvent, signal)
      .then(async () => {
        if (signal.aborted) return;
        await refresh().catch(() => {});
        if (live()) poll();
      })
      .catch((err) => {
        if (err.name === "AbortError" || signal.aborted) return;
        poll(); // 404: this gateway has no stream; or it dropped
      });
  }
}

// ------------------------------------------------------------------ runs

function runRow(r, pipelines) {
  const d = r.deployment;
  const v = runVersion(r);
  return html`<tr>
    <td data-label="Deployment"><a href="#/runs/${r.id}">${d.solution_name}${v ? ` ${v}` : ""}</a>${r.gates?.dry_run ? html` <span class="badge">dry run</span>` : ""}</td>
    <td data-label="State">${stateBadge(r.state)}</td>
    <td data-label="Pipeline › stage">${whereLabel(r, pipelines)}</td>
    <td data-label="From → to">${d.source_environment} → ${d.target_environment}</td>
    <td data-label="Requested by">${r.requested_by}</td>
    <td data-label="Requested">${at(r.created_at)}</td>
  </tr>`;
}

function runsTable(runs, pipelines) {
  return html`<table id="runs" class="stack">
    <caption class="visually-hidden">Deployments, newest first</caption>
    <thead><tr><th scope="col">Deployment</th><th scope="col">State</th><th scope="col">Pipeline › stage</th>
      <th scope="col">From → to</th><th scope="col">Requested by</th><th scope="col">Requested</th></tr></thead>
    <tbody>${runs.map((r) => runRow(r, pipelines))}</tbody></table>`;
}

async function runsPage(_params, q) {
  const nav = currentNav();
  const filter = { pipeline: q.pipeline || "", stage: q.stage || "", solution: q.solution || "", state: q.state || "" };
  const [pipelines, runs] = await Promise.all([pipelinesOrNone(), listRuns(filter)]);
  const p = pipelines.find((x) => x.id === filter.pipeline);
  const s = stageOf(p, filter.stage);
  const about = [
    filter.solution && `solution ${filter.solution}`,
    filter.pipeline && `pipeline ${p ? p.name : filter.pipeline}`,
    s && `stage ${s.name}`,
    filter.state && `state “${STATE_WORDS[filter.state] || filter.state}”`,
  ].filter(Boolean);
  const solutions = [...new Set(runs.map((r) => r.deployment.solution_name))].sort();
  mountAt(nav, html`<h1>Runs</h1>
    <p class="muted">${about.length ? `History of ${about.join(", ")}, newest first.` : "Every deployment you may see, newest first."}
      ${about.length ? html` <a href="#/runs">Show all</a>` : ""}</p>
    <form id="runs-filter" class="card" role="search" aria-label="Filter runs">
      <div class="field"><label for="f-pipeline">Pipeline</label>
        <select id="f-pipeline" name="pipeline"><option value="">All pipelines</option>
          ${pipelines.map((x) => html`<option value="${x.id}" ${on(x.id === filter.pipeline, "selected")}>${x.name}</option>`)}</select></div>
      <div class="field"><label for="f-solution">Solution</label>
        <input id="f-solution" name="solution" type="search" list="f-solutions" value="${filter.solution}" autocomplete="off" spellcheck="false">
        <datalist id="f-solutions">${solutions.map((n) => html`<option value="${n}"></option>`)}</datalist></div>
      <div class="field"><label for="f-state">State</label>
        <select id="f-state" name="state"><option value="">Any state</option>
          ${STATES.map((x) => html`<option value="${x}" ${on(x === filter.state, "selected")}>${STATE_WORDS[x]}</option>`)}</select></div>
      ${filter.stage ? html`<input type="hidden" name="stage" value="${filter.stage}">` : ""}
      <div class="field"><button type="submit">Show</button></div>
    </form>
    <div class="table-wrap" id="runs-wrap">${runs.length ? runsTable(runs, pipelines) : html`<p id="runs-empty">No deployment matches${about.length ? " these filters" : " yet"}.${session.has("maker") ? html` <a href="#/">Deploy from a pipeline</a>.` : ""}</p>`}</div>`);
  const form = document.getElementById("runs-filter");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    if (values.pipeline !== filter.pipeline) delete values.stage; // a stage belongs to its pipeline
    const next = `/runs${qs(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, String(v).trim()])))}`;
    if (location.hash === `#${next}`) runsPage(_params, q).catch(() => {}); // same filters: show them afresh
    else go(next);
  });
  // Keeps going runs up to date.
  let shown = runs;
  let timer = null;
  const again = () => {
    if (!shown.some((r) => !TERMINAL.has(r.state))) return;
    timer = setTimeout(async () => {
      try {
        shown = await listRuns(filter);
        patch("#runs-wrap", shown.length ? runsTable(shown, pipelines) : "");
      } catch { /* keeps the rows it has */ }
      again();
    }, LIST_POLL_MS);
  };
  onLeave(() => clearTimeout(timer));
  again();
}

// ------------------------------------------------------------------ approvals

function diffSummary(v) {
  if (!v) return html`<span class="muted">not checked yet</span>`;
  const d = v.diff || {};
  const parts = [];
  const n = (list) => (list || []).length;
  if (!v.installed_version) parts.push("first install");
  if (n(d.components_added)) parts.push(html`<span class="diff-added">+${n(d.components_added)} added</span>`);
  if (n(d.components_changed)) parts.push(html`<span class="diff-changed">~${n(d.components_changed)} changed</span>`);
  if (n(d.components_removed)) parts.push(html`<span class="diff-removed">−${n(d.components_removed)} removed</span>`);
  if (d.customizations_changed) parts.push("definitions changed");
  if (!parts.length) parts.push("no component changes");
  const groups = groupKeys([...(d.components_added || []), ...(d.components_changed || []), ...(d.components_removed || [])])
    .map(([word, names]) => `${word} (${names.length})`);
  return html`${parts.map((x, i) => html`${i ? ", " : ""}${x}`)}${groups.length ? html`<br><span class="help">${groups.join(", ")}</span>` : ""}
    ${v.warnings?.length ? html`<br><span class="warn">${plural(v.warnings.length, "warning")}</span>` : ""}`;
}

function settingsSummary(run) {
  const v = run.validation;
  const current = currentSettings(run);
  const items = [];
  for (const c of v?.connection_references || []) {
    const chosen = c.candidates?.find((x) => x.id === c.connection_id);
    items.push(html`<li>${c.display_name || c.logical_name}: ${chosen?.display_name || c.connection_id || html`<span class="bad">none</span>`}</li>`);
  }
  for (const e of v?.environment_variables || []) {
    const saved = current.vals.get(e.schema_name.toLowerCase());
    const value = saved ? getCI(saved, "Value") : null;
    const shown = value === null || value === undefined ? ({ current: "kept as in the target", default: "default value" }[e.value_source] || "no value")
      : e.type_name === "secret" ? "a Key Vault reference" : String(value);
    items.push(html`<li>${e.display_name || e.schema_name}: ${shown.length > 60 ? `${shown.slice(0, 60)}…` : shown}</li>`);
  }
  return items.length ? html`<ul class="compact">${items}</ul>` : html`<span class="muted">none needed</span>`;
}

async function approvalsPage() {
  const nav = currentNav();
  const [runs, pipelines] = await Promise.all([api("GET", "/api/v1/approvals"), pipelinesOrNone()]);
  runs.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at))); // oldest waits longest
  const me = session.me?.subject;
  mountAt(nav, html`<h1>Approvals</h1>
    <p class="muted">Deployments waiting for an approver of your pipelines, oldest first. Open one to see everything it changes and to approve or reject it.</p>
    ${runs.length ? html`<div class="table-wrap"><table id="approvals" class="stack">
      <thead><tr><th scope="col">Deployment</th><th scope="col">Where</th><th scope="col">Requested</th>
        <th scope="col">Notes</th><th scope="col">What changes</th><th scope="col">Settings</th></tr></thead>
      <tbody>${runs.map((r) => html`<tr>
        <td data-label="Deployment"><a href="#/runs/${r.id}">${r.deployment.solution_name} ${runVersion(r) || ""}</a>
          ${r.requested_by === me ? html`<br><span class="help">You requested it; another approver decides.</span>` : ""}</td>
        <td data-label="Where">${whereLabel(r, pipelines)}<br><span class="help">${r.deployment.source_environment} → ${r.deployment.target_environment}${r.gates.scheduled_at ? html`, import at ${at(r.gates.scheduled_at)}` : ""}</span></td>
        <td data-label="Requested">${r.requested_by}<br><span class="help">${at(r.created_at)}</span></td>
        <td data-label="Notes" class="notes">${r.deployment.notes || html`<span class="muted">none</span>`}</td>
        <td data-label="What changes">${diffSummary(r.validation)}</td>
        <td data-label="Settings">${settingsSummary(r)}</td>
      </tr>`)}</tbody></table></div>`
    : html`<p id="approvals-empty">Nothing is waiting for your approval.</p>`}`);
}

// ------------------------------------------------------------------ routes

export function register() {
  route("/", homePage, ["maker", "approver"]);
  route("/deploy/:pipeline", deployPage, ["maker"]);
  route("/runs", runsPage, ["maker", "approver"]);
  route("/runs/:id", runPage, ["maker", "approver"]);
  route("/approvals", approvalsPage, ["approver"]);
}
