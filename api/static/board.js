// The alert board: polls the API and redraws the table; no build step, no CDN.
"use strict";

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function refresh() {
  try {
    const [alertsResp, healthResp] = await Promise.all([
      fetch("/api/alerts?limit=200"), fetch("/healthz"),
    ]);
    const alerts = await alertsResp.json();
    const health = await healthResp.json();
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren();
    const rows = alerts.items.slice().sort(
      (a, b) => (b.active - a.active) || (b.estimated_kwh_lost - a.estimated_kwh_lost));
    for (const a of rows) {
      const tr = document.createElement("tr");
      tr.className = a.active ? a.severity : "cleared";
      tr.dataset.alertId = a.id;
      tr.append(cell(a.severity), cell(a.meter), cell(a.kind), cell(a.phase ?? ""),
                cell(a.start), cell(a.active ? "active" : "cleared"),
                cell(a.estimated_kwh_lost.toFixed(3)), cell(a.summary));
      body.append(tr);
    }
    if (!rows.length) {
      body.append(Object.assign(document.createElement("tr"), {innerHTML: "<td colspan=8>no alerts</td>"}));
    }
    document.querySelector("#health").textContent =
      `${health.meters} meters · ${health.collector.online}/${health.collector.polled} online · ` +
      `${health.counters.readings_in} readings`;
    document.querySelector("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.querySelector("#health").textContent = "API unreachable: " + err;
  }
}

refresh();
setInterval(refresh, 3000);
