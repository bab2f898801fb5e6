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
  head.replaceChildren(MG.el("tr", {}, MG.el("th", {}, MG.t("quantity")),
    ...snapshots.map(([name, snap]) => MG.el("th", {class: "num"},
      `${MG.label("evidence", name)} (${MG.epochTime(snap.ts)})`))));
  body.replaceChildren(...QUANTITY_ORDER
    .filter((q) => snapshots.some(([, s]) => q in s))
    .map((q) => MG.el("tr", {}, MG.el("td", {}, q), ...snapshots.map(([, s]) =>
      MG.el("td", {class: "num"}, q in s ? MG.num(s[q]) : "")))));
  const other = Object.entries(evidence).filter(([, v]) => !(v && typeof v === "object"));
  for (const [k, v] of other) {
    // Keys ending in _ts are data times; show them as times, not epoch numbers.
    const text = k.endsWith("_ts") ? MG.epochTime(v) : String(v);
    const name = k.replace(/_ts$/, "");
    const label = MG.label("evidence", name);
    body.append(MG.el("tr", {}, MG.el("td", {}, label === name ? name.replaceAll("_", " ") : label),
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
      : MG.el("p", {class: "muted"}, MG.t("none")));
  document.querySelector("#case").replaceChildren(
    list(MG.t("Acknowledgements"), "acks", c.acknowledgements,
      (a) => `${when(a.at)} · ${a.user}${a.note ? `: ${a.note}` : ""}`),
    list(MG.t("Assignments"), "assignments", c.assignments,
      (a) => `${when(a.at)} · ${a.assigned_by} → ${a.assignee}`),
    list(MG.t("Comments"), "comments", c.comments, (m) => `${when(m.at)} · ${m.author}: ${m.text}`),
    list(MG.t("Work orders"), "work-orders", c.work_orders, (w) => [
      `#${w.id} ${MG.label("status", w.status)}`,
      MG.t("crew {name}", {name: w.assignee ?? MG.t("unassigned")}),
      w.instructions,
      w.outcome && MG.t(w.outcome_method ? "outcome {outcome} by {method}" : "outcome {outcome}",
        {outcome: MG.label("outcome", w.outcome), method: w.outcome_method}) +
        (w.outcome_note ? `: ${w.outcome_note}` : ""),
      w.recovered_kwh != null && MG.t("{kwh} kWh recovered", {kwh: w.recovered_kwh}),
      w.alert_ids.length > 1 &&
        MG.t("with {alerts}", {alerts: w.alert_ids.filter((a) => a !== id).join(", ")}),
    ].filter(Boolean).join(" · ")),
    list(MG.t("Audit trail"), "audit", c.audit, (e) =>
      `${when(e.at)} · ${e.actor} ${MG.label("action", e.action)}` +
      `${Object.keys(e.detail).length ? ` ${JSON.stringify(e.detail)}` : ""}`));
}

// The crews' photos of the alert (a crew sees only those of its own work orders).
async function drawPhotos(id) {
  const list = await MG.json(`/api/alerts/${encodeURIComponent(id)}/photos`);
  const box = document.querySelector("#photos");
  box.hidden = false;
  box.replaceChildren(MG.el("h3", {}, MG.t("Photos ({count})", {count: list.count})),
    list.count ? MG.photoStrip(list.items) : MG.el("p", {class: "muted"}, MG.t("none")));
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
        const message = MG.t("Clearing an alert needs a reason.");
        MG.showError(message);
        throw new Error(message);
      }
      await MG.api("POST", `${base}/clear`, {reason});
      location.reload();  // the state, the end and the history all change
    }],
  ];
  // The pack is a GET: the page's cookie signs it, so a plain link downloads it.
  document.querySelector("#pack-pdf").href = `${base}/evidence.pdf`;
  document.querySelector("#pack-zip").href = `${base}/evidence.zip`;
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
  await MG.ready;
  const id = MG.lastPathPart();
  const a = await MG.json(`/api/alerts/${encodeURIComponent(id)}`);
  const kind = MG.label("kind", a.kind);
  document.title = `meterguard - ${MG.t("{kind} at {meter}", {kind, meter: a.meter})}`;
  const meterLink = MG.el("a", {href: `/meters/${encodeURIComponent(a.meter)}`}, a.meter);
  // "{kind} at {meter}" in the reader's language, with the meter as a link.
  const [before, after] = MG.t("{kind} at {meter}", {kind}).split("{meter}");
  document.querySelector("#title").replaceChildren(
    MG.el("span", {class: `badge ${a.severity}`}, MG.label("severity", a.severity)), " ",
    before, meterLink, after ?? "");
  document.querySelector("#summary").textContent = a.summary_text ?? a.summary;
  const facts = [
    [MG.t("state"), MG.label("state", a.active ? "active" : "cleared")],
    [MG.t("phase"), a.phase ?? "—"],
    [MG.t("start"), MG.time(a.start)], [MG.t("raised"), a.raised ? MG.time(a.raised) : "—"],
    [MG.t("end"), a.end ? MG.time(a.end) : MG.t("still open")],
    [MG.t("confidence"), MG.percent(a.confidence)],
    [MG.t("estimated kWh lost"), MG.kwh(a.estimated_kwh_lost)],
    [MG.t("acknowledged by"), a.acknowledged_by ?? "—"],
    [MG.t("assignee"), a.assignee ?? "—"],
    [MG.t("alert id"), a.id],
  ];
  if (a.transformer) {
    // Where the energy goes on the meter's transformer: the first place to look for a balance.
    facts.push([MG.t("transformer"), MG.el("a", {id: "transformer-link",
      href: `/transformers/${encodeURIComponent(a.transformer)}`},
    a.kind === "energy_balance" ?
      MG.t("{transformer}: check meter against customers", {transformer: a.transformer}) :
      a.transformer)]);
  }
  const manual = a.evidence.cleared_by?.manual;
  if (manual) facts.push([MG.t("cleared by hand"), `${manual.by}: ${manual.reason}`]);
  document.querySelector("#facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [MG.el("dt", {}, k), MG.el("dd", {}, v)]));
  evidenceTable(a.evidence);
  document.querySelector("#history tbody").replaceChildren(...a.history.map((h) =>
    MG.el("tr", {}, MG.el("td", {}, MG.label("event", h.type)), MG.el("td", {}, MG.epochTime(h.ts)),
      MG.el("td", {}, MG.epochTime(h.recorded_at)))));
  if (MG.can("operator", "admin")) wireActions(id, a.active);
  if (MG.can("operator", "admin", "crew")) {
    drawPhotos(id).catch((err) => {
      document.querySelector("#photos").textContent =
        MG.t("Could not load the photos: {error}", {error: err.message});
    });
  }
  drawCase(id).catch((err) => {
    document.querySelector("#case").textContent =
      MG.t("Could not load the case: {error}", {error: err.message});
  });
  const start = Date.parse(a.start) / 1000;
  const end = a.end ? Date.parse(a.end) / 1000 : Date.now() / 1000;
  const pad = Math.max(600, (end - start) * 0.5);
  const plots = document.querySelector("#plots");
  const drawn = await MG.plots(plots, a.meter, start - pad, end + pad, start);
  plots.dataset.charts = String(drawn);
}

main().catch((err) => {
  document.querySelector("#summary").textContent =
    MG.t("Could not load the alert: {error}", {error: err.message});
});
