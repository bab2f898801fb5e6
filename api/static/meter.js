// The meter page: profile, collector status, latest values, plots over a window, alerts.
"use strict";

async function main() {
  const id = MG.lastPathPart();
  const m = await MG.json(`/api/meters/${encodeURIComponent(id)}`);
  document.title = `meterguard - ${m.id}`;
  document.querySelector("#title").textContent = `Meter ${m.id}`;
  const c = m.collector;
  const facts = [
    ["service", m.service], ["nominal voltage", `${m.nominal_v} V`],
    ["CT primary", m.ct_primary_a ? `${m.ct_primary_a} A` : "whole-current"],
    ["generation", m.generation ? "yes (may export)" : "no"],
    ["transformer", m.transformer ?? "—"], ["role", m.role],
    ["class", m.customer_class ?? "—"],
    ["collector", c ? `${c.source}: ${c.online ? "online" : "failing"} · ${c.readings} polls · ` +
      `${c.errors} errors${c.last_error ? ` (last: ${c.last_error})` : ""}` : "not polled"],
  ];
  document.querySelector("#facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [MG.el("dt", {}, k), MG.el("dd", {}, v)]));
  const latest = m.latest || {};
  document.querySelector("#latest-at").textContent = m.latest_at ? MG.time(m.latest_at) : "none yet";
  document.querySelector("#latest tbody").replaceChildren(...Object.entries(latest)
    .filter(([k]) => k !== "ts")
    .map(([k, v]) => MG.el("tr", {}, MG.el("td", {}, k), MG.el("td", {class: "num"}, MG.num(v)))));
  document.querySelector("#alerts tbody").replaceChildren(...m.alerts.map((a) => MG.el("tr",
    {class: a.active ? a.severity : "cleared"},
    MG.el("td", {}, a.severity),
    MG.el("td", {}, MG.el("a", {href: `/alerts/${encodeURIComponent(a.id)}`}, a.kind)),
    MG.el("td", {}, MG.time(a.start)), MG.el("td", {}, a.active ? "active" : "cleared"),
    MG.el("td", {class: "num"}, MG.kwh(a.estimated_kwh_lost)), MG.el("td", {}, a.summary))));
  const plots = document.querySelector("#plots");
  const draw = async () => {
    const span = Number(document.querySelector("#window").value);
    const end = m.latest_at ? Date.parse(m.latest_at) / 1000 + 60 : Date.now() / 1000;
    plots.dataset.charts = String(await MG.plots(plots, m.id, end - span, end, null));
  };
  document.querySelector("#window").addEventListener("change", draw);
  await draw();
}

main().catch((err) => {
  document.querySelector("#title").textContent = `Could not load the meter: ${err.message}`;
});
