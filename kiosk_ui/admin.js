// Admin page. Every value from the server is shown with textContent (visitor questions and
// model replies are untrusted); state changes send the session's CSRF token.
const $ = (id) => document.getElementById(id);
let csrf = null;
let loadedConfig = null;

// -- helpers -------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

async function api(path, options = {}) {
  const opts = { ...options, headers: { ...(options.headers || {}) }, credentials: "same-origin" };
  if (opts.body !== undefined) {
    opts.method = opts.method || "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  }
  if (opts.method && opts.method !== "GET" && csrf) opts.headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, opts);
  let data = {};
  try { data = await r.json(); } catch { /* empty */ }
  if (r.status === 401 && data.error === "login_required") { show("login"); }
  return { ok: r.ok, status: r.status, data };
}

function flash(text) {
  const f = $("flash");
  f.textContent = text;
  f.hidden = !text;
}

function showError(id, text) {
  const el = $(id);
  el.textContent = text || "";
  el.hidden = !text;
}

function show(view) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== `view-${view}`;
  const inApp = !["setup", "login"].includes(view);
  $("tabs").hidden = !inApp;
  $("logout").hidden = !inApp;
  for (const b of document.querySelectorAll("#tabs button")) {
    if (b.dataset.tab === view) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
}

const fmtTime = (iso) => new Date(iso).toLocaleString();
const fmtBytes = (n) => (n == null ? "?" : n > 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(0)} MB`);
function fmtDuration(s) {
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${hh} h` : hh ? `${hh} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
}

// -- latency waterfall (inline SVG from the stored per-stage timings) ----------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}
function stageColor(name) {
  if (/vad|asr|listen|speech|transcript/.test(name)) return "#2f855a";
  if (/llm|token|prompt|ground|first_text/.test(name)) return "#b7791f";
  if (/tts|audio|play|speak/.test(name)) return "#2b6cb0";
  return "#718096";
}
/**
 * The stages of one turn, as [name, ms] sorted by time. Stored timings mix marks (ms since the
 * turn began at which a stage finished: grounding, llm_first_token, tts_first_audio,
 * playback_end, total, ...) with durations (`*_ms`) and ratios (`*_rtf`); only marks are drawn.
 * A voice turn (vad_end_ms and asr_final_ms present) starts earlier, when the visitor stopped
 * speaking: the origin moves there, with vad_end (end of speech detected) and asr_final (final
 * transcript) before the turn's own marks, which shift by vad_end_ms + asr_final_ms.
 */
export function waterfallStages(timings) {
  const t = timings || {};
  const marks = Object.entries(t).filter(([k, v]) => Number.isFinite(v) && !/_(ms|rtf)$/.test(k));
  const vad = t.vad_end_ms, asr = t.asr_final_ms;
  if (Number.isFinite(vad) && Number.isFinite(asr)) {
    const shift = vad + asr;
    return [["vad_end", vad], ["asr_final", shift], ...marks.map(([k, v]) => [k, v + shift])]
      .sort((a, b) => a[1] - b[1]);
  }
  return marks.sort((a, b) => a[1] - b[1]);
}

/** Inline SVG: one row per stage, each bar from the previous stage's end to its own. */
export function waterfall(timings) {
  const marks = waterfallStages(timings);
  const total = Math.max(1, ...marks.map(([, v]) => v));
  const W = 420, labelW = 120, row = 16, H = marks.length * row + 4;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "waterfall" });
  const title = svg("title", {});
  title.textContent = marks.map(([k, v]) => `${k} ${Math.round(v)} ms`).join(", ");
  root.append(title);
  let prev = 0;
  marks.forEach(([name, at], i) => {
    const y = i * row + 2;
    const x0 = labelW + (prev / total) * (W - labelW - 60);
    const x1 = labelW + (at / total) * (W - labelW - 60);
    const label = svg("text", { x: 0, y: y + 11, class: "wf-label" });
    label.textContent = name;
    const bar = svg("rect", {
      x: x0, y, width: Math.max(2, x1 - x0), height: row - 4, rx: 2, fill: stageColor(name),
      "data-stage": name, "data-at": at,
    });
    const ms = svg("text", { x: Math.max(x1, x0 + 2) + 4, y: y + 11, class: "wf-ms" });
    ms.textContent = `${Math.round(at)} ms`;
    root.append(label, bar, ms);
    prev = Math.max(prev, at);
  });
  return root;
}

function turnsTable(turns, { actions = false } = {}) {
  if (!turns.length) return h("p", { class: "muted", text: "No conversations logged." });
  const body = h("tbody");
  for (const t of turns) {
    const row = h("tr", {},
      h("td", { class: "nowrap", text: fmtTime(t.started_at) }),
      h("td", {}, h("div", { class: "q", text: t.user_text || (t.had_image ? "(photo)" : "") }),
        h("div", { class: "a", text: t.reply_text })),
      h("td", {}, h("span", { class: `pill ${t.outcome}`, text: t.outcome }),
        t.kind ? h("span", { class: `pill kind-${t.kind}`, text: t.kind }) : null,
        h("div", { class: "muted small", text: `${t.source} · ${t.endpoint || "-"}` })),
      h("td", {}, waterfall(t.timings_ms)));
    if (actions) {
      const del = h("button", { type: "button", class: "quiet small", text: "Delete session" });
      del.addEventListener("click", async () => {
        if (!confirm("Delete every turn of this visitor's session?")) return;
        const r = await api("/admin/api/turns/delete", { body: { session: t.session } });
        flash(r.ok ? `Deleted ${r.data.deleted} turns.` : r.data.message);
        loadConversations();
      });
      row.append(h("td", {}, del));
    }
    body.append(row);
  }
  const head = h("tr", {}, h("th", { text: "When" }), h("th", { text: "Question and reply" }), h("th", { text: "Outcome" }), h("th", { text: "Latency" }));
  if (actions) head.append(h("th", { text: "" }));
  return h("table", { class: "turns" }, h("thead", {}, head), body);
}

// -- session: setup, login, logout ---------------------------------------------------------------

async function boot() {
  const r = await api("/admin/api/session");
  if (r.data.setup_needed) {
    $("setup-code-row").hidden = r.data.local;
    $("setup-code").required = !r.data.local;
    show("setup");
  } else if (r.data.logged_in) {
    csrf = r.data.csrf;
    openTab("status");
  } else {
    show("login");
  }
}

$("setup-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const pw = $("setup-password").value;
  if (pw !== $("setup-password2").value) { showError("setup-error", "The two passwords differ."); return; }
  const body = { password: pw };
  if ($("setup-code").value) body.setup_code = $("setup-code").value;
  const r = await api("/admin/api/setup", { body });
  if (!r.ok) { showError("setup-error", r.data.message); return; }
  csrf = r.data.csrf;
  flash("Admin password created.");
  openTab("status");
});

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await api("/admin/api/login", { body: { password: $("login-password").value } });
  $("login-password").value = "";
  if (!r.ok) { showError("login-error", r.data.message); return; }
  showError("login-error", "");
  csrf = r.data.csrf;
  openTab("status");
});

$("logout").addEventListener("click", async () => {
  await api("/admin/api/logout", { body: {} });
  csrf = null;
  flash("Logged out.");
  show("login");
});

// -- tabs ----------------------------------------------------------------------------------------

const loaders = { status: loadStatus, settings: loadSettings, knowledge: loadFaq, conversations: loadConversations, audit: loadAudit };
function openTab(name) {
  show(name);
  loaders[name]();
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => { flash(""); openTab(b.dataset.tab); });

// -- status --------------------------------------------------------------------------------------

function card(title, ...content) {
  return h("div", { class: "card" }, h("h2", { text: title }), ...content);
}
function kv(rows) {
  return h("dl", { class: "kv" }, ...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

async function loadStatus() {
  const r = await api("/admin/api/status");
  if (!r.ok) return;
  const s = r.data;
  const ready = s.readiness.ready;
  const cards = [
    card("Service", kv([
      ["State", h("span", { class: `pill ${ready ? "ok" : "error"}`, text: ready ? "Ready" : "Not ready" })],
      ["Uptime", fmtDuration(s.uptime_s)],
      ["Kiosk connections", String(s.ws_open)],
      ["Turns logged", String(s.turns_logged)],
      ["FAQ entries", String(s.knowledge.entries)],
      ["Event-loop lag", `${(s.loop_lag_s * 1000).toFixed(1)} ms`],
    ])),
    card("LLM endpoints", h("table", { class: "plain" }, h("tbody", {}, ...s.readiness.endpoints.map((e) => h("tr", {},
      h("td", { text: e.name }),
      h("td", {}, h("span", { class: `pill ${e.ok ? "ok" : "error"}`, text: e.ok ? "up" : "down" })),
      h("td", { text: e.latency_s != null ? `${Math.round(e.latency_s * 1000)} ms` : "" }),
      h("td", { class: "muted small", text: (s.api_key_set[e.name] === false ? "API key variable not set. " : "") + (e.last_error || "") })))))),
    card("Machine", kv([
      ["CPUs", String(s.machine.cpus)],
      ["Load (1/5/15 min)", s.machine.load.join(" / ")],
      ["Memory available", `${fmtBytes(s.machine.mem_available)} of ${fmtBytes(s.machine.mem_total)}`],
      ["Service peak memory", fmtBytes(s.machine.process_max_rss)],
      ["ONNX providers", `${s.providers.available.join(", ") || "none"} (config: ${s.providers.configured})`],
      ["Audio devices", s.audio.error ? `unavailable: ${s.audio.error}` : `${s.audio.devices.length} (enabled: ${s.audio.enabled})`],
    ])),
    card("Models", h("table", { class: "plain" }, h("tbody", {}, ...s.models.map((m) => h("tr", {},
      h("td", { text: m.id }),
      h("td", { class: "small", text: `${m.package || ""} ${m.version || ""}` }),
      h("td", { class: "mono small", title: m.sha256 || "", text: (m.sha256 || "").slice(0, 12) }),
      h("td", {}, h("span", { class: `pill ${m.present ? "ok" : "error"}`, text: m.present ? "present" : (m.error || "missing") }))))))),
  ];
  const lv = s.local_voice;
  if (lv) {
    const fe = lv.front_end;
    const ms = (v) => (v == null ? "n/a" : `${v} ms`);
    cards.push(card("Microphone and speaker", kv([
      ["Microphone", lv.microphone || "none"],
      ["Speaker", lv.speaker || "none"],
      ["Latency in / out", `${ms(lv.input_latency_ms)} / ${ms(lv.output_latency_ms)}`],
      ["Listening", `${lv.listen.join(" + ")}${lv.wake_word ? ` (\u201c${lv.wake_word}\u201d)` : ""}`],
      ["Wake words heard / false wakes / voice turns", `${lv.wakes_heard} / ${lv.false_wakes} / ${lv.turns}`],
      ["Talk not addressed to the box", String(lv.utterances_ignored)],
      ["Echo cancellation", fe ? `${fe.echo_cancellation ? "on" : "off"}, noise suppression ${fe.noise_suppression ? "on" : "off"}` : "off (echo gate only)"],
      ["Echo paths (gate)", lv.echo_paths_ms && lv.echo_paths_ms.length ? lv.echo_paths_ms.map((d) => `${d} ms`).join(", ") : "n/a"],
      ["Echo reduction (ERLE)", fe && fe.erle_db != null ? `${fe.erle_db} dB` : "n/a"],
      ["Front end CPU / delay", fe ? `${fe.cpu_us_per_10ms} \u00b5s per 10 ms / ${ms(fe.delay_ms)}` : "n/a"],
      ["Dropped blocks / underruns", `${lv.dropped_blocks} / ${lv.underruns}`],
    ])));
  }
  if (s.admin_tls) {
    cards.push(card("Admin over the network", kv([
      ["Address", s.admin_tls.url || "?"],
      ["Certificate", s.admin_tls.self_signed ? "self-signed (made by the appliance)" : "configured"],
      ["SHA-256 fingerprint", h("span", { class: "mono small", id: "tls-fingerprint", text: s.admin_tls.fingerprint })],
    ])));
  }
  if (s.knowledge.problem) {
    cards.unshift(h("div", { class: "card warn wide" }, h("strong", { text: "FAQ unavailable: " }), `${s.knowledge.problem}. Save a good FAQ on the Knowledge tab to fix it.`));
  }
  if (s.restart_pending.length) {
    cards.unshift(h("div", { class: "card warn wide" }, h("strong", { text: "Restart needed: " }), `saved changes to ${s.restart_pending.join(", ")} take effect after a restart (systemctl restart appliance).`));
  }
  $("status-cards").replaceChildren(...cards);
  $("status-turns").replaceChildren(turnsTable(s.recent_turns));
}

// -- settings ------------------------------------------------------------------------------------

const FIELDS = [
  { key: "persona.system_prompt", label: "Persona (system prompt)", type: "textarea" },
  { key: "dialog.idle_reset_s", label: "Idle reset (seconds without activity before the kiosk clears)", type: "number", step: "1" },
  { key: "voice.length_scale", label: "Voice speed (1 = normal, above 1 slower)", type: "number", step: "0.05" },
  { key: "budgets.first_token_s", label: "Budget: first words from the model (s)", type: "number", step: "0.1" },
  { key: "budgets.stall_s", label: "Budget: longest pause inside a reply (s)", type: "number", step: "0.1" },
  { key: "budgets.turn_s", label: "Budget: whole reply (s)", type: "number", step: "0.5" },
  { key: "llm.max_tokens", label: "Longest reply (tokens)", type: "number", step: "1" },
  { key: "llm.temperature", label: "Model temperature", type: "number", step: "0.05" },
  { key: "llm.fallback_reply", label: "Fallback reply (when no model answers in time)", type: "text" },
  { key: "filter.blocked_terms", label: "Blocked terms (one per line)", type: "lines" },
  { key: "filter.refusal", label: "Reply to a blocked question", type: "text" },
  { key: "chat.greeting", label: "Reply to a greeting (empty = built-in; {topics} names three FAQ topics)", type: "text" },
  { key: "chat.thanks", label: "Reply to thanks", type: "text" },
  { key: "chat.goodbye", label: "Reply to goodbye", type: "text" },
  { key: "chat.how_are_you", label: "Reply to \u201chow are you\u201d", type: "text" },
  { key: "chat.identity", label: "Reply to \u201cwho are you\u201d ({staff}: who declines point to)", type: "text" },
  { key: "chat.joke", label: "Reply to \u201ctell me a joke\u201d", type: "text" },
  { key: "store.retention_days", label: "Keep conversations for (days)", type: "number", step: "1" },
  { key: "llm.endpoints", label: "LLM endpoints (OpenAI-compatible, tried in order)", type: "endpoints" },
];
const get = (obj, key) => key.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);

function restartBadge(key, prefixes) {
  return prefixes.some((p) => key === p.replace(/\.$/, "") || key.startsWith(p)) ? h("span", { class: "badge", text: "needs restart" }) : null;
}

function endpointRow(ep = { name: "", url: "", model: "default", api_key_env: "", vision: false }) {
  const row = h("fieldset", { class: "endpoint" },
    h("label", {}, "Name", h("input", { "data-ep": "name", value: ep.name })),
    h("label", {}, "Base URL (…/v1)", h("input", { "data-ep": "url", value: ep.url, class: "wide" })),
    h("label", {}, "Model", h("input", { "data-ep": "model", value: ep.model })),
    h("label", {}, "API key variable", h("input", { "data-ep": "api_key_env", value: ep.api_key_env, placeholder: "e.g. APPLIANCE_OPENAI_KEY" })),
    h("label", { class: "check" }, h("input", { type: "checkbox", "data-ep": "vision", checked: ep.vision }), "Understands photos"));
  const rm = h("button", { type: "button", class: "quiet small", text: "Remove" });
  rm.addEventListener("click", () => row.remove());
  row.append(rm);
  return row;
}

function fieldInput(f, value) {
  const id = `f-${f.key.replace(/\W/g, "-")}`;
  if (f.type === "textarea") return h("textarea", { id, rows: 4, "data-key": f.key }, value ?? "");
  if (f.type === "lines") return h("textarea", { id, rows: 3, "data-key": f.key }, (value || []).join("\n"));
  if (f.type === "endpoints") {
    const box = h("div", { id, "data-key": f.key, class: "endpoints" }, ...(value || []).map((ep) => endpointRow(ep)));
    const add = h("button", { type: "button", class: "quiet small", text: "Add endpoint" });
    add.addEventListener("click", () => box.insertBefore(endpointRow(), add));
    box.append(add);
    return box;
  }
  const input = h("input", { id, type: f.type, "data-key": f.key, step: f.step });
  input.value = value ?? "";
  return input;
}

function readField(f) {
  const el = document.querySelector(`[data-key="${f.key}"]`);
  if (f.type === "lines") return el.value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (f.type === "endpoints") {
    return [...el.querySelectorAll("fieldset")].map((fs) => {
      const ep = {};
      for (const i of fs.querySelectorAll("[data-ep]")) ep[i.dataset.ep] = i.type === "checkbox" ? i.checked : i.value.trim();
      return ep;
    });
  }
  if (f.type === "number") return el.value.trim() === "" || Number.isNaN(Number(el.value)) ? el.value : Number(el.value);
  return el.value;
}

async function loadSettings() {
  const r = await api("/admin/api/config");
  if (!r.ok) return;
  loadedConfig = r.data.config;
  $("settings-path").textContent = r.data.path ? `Saved to ${r.data.path}` : "Running on built-in defaults: start the service with --config FILE to save settings.";
  const rows = FIELDS.map((f) => {
    const input = fieldInput(f, get(loadedConfig, f.key));
    return h("div", { class: "field", "data-field": f.key },
      h("label", { for: input.id }, f.label, " ", restartBadge(f.key, r.data.restart_prefixes)), input);
  });
  $("settings-fields").replaceChildren(...rows);
  showError("settings-error", "");
}

$("settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const changes = {};
  for (const f of FIELDS) {
    const v = readField(f);
    if (JSON.stringify(v) !== JSON.stringify(get(loadedConfig, f.key))) changes[f.key] = v;
  }
  for (const el of document.querySelectorAll(".field")) el.classList.remove("invalid");
  if (!Object.keys(changes).length) { flash("Nothing changed."); return; }
  const body = { changes };
  const password = $("settings-password").value;
  if (password) body.password = password;
  const r = await api("/admin/api/config", { body });
  if (r.status === 401 && r.data.error === "reauth_required") {
    // Sending an API key to a new address: a deliberate act, confirmed with the password.
    $("settings-reauth").hidden = false;
    showError("settings-error", r.data.message);
    $("settings-password").focus();
    return;
  }
  $("settings-password").value = "";
  $("settings-reauth").hidden = true;
  if (!r.ok) {
    showError("settings-error", r.data.problems ? `Not saved — ${r.data.problems.join("; ")}` : r.data.message);
    for (const key of r.data.fields || []) {
      const el = [...document.querySelectorAll(".field")].find((d) => key.startsWith(d.dataset.field));
      if (el) el.classList.add("invalid");
    }
    return;
  }
  showError("settings-error", "");
  const parts = [];
  if (r.data.applied.length) parts.push(`applied now: ${r.data.applied.join(", ")}`);
  if (r.data.restart.length) parts.push(`active after a restart: ${r.data.restart.join(", ")}`);
  flash(`Settings saved — ${parts.join("; ")}.`);
  loadSettings();
});

// -- knowledge -----------------------------------------------------------------------------------

async function loadFaq() {
  const r = await api("/admin/api/faq");
  if (!r.ok) return;
  $("faq-text").value = r.data.text;
  $("faq-count").textContent = `${r.data.entries.length} questions indexed${r.data.warnings.length ? `; ${r.data.warnings.length} warnings` : ""}.`;
  showError("faq-error", r.data.problem ? `The FAQ could not be loaded (${r.data.problem}); the kiosk answers without it until you save one here.` : "");
}

$("faq-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await api("/admin/api/faq", { body: { text: $("faq-text").value } });
  if (!r.ok) { showError("faq-error", r.data.message); return; }
  showError("faq-error", r.data.warnings.length ? `Saved with warnings: ${r.data.warnings.join("; ")}` : "");
  $("faq-count").textContent = `${r.data.entries.length} questions indexed.`;
  flash(`FAQ saved and re-indexed: ${r.data.entries.length} questions.`);
});

// -- conversations -------------------------------------------------------------------------------

function convQuery() {
  const p = new URLSearchParams();
  if ($("conv-q").value) p.set("q", $("conv-q").value);
  if ($("conv-days").value) p.set("days", $("conv-days").value);
  return p;
}

async function loadConversations() {
  const p = convQuery();
  for (const fmt of ["csv", "json"]) {
    const q = new URLSearchParams(p);
    q.set("format", fmt);
    $(`export-${fmt}`).href = `/admin/api/export?${q}`;
  }
  const r = await api(`/admin/api/turns?${p}`);
  if (!r.ok) return;
  $("conv-info").textContent = `${r.data.turns.length} turn${r.data.turns.length === 1 ? "" : "s"} shown. Conversations are kept for ${r.data.retention_days} days (change it under Settings).`;
  $("conv-list").replaceChildren(turnsTable(r.data.turns, { actions: true }));
}

$("conv-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadConversations(); });
$("delete-all").addEventListener("click", async () => {
  if (!confirm("Delete every logged conversation? This cannot be undone.")) return;
  const r = await api("/admin/api/turns/delete", { body: { all: true } });
  flash(r.ok ? `Deleted ${r.data.deleted} turns.` : r.data.message);
  loadConversations();
});
$("purge").addEventListener("click", async () => {
  const r = await api("/admin/api/turns/purge", { body: {} });
  flash(r.ok ? `Retention applied: ${r.data.deleted} old turns deleted.` : r.data.message);
  loadConversations();
});

// -- audit ---------------------------------------------------------------------------------------

async function loadAudit() {
  const r = await api("/admin/api/audit");
  if (!r.ok) return;
  const rows = r.data.entries.map((e) => h("tr", {},
    h("td", { class: "nowrap", text: new Date(e.at * 1000).toLocaleString() }),
    h("td", { text: e.actor }), h("td", { text: e.remote }), h("td", { text: e.action }), h("td", { class: "small", text: e.detail })));
  $("audit-list").replaceChildren(h("table", { class: "plain audit" },
    h("thead", {}, h("tr", {}, ...["When", "Who", "From", "Action", "Detail"].map((t) => h("th", { text: t })))),
    h("tbody", {}, ...rows)));
}

boot();
