// The transformer page: its check meter against the sum of its customers by hour, the gap
// against the technical-loss allowance, and its meters with their open alerts.
"use strict";

const ENERGY_COLOURS = {feeder: "#1565c0", customers: "#2e7d32", gap: "#c62828",
  allowance: "#6d6d6d"};

function chart(container, title, ts, lines) {
  const box = MG.el("figure", {class: "chart", dataset: {chart: title}},
    MG.el("figcaption", {}, title));
  container.append(box);
  const width = Math.max(320, Math.min(container.clientWidth || 900, 1100));
  const series = [{}, ...lines.map((l) => ({label: l.label, stroke: l.colour, width: 1.5,
    dash: l.dash}))];
  new uPlot({width, height: 200, series, scales: {x: {time: true}}, axes: [{}, {size: 70}]},
    [ts, ...lines.map((l) => l.data)], box);
}

function alertLinks(alerts) {
  if (!alerts.length) return MG.el("span", {class: "muted"}, MG.t("none"));
  const links = alerts.map((a) => MG.el("a", {href: `/alerts/${encodeURIComponent(a.id)}`,
    class: `badge ${a.severity}`}, MG.label("kind", a.kind)));
  return MG.el("span", {class: "alert-links"}, ...links.flatMap((l) => [l, " "]));
}

function share(part, whole) {
  return whole ? MG.percent(part / whole) : "—";
}

async function draw(id) {
  const hours = document.querySelector("#hours").value;
  const b = await MG.json(`/api/transformers/${encodeURIComponent(id)}/balance?hours=${hours}`);
  const t = b.totals;
  const facts = [
    [MG.t("check meter"), b.feeders.length ? b.feeders.join(", ") : MG.t("none: no balance")],
    [MG.t("customers"), String(b.meters.filter((m) => m.role !== "feeder").length)],
    [MG.t("loss allowance"), MG.percent(b.loss_allowance)],
    [MG.t("complete hours"), `${t.hours} / ${b.items.length}`],
    [MG.t("check meter kWh"), MG.kwh(t.feeder_kwh)],
    [MG.t("customers kWh"), MG.kwh(t.customers_kwh)],
    [MG.t("gap kWh"), t.gap_kwh == null ? "—" :
      `${MG.kwh(t.gap_kwh)} (${share(t.gap_kwh, t.feeder_kwh)})`],
    [MG.t("loss allowance kWh"), MG.kwh(t.allowance_kwh)],
  ];
  document.querySelector("#facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [MG.el("dt", {}, k), MG.el("dd", {}, v)]));
  const plots = document.querySelector("#plots");
  plots.replaceChildren();
  const ts = b.items.map((h) => h.ts + 1800);  // each hour drawn at its middle
  const col = (name) => b.items.map((h) => h[name]);
  // A gap is judged only where every meter covered the hour; the others would mislead.
  const judged = (name) => b.items.map((h) => (h.complete ? h[name] : null));
  chart(plots, MG.t("Check meter and customers (kWh per hour)"), ts, [
    {label: MG.t("check meter"), colour: ENERGY_COLOURS.feeder, data: col("feeder_kwh")},
    {label: MG.t("customers"), colour: ENERGY_COLOURS.customers, data: col("customers_kwh")},
  ]);
  chart(plots, MG.t("Gap and loss allowance (kWh per hour)"), ts, [
    {label: MG.t("gap"), colour: ENERGY_COLOURS.gap, data: judged("gap_kwh")},
    {label: MG.t("loss allowance"), colour: ENERGY_COLOURS.allowance, dash: [5, 5],
      data: judged("allowance_kwh")},
  ]);
  plots.dataset.charts = "2";
  document.querySelector("#meters tbody").replaceChildren(...b.meters.map((m) =>
    MG.el("tr", {dataset: {meter: m.id}},
      MG.el("td", {}, MG.el("a", {href: `/meters/${encodeURIComponent(m.id)}`}, m.id)),
      MG.el("td", {}, MG.label("meter_role", m.role)),
      MG.el("td", {}, m.customer_class ?? "—"),
      MG.el("td", {}, alertLinks(m.open_alerts)))));
  const cell = (x) => MG.el("td", {class: "num"}, x == null ? "—" : MG.num(x, 3));
  document.querySelector("#hours-table tbody").replaceChildren(...[...b.items].reverse()
    .map((h) => MG.el("tr", {class: h.excess_kwh > 0 && h.complete ? "over" : "",
      dataset: {ts: h.ts}},
    MG.el("td", {}, MG.time(h.start)), cell(h.feeder_kwh), cell(h.customers_kwh),
    cell(h.gap_kwh), cell(h.allowance_kwh), cell(h.excess_kwh),
    MG.el("td", {}, MG.t(h.complete ? "yes" : "no")))));
}

async function main() {
  await MG.ready;
  const id = MG.lastPathPart();
  document.title = `meterguard - ${MG.t("Transformer {id}", {id})}`;
  document.querySelector("#title").textContent = MG.t("Transformer {id}", {id});
  document.querySelector("#hours").addEventListener("change", () => draw(id).catch(failed));
  await draw(id);
}

function failed(err) {
  MG.showError(MG.t("Could not load the transformer: {error}", {error: err.message}));
}

main().catch(failed);
