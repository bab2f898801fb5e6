// The crew page: my work orders, "on my way", and the outcome form that closes an order.
"use strict";

const OUTCOMES = [
  ["theft_confirmed", "Theft confirmed"], ["meter_fault", "Meter fault"],
  ["no_fault_found", "No fault found"], ["no_access", "No access"],
];
const CLOSED = new Set(["done", "cancelled"]);
const summaries = new Map();

async function alertSummary(id) {
  if (!summaries.has(id)) {
    summaries.set(id, MG.json(`/api/alerts/${encodeURIComponent(id)}`).catch(() => null));
  }
  return summaries.get(id);
}

function outcomeForm(order) {
  const select = MG.el("select", {name: "outcome", required: "", "aria-label": "outcome"},
    MG.el("option", {value: ""}, "choose the outcome…"),
    ...OUTCOMES.map(([value, label]) => MG.el("option", {value}, label)));
  const form = MG.el("form", {class: "outcome"}, select,
    MG.el("textarea", {name: "note", rows: 2, placeholder: "what you found (seals, wiring…)",
      "aria-label": "note"}),
    MG.el("button", {type: "submit"}, "Record outcome"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    change(order, {status: "done", outcome: form.outcome.value, note: form.note.value});
  });
  return form;
}

async function change(order, body) {
  try {
    await MG.api("PATCH", `/api/work-orders/${order.id}`, body);
  } catch (err) {
    return;  // MG.api has shown the error
  }
  await draw();
}

async function card(order) {
  const alert = await alertSummary(order.alert_id);
  const closed = CLOSED.has(order.status);
  const title = alert ? `${alert.kind} at ${alert.meter}` : order.alert_id;
  const node = MG.el("article", {class: `order card ${order.status}`,
    dataset: {workOrder: order.id, status: order.status}},
    MG.el("h2", {}, `#${order.id} `,
      MG.el("a", {href: `/alerts/${encodeURIComponent(order.alert_id)}`}, title),
      " ", MG.el("span", {class: "badge status"}, order.status)),
    alert ? MG.el("p", {class: "summary"}, alert.summary) : "",
    order.instructions ? MG.el("p", {class: "instructions"}, order.instructions) : "",
    MG.el("p", {class: "muted"}, `from ${order.created_by} · ${MG.epochTime(order.created_at)}`));
  if (closed) {
    const note = order.outcome_note ? ` · ${order.outcome_note}` : "";
    node.append(MG.el("p", {class: "outcome-done"},
      `${order.status}: ${order.outcome ?? "no outcome"}${note}`));
    return node;
  }
  if (order.status === "open") {
    const go = MG.el("button", {type: "button", class: "go"}, "On my way");
    go.addEventListener("click", () => change(order, {status: "dispatched"}));
    node.append(go);
  }
  node.append(outcomeForm(order));
  return node;
}

async function draw() {
  const box = document.querySelector("#orders");
  if (!MG.can("crew", "operator", "admin")) {
    box.replaceChildren(
      MG.el("p", {class: "card"}, "Sign in with your crew token to see your work orders."));
    return;
  }
  const list = await MG.json("/api/work-orders?limit=200");
  // Open work first, then the closed ones (history), each newest first.
  const orders = [...list.items].sort((a, b) =>
    (CLOSED.has(a.status) - CLOSED.has(b.status)) || (b.created_at - a.created_at));
  const cards = await Promise.all(orders.map(card));
  box.replaceChildren(...cards);
  if (!cards.length) box.append(MG.el("p", {class: "muted"}, "no work orders for you"));
  document.querySelector("#updated").textContent =
    `${orders.length} · ${new Date().toLocaleTimeString()}`;
}

MG.ready.then(draw).catch((err) => MG.showError(`Could not load the work orders: ${err.message}`));
