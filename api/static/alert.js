// The alert page: summary, facts, plots around the onset, evidence readings, history.
"use strict";

const QUANTITY_ORDER = ["v1", "v2", "v3", "i1", "i2", "i3", "in", "p1", "p2", "p3",
  "q1", "q2", "q3", "e_imp", "e_exp", "f"];

const SNAPSHOT_ORDER = ["onset", "at_raise", "latest", "cleared_by"];

function evidenceTable(evidence) {
  const rank = (name) => (SNAPSHOT_ORDER.indexOf(name) + 1) || 99;
  const snapshots = Object.entries(evidence)
    .filter(([, v]) => v && typeof v === "object" && "ts" in v)
    .sort(([a], [b]) => rank(a) - rank(b));
  const head = document.querySelector("#evidence thead");
  const body = document.querySelector("#evidence tbody");
  head.replaceChildren(MG.el("tr", {}, MG.el("th", {}, "quantity"),
    ...snapshots.map(([name, snap]) => MG.el("th", {class: "num"},
      `${name.replace("_", " ")} (${MG.epochTime(snap.ts)})`))));
  body.replaceChildren(...QUANTITY_ORDER
    .filter((q) => snapshots.some(([, s]) => q in s))
    .map((q) => MG.el("tr", {}, MG.el("td", {}, q), ...snapshots.map(([, s]) =>
      MG.el("td", {class: "num"}, q in s ? Number(s[q]).toFixed(2) : "")))));
  const other = Object.entries(evidence).filter(([, v]) => !(v && typeof v === "object"));
  for (const [k, v] of other) {
    // Keys ending in _ts are data times; show them as times, not epoch numbers.
    const text = k.endsWith("_ts") ? MG.epochTime(v) : String(v);
    body.append(MG.el("tr", {}, MG.el("td", {}, k.replace(/_ts$/, "").replaceAll("_", " ")),
      MG.el("td", {colspan: snapshots.length || 1}, text)));
  }
}

async function main() {
  const id = MG.lastPathPart();
  const a = await MG.json(`/api/alerts/${encodeURIComponent(id)}`);
  document.title = `meterguard - ${a.kind} at ${a.meter}`;
  document.querySelector("#title").replaceChildren(
    MG.el("span", {class: `badge ${a.severity}`}, a.severity), " ",
    `${a.kind} at `, MG.el("a", {href: `/meters/${encodeURIComponent(a.meter)}`}, a.meter));
  document.querySelector("#summary").textContent = a.summary;
  const facts = [
    ["state", a.active ? "active" : "cleared"], ["phase", a.phase ?? "—"],
    ["start", MG.time(a.start)], ["end", a.end ? MG.time(a.end) : "still open"],
    ["confidence", `${Math.round(a.confidence * 100)} %`],
    ["estimated kWh lost", MG.kwh(a.estimated_kwh_lost)], ["alert id", a.id],
  ];
  document.querySelector("#facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [MG.el("dt", {}, k), MG.el("dd", {}, v)]));
  evidenceTable(a.evidence);
  document.querySelector("#history tbody").replaceChildren(...a.history.map((h) =>
    MG.el("tr", {}, MG.el("td", {}, h.type), MG.el("td", {}, MG.epochTime(h.ts)),
      MG.el("td", {}, MG.epochTime(h.recorded_at)))));
  const start = Date.parse(a.start) / 1000;
  const end = a.end ? Date.parse(a.end) / 1000 : Date.now() / 1000;
  const pad = Math.max(600, (end - start) * 0.5);
  const plots = document.querySelector("#plots");
  const drawn = await MG.plots(plots, a.meter, start - pad, end + pad, start);
  plots.dataset.charts = String(drawn);
}

main().catch((err) => {
  document.querySelector("#summary").textContent = `Could not load the alert: ${err.message}`;
});
