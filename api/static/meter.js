// The meter page: profile, collector status, latest values, plots over a window, alerts.
"use strict";

async function main() {
  await MG.ready;
  const id = MG.lastPathPart();
  const m = await MG.json(`/api/meters/${encodeURIComponent(id)}`);
  document.title = `meterguard - ${m.id}`;
  document.querySelector("#title").textContent = MG.t("Meter {id}", {id: m.id});
  const c = m.collector;
  const collector = c ? MG.t("{source}: {state} · {polls} polls · {errors} errors",
    {source: c.source, state: MG.t(c.online ? "online" : "failing"), polls: c.readings,
      errors: c.errors}) + (c.last_error ? ` (${MG.t("last: {error}", {error: c.last_error})})` :
    "") : MG.t("not polled");
  const facts = [
    [MG.t("service"), m.service], [MG.t("nominal voltage"), `${m.nominal_v} V`],
    [MG.t("CT primary"), m.ct_primary_a ? `${m.ct_primary_a} A` : MG.t("whole-current")],
    [MG.t("generation"), MG.t(m.generation ? "yes (may export)" : "no")],
    [MG.t("transformer"), m.transformer ? MG.el("a", {id: "transformer-link",
      href: `/transformers/${encodeURIComponent(m.transformer)}`}, m.transformer) : "—"], [MG.t("role"), MG.label("meter_role", m.role)],
    [MG.t("class"), m.customer_class ?? "—"],
    [MG.t("collector"), collector],
  ];
  document.querySelector("#facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [MG.el("dt", {}, k), MG.el("dd", {}, v)]));
  const latest = m.latest || {};
  document.querySelector("#latest-at").textContent =
    m.latest_at ? MG.time(m.latest_at) : MG.t("none yet");
  document.querySelector("#latest tbody").replaceChildren(...Object.entries(latest)
    .filter(([k]) => k !== "ts")
    .map(([k, v]) => MG.el("tr", {}, MG.el("td", {}, k), MG.el("td", {class: "num"}, MG.num(v)))));
  document.querySelector("#alerts tbody").replaceChildren(...m.alerts.map((a) => MG.el("tr",
    {class: a.active ? a.severity : "cleared"},
    MG.el("td", {}, MG.label("severity", a.severity)),
    MG.el("td", {}, MG.el("a", {href: `/alerts/${encodeURIComponent(a.id)}`},
      MG.label("kind", a.kind))),
    MG.el("td", {}, MG.time(a.start)),
    MG.el("td", {}, MG.label("state", a.active ? "active" : "cleared")),
    MG.el("td", {class: "num"}, MG.kwh(a.estimated_kwh_lost)),
    MG.el("td", {}, a.summary_text ?? a.summary))));
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
  document.querySelector("#title").textContent =
    MG.t("Could not load the meter: {error}", {error: err.message});
});
