// The alert board: asks the API for one filtered, sorted page of alerts at a time, merges
// the live stream (SSE) into the rows shown, and lets operators act on a row in place.
"use strict";

const KINDS = ["bypass", "reversal", "imbalance", "voltage_loss", "phase_shift",
  "consumption_drop", "tamper", "comms_loss", "energy_balance", "ct_ratio", "wiring_misfit",
  "overload", "over_demand", "tip"];
const PAGE = 100;
const COLUMNS = 11;
const SEVERITY_RANK = {warning: 1, minor: 2, major: 3, critical: 4};
const form = document.querySelector("#filters");
const body = document.querySelector("#alerts tbody");
const more = document.querySelector("#more");
const assignees = document.querySelector("#assignees");

// The query the rows were loaded for, the rows in their order and the next page's cursor.
// While a load is in flight, stream events wait in `queued`: the page may predate them.
const board = {
  query: null, rows: [], byId: new Map(), cursor: null,
  generation: 0, loading: true, queued: [], failed: "",
};
// Each alert's <tr> lives across redraws, so a name half typed into a row survives updates.
const rowEls = new Map();
let canAct = false;

function kindOptions() {
  for (const k of KINDS) form.kind.append(MG.el("option", {value: k}, MG.label("kind", k)));
  for (const option of form.severity.options) {
    if (option.value) option.textContent = MG.label("severity", option.value);
  }
}

function readFilters() {
  const f = new FormData(form);
  const get = (name) => String(f.get(name) || "").trim();
  return {
    status: get("status"), kind: get("kind"), severity: get("severity"),
    transformer: get("transformer"), class: get("class"), acknowledged: get("acknowledged"),
    meter: get("meter"), sort: get("sort") || "kwh",
  };
}

function listUrl(q, cursor) {
  const p = new URLSearchParams({sort: q.sort, limit: String(PAGE)});
  if (q.status) p.set("active", q.status === "active" ? "true" : "false");
  for (const name of ["kind", "severity", "transformer", "class", "acknowledged", "meter"]) {
    if (q[name]) p.set(name, q[name]);
  }
  if (cursor) p.set("cursor", cursor);
  return `/api/alerts?${p}`;
}

// The API's filters, applied again to alerts that change or arrive through the stream.
function matches(a, q, withCase = true) {
  if (q.status === "active" && !a.active) return false;
  if (q.status === "cleared" && a.active) return false;
  if (q.kind && a.kind !== q.kind) return false;
  if (q.severity && a.severity !== q.severity) return false;
  if (q.transformer && a.transformer !== q.transformer) return false;
  if (q.class && (a.customer_class ?? "").toLowerCase() !== q.class.toLowerCase()) return false;
  if (withCase && q.acknowledged && (q.acknowledged === "true") !== Boolean(a.acknowledged_by)) {
    return false;
  }
  return !q.meter || a.meter === q.meter;
}

// An estimated loss to sort by: the API sends null for one that is not a finite figure,
// which its database sorts as the largest (an absurd reading's infinite loss).
function loss(a) {
  return MG.figure(a.estimated_kwh_lost) ? a.estimated_kwh_lost : Infinity;
}

