// The alert board: loads the alerts once, then follows the live stream (SSE).
"use strict";

const KINDS = ["bypass", "reversal", "imbalance", "voltage_loss", "phase_shift",
  "consumption_drop", "tamper", "comms_loss", "energy_balance", "ct_ratio"];
const alerts = new Map();
const form = document.querySelector("#filters");

for (const k of KINDS) form.kind.append(MG.el("option", {}, k));

function visible(a) {
  const f = new FormData(form);
  if (f.get("status") === "active" && !a.active) return false;
  if (f.get("status") === "cleared" && a.active) return false;
  if (f.get("kind") && a.kind !== f.get("kind")) return false;
  if (f.get("severity") && a.severity !== f.get("severity")) return false;
  const meter = (f.get("meter") || "").trim().toLowerCase();
  return !meter || a.meter.toLowerCase().includes(meter);
}

function draw() {
  const body = document.querySelector("#alerts tbody");
  const rows = [...alerts.values()].filter(visible).sort(
    (a, b) => (b.active - a.active) || (b.estimated_kwh_lost - a.estimated_kwh_lost));
  body.replaceChildren(...rows.map((a) => MG.el("tr",
    {class: a.active ? a.severity : "cleared", dataset: {alertId: a.id}},
    MG.el("td", {"data-label": "Severity"}, a.severity),
    MG.el("td", {"data-label": "Meter"},
      MG.el("a", {href: `/meters/${encodeURIComponent(a.meter)}`}, a.meter)),
    MG.el("td", {"data-label": "Kind"},
      MG.el("a", {href: `/alerts/${encodeURIComponent(a.id)}`}, a.kind)),
    MG.el("td", {"data-label": "Phase"}, a.phase ?? ""),
    MG.el("td", {"data-label": "Since"}, MG.time(a.start)),
    MG.el("td", {"data-label": "State"}, a.active ? "active" : "cleared"),
    MG.el("td", {class: "num", "data-label": "kWh lost"}, MG.kwh(a.estimated_kwh_lost)),
    MG.el("td", {"data-label": "Summary", class: "summary"}, a.summary))));
  if (!rows.length) body.append(MG.el("tr", {}, MG.el("td", {colspan: 8}, "no alerts")));
  document.querySelector("#updated").textContent =
    `${rows.length} shown · updated ${new Date().toLocaleTimeString()}`;
}

async function reload() {
  const list = await MG.json("/api/alerts?limit=1000");
  alerts.clear();
  for (const a of list.items) alerts.set(a.id, a);
  draw();
}

async function health() {
  try {
    const h = await MG.json("/healthz");
    document.querySelector("#health").textContent =
      `${h.meters} meters · ${h.collector.online}/${h.collector.polled} online · ` +
      `${h.counters.readings_in.toLocaleString()} readings`;
  } catch (err) {
    document.querySelector("#health").textContent = "API unreachable";
  }
}

// Precision: theft confirmed out of the outcomes where the crew got access.
const OUTCOMES = ["theft_confirmed", "meter_fault", "wiring_error", "no_fault_found", "no_access"];

async function stats() {
  const body = document.querySelector("#stats tbody");
  try {
    const s = await MG.json("/api/stats/detectors?open_cases=0");
    body.replaceChildren(...s.detectors.map((d) => MG.el("tr", {dataset: {kind: d.kind}},
      MG.el("td", {}, d.kind),
      MG.el("td", {class: "num", dataset: {outcome: "raised"}}, d.raised),
      ...OUTCOMES.map((o) => MG.el("td", {class: "num", dataset: {outcome: o}},
        (s.outcomes[d.kind] ?? {})[o] ?? 0)),
      MG.el("td", {class: "num", dataset: {outcome: "precision"}},
        d.precision == null ? "—" : `${Math.round(d.precision * 100)} %`))));
    if (!s.detectors.length) {
      body.append(MG.el("tr", {}, MG.el("td", {colspan: 8}, "no closed work orders yet")));
    }
  } catch (err) {
    body.replaceChildren(MG.el("tr", {}, MG.el("td", {colspan: 8}, err.message)));
  }
}

function follow() {
  const live = document.querySelector("#live");
  const source = new EventSource("/api/stream");
  const take = (msg) => {
    const a = JSON.parse(msg.data);
    alerts.set(a.id, a);
    draw();
  };
  for (const type of ["open", "update", "clear"]) source.addEventListener(type, take);
  source.addEventListener("resync", () => reload());
  source.onopen = () => { live.className = "live on"; };
  source.onerror = () => { live.className = "live off"; };
}

form.addEventListener("input", draw);
reload().then(follow);
health();
setInterval(health, 5000);
stats();
setInterval(stats, 3000);
