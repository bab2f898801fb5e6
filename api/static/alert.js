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
      MG.el("td", {class: "num"}, q in s ? MG.num(s[q]) : "")))));
  const other = Object.entries(evidence).filter(([, v]) => !(v && typeof v === "object"));
  for (const [k, v] of other) {
    // Keys ending in _ts are data times; show them as times, not epoch numbers.
    const text = k.endsWith("_ts") ? MG.epochTime(v) : String(v);
    body.append(MG.el("tr", {}, MG.el("td", {}, k.replace(/_ts$/, "").replaceAll("_", " ")),
      MG.el("td", {colspan: snapshots.length || 1}, text)));
  }
}

// The case: what people did about the alert, newest last, refreshed after each action.
async function drawCase(id) {
  const c = await MG.json(`/api/alerts/${encodeURIComponent(id)}/case`);
  const when = (t) => MG.epochTime(t);
  const list = (title, cls, items, line) => MG.el("section", {class: `case-part ${cls}`},
    MG.el("h3", {}, `${title} (${items.length})`),
    items.length ? MG.el("ul", {}, ...items.map((x) => MG.el("li", {}, line(x))))
      : MG.el("p", {class: "muted"}, "none"));
  document.querySelector("#case").replaceChildren(
    list("Acknowledgements", "acks", c.acknowledgements,
      (a) => `${when(a.at)} · ${a.user}${a.note ? `: ${a.note}` : ""}`),
    list("Assignments", "assignments", c.assignments,
      (a) => `${when(a.at)} · ${a.assigned_by} → ${a.assignee}`),
    list("Comments", "comments", c.comments, (m) => `${when(m.at)} · ${m.author}: ${m.text}`),
    list("Work orders", "work-orders", c.work_orders, (w) =>
      `#${w.id} ${w.status} · crew ${w.assignee ?? "unassigned"}` +
      `${w.instructions ? ` · ${w.instructions}` : ""}` +
      `${w.outcome ? ` · outcome ${w.outcome}${w.outcome_method ? ` by ${w.outcome_method}` : ""}` +
        `${w.outcome_note ? `: ${w.outcome_note}` : ""}` : ""}` +
      `${w.recovered_kwh != null ? ` · ${w.recovered_kwh} kWh recovered` : ""}` +
      `${w.alert_ids.length > 1 ? ` · with ${w.alert_ids.filter((a) => a !== id).join(", ")}` : ""}`),
    list("Audit trail", "audit", c.audit, (e) =>
      `${when(e.at)} · ${e.actor} ${e.action}` +
      `${Object.keys(e.detail).length ? ` ${JSON.stringify(e.detail)}` : ""}`));
}

// Operators and admins act on the alert; each form posts, clears itself and redraws the case.
function wireActions(id, active) {
  const base = `/api/alerts/${encodeURIComponent(id)}`;
  const actions = [
    ["#ack-form", (f) => MG.api("POST", `${base}/acknowledge`, {note: f.note.value})],
    ["#assign-form", (f) => MG.api("POST", `${base}/assign`, {assignee: f.assignee.value})],
    ["#comment-form", (f) => MG.api("POST", `${base}/comments`, {text: f.text.value})],
    ["#work-order-form", (f) => MG.api("POST", "/api/work-orders", {
      alert_ids: [id], instructions: f.instructions.value,
      assignee: f.assignee.value.trim() || null})],
    ["#clear-form", async (f) => {
      const reason = f.reason.value.trim();
      if (!reason) {
        MG.showError("Clearing an alert needs a reason.");
        throw new Error("no reason");
      }
      await MG.api("POST", `${base}/clear`, {reason});
      location.reload();  // the state, the end and the history all change
    }],
  ];
  document.querySelector("#clear-form").hidden = !active;
  for (const [selector, send] of actions) {
    const form = document.querySelector(selector);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await send(form);
        form.reset();
      } catch (err) {
        return;  // MG.api has shown the error; the form keeps what was typed
      }
      await drawCase(id);
    });
  }
  document.querySelector("#actions").hidden = false;
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
    ["start", MG.time(a.start)], ["raised", a.raised ? MG.time(a.raised) : "—"],
    ["end", a.end ? MG.time(a.end) : "still open"],
    ["confidence", MG.percent(a.confidence)],
    ["estimated kWh lost", MG.kwh(a.estimated_kwh_lost)],
    ["acknowledged by", a.acknowledged_by ?? "—"], ["assignee", a.assignee ?? "—"],
    ["alert id", a.id],
  ];
  const manual = a.evidence.cleared_by?.manual;
  if (manual) facts.push(["cleared by hand", `${manual.by}: ${manual.reason}`]);
  document.querySelector("#facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [MG.el("dt", {}, k), MG.el("dd", {}, v)]));
  evidenceTable(a.evidence);
  document.querySelector("#history tbody").replaceChildren(...a.history.map((h) =>
    MG.el("tr", {}, MG.el("td", {}, h.type), MG.el("td", {}, MG.epochTime(h.ts)),
      MG.el("td", {}, MG.epochTime(h.recorded_at)))));
  await MG.ready;
  if (MG.can("operator", "admin")) wireActions(id, a.active);
  drawCase(id).catch((err) => {
    document.querySelector("#case").textContent = `Could not load the case: ${err.message}`;
  });
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