// The API's sort orders, largest first; the id breaks ties as it does there.
function compare(a, b, sort) {
  let d;
  if (sort === "start") d = Date.parse(b.start) - Date.parse(a.start);
  else if (sort === "severity") {
    d = (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0) || loss(b) - loss(a);
  } else d = loss(b) - loss(a);
  // Two infinite losses subtract to NaN: a tie, as are two equal ones.
  return (Number.isNaN(d) ? 0 : d) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

// Whether an alert sorts among the rows loaded: past the last one it belongs to a later page.
function inLoadedRange(a) {
  const last = board.rows[board.rows.length - 1];
  return !board.cursor || !last || compare(a, last, board.query.sort) < 0;
}

const FIELDS = {
  severity: (a) => MG.label("severity", a.severity),
  phase: (a) => a.phase ?? "",
  start: (a) => MG.time(a.start),
  state: (a) => MG.label("state", a.active ? "active" : "cleared"),
  kwh: (a) => MG.kwh(a.estimated_kwh_lost),
  acknowledged: (a) => a.acknowledged_by ?? "",
  assignee: (a) => a.assignee ?? "",
  summary: (a) => a.summary_text ?? a.summary ?? "",
};

function cell(label, field, cls = "") {
  return MG.el("td", {"data-label": label, class: cls, dataset: {field}});
}

function buildRow(a) {
  const tr = MG.el("tr", {dataset: {alertId: a.id}},
    cell(MG.t("Severity"), "severity"),
    MG.el("td", {"data-label": MG.t("Meter")},
      MG.el("a", {href: `/meters/${encodeURIComponent(a.meter)}`}, a.meter)),
    MG.el("td", {"data-label": MG.t("Kind")},
      MG.el("a", {href: `/alerts/${encodeURIComponent(a.id)}`}, MG.label("kind", a.kind))),
    cell(MG.t("Phase"), "phase"), cell(MG.t("Since"), "start"), cell(MG.t("State"), "state"),
    cell(MG.t("kWh lost"), "kwh", "num"), cell(MG.t("Acknowledged"), "acknowledged"),
    cell(MG.t("Assignee"), "assignee"), cell(MG.t("Summary"), "summary", "summary"));
  if (canAct) tr.append(actionsCell(a.id));
  return tr;
}

function fillRow(tr, a) {
  tr.className = a.active ? a.severity : "cleared";
  for (const td of tr.querySelectorAll("td[data-field]")) {
    const text = String(FIELDS[td.dataset.field](a));
    if (td.textContent !== text) td.textContent = text;
  }
  const acked = tr.querySelector("td[data-field=acknowledged]");
  acked.title = a.acknowledged_at ? MG.time(a.acknowledged_at) : "";
  const controls = tr.querySelector(".row-actions .controls");
  if (controls) {
    controls.hidden = !a.active;
    controls.querySelector("button.ack").hidden = Boolean(a.acknowledged_by);
  }
}

// Ack, assign and clear (with its reason) for one row; each answer updates the row at once.
function actionsCell(id) {
  const url = `/api/alerts/${encodeURIComponent(id)}`;
  const ack = MG.el("button", {type: "button", class: "ack"}, MG.t("Ack"));
  const assign = MG.el("form", {class: "assign"},
    MG.el("input", {name: "assignee", list: "assignees", placeholder: MG.t("assignee"),
      "aria-label": MG.t("assignee"), autocomplete: "off", maxlength: "100"}),
    MG.el("button", {type: "submit"}, MG.t("Assign")));
  const clear = MG.el("button", {type: "button", class: "clear"}, MG.t("Clear"));
  const reason = MG.el("form", {class: "clear-reason"},
    MG.el("input", {name: "reason", placeholder: MG.t("reason for clearing"), required: "",
      "aria-label": MG.t("reason for clearing"), maxlength: "2000", autocomplete: "off"}),
    MG.el("button", {type: "submit"}, MG.t("Clear alert")),
    MG.el("button", {type: "button", class: "cancel"}, MG.t("Cancel")));
  reason.hidden = true;
  const onText = (f, field, label, missing, send) => f.addEventListener("submit", (event) => {
    // Spaces alone are no name and no reason, though they would pass the API's length check.
    event.preventDefault();
    const text = f[field].value.trim();
    if (text) act(id, label, f, () => send(text));
    else MG.showError(`${label}: ${missing}`);
  });
  ack.addEventListener("click", () => act(id, MG.t("Acknowledge"), ack, async () => {
    const done = await MG.api("POST", `${url}/acknowledge`, {note: ""});
    return {acknowledged_by: done.user, acknowledged_at: new Date(done.at * 1000).toISOString()};
  }));
  onText(assign, "assignee", MG.t("Assign"), MG.t("type who takes the alert"), async (name) => {
    const done = await MG.api("POST", `${url}/assign`, {assignee: name});
    assign.reset();
    remember([done.assignee]);
    return {assignee: done.assignee};
  });
  const showReason = (open) => {
    reason.hidden = !open;
    clear.hidden = open;
    if (open) reason.reason.focus();
  };
  clear.addEventListener("click", () => showReason(true));
  reason.querySelector(".cancel").addEventListener("click", () => showReason(false));
  onText(reason, "reason", MG.t("Clear"), MG.t("a reason is required"),
    (text) => MG.api("POST", `${url}/clear`, {reason: text}));
  return MG.el("td", {class: "row-actions", "data-label": MG.t("Actions")},
    MG.el("div", {class: "controls"}, ack, assign, clear, reason));
}

// One action: its buttons wait for the answer; a refusal or a network failure is shown.
async function act(id, label, control, call) {
  const buttons = control.tagName === "BUTTON" ? [control] : [...control.querySelectorAll("button")];
  for (const b of buttons) b.disabled = true;
  try {
    const change = await call();
    const a = board.byId.get(id);
    if (a) {
      Object.assign(a, change);
      settle(a);
      draw();
    }
  } catch (err) {
    MG.showError(MG.t("{action} failed: {error}", {action: label, error: err.message}));
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

// Drop an alert that no longer matches the filters (cleared while showing active ones...).
function settle(a) {
  if (matches(a, board.query)) return;
  board.byId.delete(a.id);
  board.rows = board.rows.filter((r) => r.id !== a.id);
}

function insert(a) {
  if (board.byId.has(a.id)) return;
  board.rows.push(a);
  board.byId.set(a.id, a);
}

function draw() {
  const q = board.query;
  if (q) board.rows.sort((a, b) => compare(a, b, q.sort));
  const trs = board.rows.map((a) => {
    let tr = rowEls.get(a.id);
    if (!tr) {
      tr = buildRow(a);
      rowEls.set(a.id, tr);
    }
    fillRow(tr, a);
    return tr;
  });
  for (const [id, tr] of rowEls) {
    if (!board.byId.has(id)) {
      tr.remove();
      rowEls.delete(id);
    }
  }
  for (const tr of [...body.children]) if (!tr.dataset.alertId) tr.remove();
  // Move only the rows out of place: moving a row would take the focus from its inputs.
  trs.forEach((tr, i) => {
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] ?? null);
  });
  if (!trs.length) {
    body.append(MG.el("tr", {}, MG.el("td", {colspan: COLUMNS},
      board.failed ? MG.t("could not load the alerts: {error}", {error: board.failed}) :
        MG.t("no alerts"))));
  }
  more.hidden = !board.cursor;
  document.querySelector("#updated").textContent = MG.t(board.cursor ?
    "{n} shown (more to load) · updated {time}" : "{n} shown · updated {time}",
  {n: trs.length, time: MG.clock()});
}

function remember(names) {
  const known = new Set([...assignees.options].map((o) => o.value));
  for (const name of names) {
    if (name && !known.has(name)) {
      known.add(name);
      assignees.append(MG.el("option", {value: name}));
    }
  }
}

async function reload() {
  const q = readFilters();
  const generation = ++board.generation;
  board.loading = true;
  let page = null;
  let failed = "";
  try {
    page = await MG.api("GET", listUrl(q));
  } catch (err) {
    failed = err.message;
  }
  if (generation !== board.generation) return;  // a newer load replaces this one
  board.query = q;
  board.failed = failed;
  board.rows = page ? page.items : [];
  board.byId = new Map(board.rows.map((a) => [a.id, a]));
  board.cursor = page ? page.next_cursor ?? null : null;
  if (failed) MG.showError(MG.t("Loading the alerts failed: {error}", {error: failed}));
  board.loading = false;
  const queued = board.queued;
  board.queued = [];
  for (const [type, data] of queued) absorb(type, data);
  remember(board.rows.map((a) => a.assignee));
  draw();
}

async function loadMore() {
  const {generation, query, cursor} = board;
  if (!cursor || board.loading) return;
  more.disabled = true;
  // Stream events wait until the page is in: one that sorts into it would otherwise be
  // judged against the old last row and left out.
  board.loading = true;
  try {
    const page = await MG.api("GET", listUrl(query, cursor));
    if (generation !== board.generation) return;
    for (const a of page.items) insert(a);
    board.cursor = page.next_cursor ?? null;
    remember(page.items.map((a) => a.assignee));
  } catch (err) {
    MG.showError(MG.t("Loading more alerts failed: {error}", {error: err.message}));
  } finally {
    more.disabled = false;
    if (generation === board.generation) {  // else a reload took over, queue and all
      board.loading = false;
      const queued = board.queued;
      board.queued = [];
      for (const [type, data] of queued) absorb(type, data);
      draw();
    }
  }
}

// An alert the stream names but the rows lack: fetch it whole, show it if it belongs.
async function fetchIn(id) {
  const generation = board.generation;
  try {
    const {evidence, history, ...a} = await MG.json(`/api/alerts/${encodeURIComponent(id)}`);
    if (generation !== board.generation || board.byId.has(id)) return;
    if (matches(a, board.query) && inLoadedRange(a)) {
      insert(a);
      draw();
    }
  } catch (err) {
    MG.showError(MG.t("Fetching alert {id} failed: {error}", {id, error: err.message}));
  }
}

// Merge one stream event. Engine events lack the case fields, so they are merged into the
// alert shown rather than replacing it; "case" events carry only the case fields.
function absorb(type, data) {
  const q = board.query;
  const known = board.byId.get(data.id);
  if (known) {
    // An alert that has ended never reopens: an update published after its manual clear
    // (the engine's commit came first, its event second) must not show it active again.
    if (!known.active && data.active) return;
    Object.assign(known, data);
    settle(known);
    draw();
    return;
  }
  if (type === "case") {
    // Newly acknowledged: it may now belong to an "acknowledged" view.
    if (q.acknowledged === "true") fetchIn(data.id);
    return;
  }
  if (!matches(data, q, false) || !inLoadedRange(data)) return;
  if (type === "open" || "acknowledged_by" in data) {
    const a = {acknowledged_by: null, acknowledged_at: null, assignee: null, ...data};
    if (matches(a, q)) {
      insert(a);
      draw();
    }
  } else {
    fetchIn(data.id);  // an older alert: its case fields are not in the event
  }
}

function take(type, data) {
  if (board.loading) board.queued.push([type, data]);
  else absorb(type, data);
  statsSoon();
}

async function health() {
  try {
    const h = await MG.json("/healthz");
    document.querySelector("#health").textContent = MG.t(
      "{meters} meters · {online}/{polled} online · {readings} readings",
      {meters: h.meters, online: h.collector.online, polled: h.collector.polled,
        readings: h.counters.readings_in.toLocaleString(MG.i18n.language)});
  } catch (err) {
    document.querySelector("#health").textContent = MG.t("API unreachable");
  }
}

// Precision: theft confirmed out of the outcomes where the crew got access.
const OUTCOMES = ["theft_confirmed", "meter_fault", "wiring_error", "no_fault_found", "no_access"];

async function stats() {
  const table = document.querySelector("#stats tbody");
  const summary = document.querySelector("#open-summary");
  try {
    const s = await MG.json("/api/stats/detectors?open_cases=0");
    const num = (outcome, value) => MG.el("td", {class: "num", dataset: {outcome}}, value);
    table.replaceChildren(...s.detectors.map((d) => MG.el("tr", {dataset: {kind: d.kind}},
      MG.el("td", {}, MG.label("kind", d.kind)),
      num("raised", d.raised ?? MG.DASH),
      num("open", d.open ?? MG.DASH),
      num("open_kwh", MG.kwh(d.open_kwh)),
      ...OUTCOMES.map((o) => num(o, (s.outcomes[d.kind] ?? {})[o] ?? 0)),
      num("precision", MG.percent(d.precision)))));
    if (!s.detectors.length) {
      table.append(MG.el("tr", {}, MG.el("td", {colspan: 10}, MG.t("no closed work orders yet"))));
    }
    const open = s.detectors.reduce((n, d) => n + (d.open ?? 0), 0);
    // A kind whose loss is not a finite figure makes the sum unknown, not smaller.
    const kwh = s.detectors.reduce(
      (n, d) => n + (d.open_kwh === undefined ? 0 : d.open_kwh ?? NaN), 0);
    summary.textContent = MG.t(open === 1 ? "{n} open case · {kwh} kWh estimated lost" :
      "{n} open cases · {kwh} kWh estimated lost", {n: open, kwh: kwh === 0 ? "0" : MG.kwh(kwh)});
  } catch (err) {
    table.replaceChildren(MG.el("tr", {}, MG.el("td", {colspan: 10}, err.message)));
    summary.textContent = MG.t("open cases unknown: {error}", {error: err.message});
  }
}

// Stream events change the open counts: refresh the statistics once a burst has passed.
let statsTimer = null;
function statsSoon() {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(stats, 500);
}

async function pickers() {
  try {
    const fleet = await MG.json("/api/fleet");
    const option = (v) => MG.el("option", {}, v);
    form.elements.namedItem("transformer").append(...fleet.transformers.map(option));
    form.elements.namedItem("class").append(...fleet.classes.map(option));
  } catch (err) {
    MG.showError(MG.t("Loading the transformers and classes failed: {error}",
      {error: err.message}));
  }
}

// Crews named on work orders are the likely assignees (operators cannot list users).
async function crewNames() {
  try {
    const orders = await MG.json("/api/work-orders?limit=1000");
    remember(orders.items.map((o) => o.assignee));
  } catch (err) {
    MG.showError(MG.t("Loading the crews' work orders failed: {error}", {error: err.message}));
  }
}

// The stream's event names and what the board calls them. The alert events are not named
// "open": EventSource fires an "open" of its own on every (re)connection, without data.
const STREAM_EVENTS = {"alert-open": "open", "alert-update": "update", "alert-clear": "clear",
  case: "case"};

function follow() {
  const live = document.querySelector("#live");
  // On a dropped connection the browser reconnects by itself, sending the id of the last
  // event it saw (Last-Event-ID): the server resumes after it, or says "resync".
  const source = new EventSource("/api/stream");
  let opened = false;
  for (const [name, type] of Object.entries(STREAM_EVENTS)) {
    source.addEventListener(name, (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch (err) {
        MG.showError(MG.t("A live update could not be read: {error}", {error: err.message}));
        return;
      }
      if (data && typeof data.id === "string") take(type, data);
    });
  }
  source.addEventListener("resync", () => reload());
  source.onopen = () => {
    live.className = "live on";
    // Load again once subscribed: what changed before the stream opened is in that page.
    if (!opened) reload();
    opened = true;
  };
  source.onerror = () => { live.className = "live off"; };
}

// The chosen transformer's own page: its check meter against its customers by hour.
function transformerLink() {
  const chosen = readFilters().transformer;
  const link = document.querySelector("#transformer-link");
  link.hidden = !chosen;
  if (chosen) link.href = `/transformers/${encodeURIComponent(chosen)}`;
}

let typing = null;
form.addEventListener("input", (event) => {
  if (event.target.name === "transformer") transformerLink();
  clearTimeout(typing);
  // Typed text waits for a pause; a picked option asks at once.
  if (event.target.name === "meter") typing = setTimeout(reload, 300);
  else reload();
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(typing);
  reload();
});
more.addEventListener("click", loadMore);

// A tip from the hotline, WeChat, the web or in person: it opens a case (kind tip) on the
// board, or joins the meter's tip still open as a comment.
const TIP_CHANNELS = ["hotline", "wechat", "web", "in_person", "letter", "other"];

function tipForm() {
  const tipForm = document.querySelector("#tip-form");
  for (const c of TIP_CHANNELS) {
    tipForm.channel.append(MG.el("option", {value: c}, MG.label("channel", c)));
  }
  document.querySelector("#tip-box").hidden = false;
  tipForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const optional = (name) => tipForm[name].value.trim() || null;
    const result = document.querySelector("#tip-result");
    try {
      const made = await MG.api("POST", "/api/tips", {
        channel: tipForm.channel.value, meter: tipForm.meter.value.trim(),
        text: tipForm.text.value, customer: optional("customer"),
        address: optional("address"), reporter: optional("reporter")});
      const link = MG.el("a", {href: `/alerts/${encodeURIComponent(made.alert.id)}`},
        made.alert.id);
      result.replaceChildren(made.new ? MG.t("Case opened:") : MG.t("Added to the open case:"),
        " ", link);
      tipForm.text.value = "";
      reload();
    } catch (err) {
      result.textContent = "";  // MG.api has shown why
    }
  });
}

async function main() {
  await MG.ready;
  kindOptions();
  canAct = MG.can("operator", "admin");
  document.querySelector("#actions-head").hidden = !canAct;
  pickers();
  transformerLink();
  if (canAct) {
    crewNames();
    tipForm();
  }
  reload();
  follow();
  health();
  setInterval(health, 5000);
  stats();
  setInterval(stats, 3000);
}

main();
