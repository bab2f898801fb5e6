// The crew page: my work orders, en route / on site, the checklist and the outcome form.
"use strict";

// Outcomes, checklist points and answers are codes; their names come from the catalogues
// (outcome.*, check.*, answer.*).
const OUTCOMES = ["theft_confirmed", "meter_fault", "wiring_error", "no_fault_found", "no_access"];
// The on-site checklist (docs/PHYSICS.md, field practice); each point is yes, no or not checked.
const CHECKS = ["seals_intact", "wiring_correct", "ct_ratio_fits_load",
  "overheating_or_loose_contacts", "neutral_and_earth_correct"];
const ANSWERS = ["not_checked", "yes", "no"];
const METHODS = ["bypass", "reversal", "phase_shift", "ct_ratio", "tamper", "voltage_loss"];
// Where a crew moves an open order next (the button is named by the status it moves to).
const NEXT = {open: "en_route", en_route: "on_site"};
const CLOSED = new Set(["done", "cancelled"]);
const summaries = new Map();

async function alertSummary(id) {
  if (!summaries.has(id)) {
    summaries.set(id, MG.json(`/api/alerts/${encodeURIComponent(id)}`).catch(() => null));
  }
  return summaries.get(id);
}

function checklistFields(checklist) {
  const rows = CHECKS.map((name) => {
    const label = MG.label("check", name);
    const select = MG.el("select", {name, "aria-label": label},
      ...ANSWERS.map((value) => MG.el("option", {value}, MG.label("answer", value))));
    select.value = checklist[name];
    return MG.el("label", {class: "check"}, MG.el("span", {}, label), select);
  });
  const notes = MG.el("textarea", {name: "notes", rows: 2,
    "aria-label": MG.t("checklist notes"), placeholder: MG.t("notes")});
  notes.value = checklist.notes;
  const evidence = MG.el("textarea", {name: "evidence", rows: 2, "aria-label": MG.t("evidence"),
    placeholder: MG.t("evidence: photo numbers, readings")});
  evidence.value = checklist.evidence;
  return MG.el("fieldset", {class: "checklist"}, MG.el("legend", {}, MG.t("On-site checklist")),
    ...rows, notes, evidence);
}

function readChecklist(form) {
  const checklist = {notes: form.notes.value, evidence: form.evidence.value};
  for (const name of CHECKS) checklist[name] = form[name].value;
  return checklist;
}

function siteForm(order) {
  const select = MG.el("select", {name: "outcome", required: "", "aria-label": MG.t("outcome")},
    MG.el("option", {value: ""}, MG.t("choose the outcome…")),
    ...OUTCOMES.map((value) => MG.el("option", {value}, MG.label("outcome", value))));
  const method = MG.el("input", {name: "outcome_method", list: `methods-${order.id}`, maxlength: 100,
    placeholder: MG.t("how: bypass, reversal… or own words"), "aria-label": MG.t("theft method")});
  const methods = MG.el("datalist", {id: `methods-${order.id}`},
    ...METHODS.map((m) => MG.el("option", {value: m}, MG.label("kind", m))));
  const recovered = MG.el("input", {name: "recovered_kwh", type: "number", min: 0, step: "any",
    inputmode: "decimal", placeholder: MG.t("recovered kWh"), "aria-label": MG.t("recovered kWh")});
  if (order.recovered_kwh != null) recovered.value = order.recovered_kwh;
  const save = MG.el("button", {type: "button", class: "save"}, MG.t("Save checklist"));
  const showMethod = () => { method.hidden = select.value !== "theft_confirmed"; };
  select.addEventListener("change", showMethod);
  showMethod();
  const form = MG.el("form", {class: "outcome"}, checklistFields(order.checklist), save,
    select, method, methods, recovered,
    MG.el("textarea", {name: "note", rows: 2, placeholder: MG.t("what you found"),
      "aria-label": MG.t("note")}),
    MG.el("button", {type: "submit"}, MG.t("Record outcome")));
  save.addEventListener("click", () => change(order, {checklist: readChecklist(form)}));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {status: "done", outcome: select.value, note: form.note.value,
      checklist: readChecklist(form)};
    if (select.value === "theft_confirmed" && method.value.trim()) {
      body.outcome_method = method.value.trim();
    }
    if (recovered.value !== "") body.recovered_kwh = Number(recovered.value);
    change(order, body);
  });
  return form;
}

function findings(order) {
  const c = order.checklist;
  const checked = CHECKS.filter((name) => c[name] !== "not_checked")
    .map((name) => `${MG.label("check", name)}: ${MG.label("answer", c[name])}`);
  const extra = [c.notes, c.evidence && MG.t("evidence: {text}", {text: c.evidence})]
    .filter(Boolean);
  const all = [...checked, ...extra];
  return all.length ? MG.el("p", {class: "findings"}, all.join(" · ")) : "";
}

async function change(order, body) {
  try {
    await MG.api("PATCH", `/api/work-orders/${order.id}`, body);
  } catch (err) {
    return;  // MG.api has shown the error
  }
  await draw();
}

// Where the phone is, if the crew lets the browser say (no answer within a few seconds: none).
function position() {
  if (!navigator.geolocation) return Promise.resolve(null);
  return new Promise((resolve) => navigator.geolocation.getCurrentPosition(
    (pos) => resolve(pos.coords), () => resolve(null),
    {enableHighAccuracy: true, timeout: 5000, maximumAge: 60000}));
}

// The order's photos, and on an open order a button that opens the phone's camera.
async function photoSection(order, open) {
  const list = await MG.json(`/api/work-orders/${order.id}/photos`);
  const section = MG.el("section", {class: "order-photos"},
    MG.el("h3", {}, MG.t("Photos ({count})", {count: list.count})), MG.photoStrip(list.items));
  if (!open) return section;
  const input = MG.el("input", {type: "file", accept: "image/*", capture: "environment",
    name: "photo", "aria-label": MG.t("take or choose a photo")});
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const coords = await position();
    const query = new URLSearchParams({name: file.name.slice(0, 200)});
    if (coords) {
      query.set("lat", coords.latitude);
      query.set("lon", coords.longitude);
    }
    try {
      await MG.upload(`/api/work-orders/${order.id}/photos?${query}`, file);
    } catch (err) {
      input.value = "";
      return;  // MG.upload has shown why (too large, not a photo)
    }
    await draw();
  });
  section.append(MG.el("label", {class: "photo-input"},
    MG.el("span", {}, MG.t("Add a photo (seals, terminal block, wiring, display)")), input));
  return section;
}

async function card(order) {
  const alert = await alertSummary(order.alert_id);
  const closed = CLOSED.has(order.status);
  const title = alert ?
    MG.t("{kind} at {meter}", {kind: MG.label("kind", alert.kind), meter: alert.meter}) :
    order.alert_id;
  const node = MG.el("article", {class: `order card ${order.status}`,
    dataset: {workOrder: order.id, status: order.status}},
    MG.el("h2", {}, `#${order.id} `,
      MG.el("a", {href: `/alerts/${encodeURIComponent(order.alert_id)}`}, title),
      " ", MG.el("span", {class: "badge status"}, MG.label("status", order.status))),
    alert ? MG.el("p", {class: "summary"}, alert.summary_text ?? alert.summary) : "",
    order.instructions ? MG.el("p", {class: "instructions"}, order.instructions) : "",
    MG.el("p", {class: "muted"}, MG.t("from {name} · {time}",
      {name: order.created_by, time: MG.epochTime(order.created_at)})));
  if (order.alert_ids.length > 1) {
    node.append(MG.el("p", {class: "muted"},
      MG.t("also covers {alerts}", {alerts: order.alert_ids.slice(1).join(", ")})));
  }
  if (closed) {
    const outcome = order.outcome ? MG.label("outcome", order.outcome) : MG.t("no outcome");
    const done = [
      `${MG.label("status", order.status)}: ` + (order.outcome_method ?
        MG.t("{outcome} by {method}", {outcome, method: order.outcome_method}) : outcome),
      order.recovered_kwh != null && MG.t("{kwh} kWh recovered", {kwh: order.recovered_kwh}),
      order.outcome_note,
    ];
    node.append(MG.el("p", {class: "outcome-done"}, done.filter(Boolean).join(" · ")),
      findings(order), await photoSection(order, false));
    return node;
  }
  if (NEXT[order.status]) {
    const status = NEXT[order.status];
    const go = MG.el("button", {type: "button", class: "go"}, MG.label("next", status));
    go.addEventListener("click", () => change(order, {status}));
    node.append(go);
  }
  // What was saved so far, so the crew sees the server has it.
  node.append(findings(order), await photoSection(order, true), siteForm(order));
  return node;
}

async function draw() {
  const box = document.querySelector("#orders");
  if (!MG.can("crew", "operator", "admin")) {
    box.replaceChildren(
      MG.el("p", {class: "card"},
        MG.t("Sign in with your name and password (or crew token) to see your work orders.")));
    return;
  }
  const list = await MG.json("/api/work-orders?limit=200");
  // Open work first, then the closed ones (history), each newest first.
  const orders = [...list.items].sort((a, b) =>
    (CLOSED.has(a.status) - CLOSED.has(b.status)) || (b.created_at - a.created_at));
  const cards = await Promise.all(orders.map(card));
  box.replaceChildren(...cards);
  if (!cards.length) box.append(MG.el("p", {class: "muted"}, MG.t("no work orders for you")));
  document.querySelector("#updated").textContent = `${orders.length} · ${MG.clock()}`;
}

MG.ready.then(draw).catch((err) =>
  MG.showError(MG.t("Could not load the work orders: {error}", {error: err.message})));
