// Approval and question cards: what a waiting run asks a person, answered from any viewer.
//
// Drawn from the assistant message's `approvals` and `questions` (folded by fold.js) and
// patched in place like the rest of the turn, so a half-typed answer survives every frame.
// A click only sends the decision: the card turns resolved when the settling record
// arrives on the stream, which is how every other open viewer learns it too.

import { api } from "/static/api.js";

const APPROVAL_LABELS = {
  once: "Allow once",
  session: "Allow for this session",
  always: "Always allow",
  deny: "Deny",
};
const APPROVAL_OUTCOMES = {
  once: "Allowed once",
  session: "Allowed for this session",
  always: "Always allowed",
  deny: "Denied",
};

function node(tag, attributes = {}, text = null) {
  const created = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") created.className = value;
    else created.setAttribute(name, value === true ? "" : value);
  }
  if (text !== null) created.textContent = text;
  return created;
}

const approvalLabel = (choice) => APPROVAL_LABELS[choice] || `Choose ${choice}`;

function approvalOutcome(item) {
  if (item.status === "expired") return "Not decided: the server stopped while this waited.";
  const decided = APPROVAL_OUTCOMES[item.choice] || `Chose ${item.choice}`;
  if (item.by === "timeout") return `${decided}: nobody answered in time.`;
  if (item.by === "cancel") return `${decided}: the turn was stopped.`;
  return `${decided}.`;
}

function questionOutcome(item) {
  if (item.status === "expired") return "Not answered: the server stopped while this waited.";
  if (item.by === "timeout") return "Not answered in time: the agent goes on without an answer.";
  if (item.by === "cancel") return "Not answered: the turn was stopped.";
  return `Answered: ${item.answer}`;
}

/** Send a decision; the stream, not this answer, settles the card. */
async function send(card, path, body) {
  const error = card.querySelector(".decision-error");
  card.dataset.sending = "true";
  for (const control of card.querySelectorAll("button, input")) control.disabled = true;
  error.hidden = true;
  try {
    await api("POST", path, body);
  } catch (failure) {
    // 409: settled elsewhere already; its record is on its way to this viewer as well.
    if (failure.status !== 409) {
      error.textContent = `Could not send: ${failure.message}`;
      error.hidden = false;
      delete card.dataset.sending;
      for (const control of card.querySelectorAll("button, input")) control.disabled = card.dataset.status !== "pending";
    }
  }
}

function approvalCard(runId, item) {
  const card = node("div", {
    class: "decision-card approval-card", "data-testid": "approval-card", "data-approval-id": item.id,
    role: "group", "aria-label": `Approval needed: ${item.title || "the agent asks"}`,
  });
  const head = node("div", { class: "decision-head" });
  head.append(node("span", { class: "decision-kind" }, "Approval needed"),
    node("span", { class: "decision-title", "data-testid": "approval-title" }, item.title || ""));
  const detail = node("pre", { class: "decision-detail", "data-testid": "approval-detail" }, item.detail || "");
  detail.hidden = !item.detail;
  const choices = node("div", { class: "decision-choices" });
  for (const choice of item.choices) {
    const button = node("button", {
      type: "button", class: choice === "deny" ? "decision-choice is-deny" : "decision-choice",
      "data-choice": choice, "data-testid": "approval-choice", "aria-label": approvalLabel(choice),
    }, approvalLabel(choice));
    button.addEventListener("click", () => send(card, `/api/runs/${runId}/approvals/${item.id}`, { choice }));
    choices.append(button);
  }
  card.append(head, detail, choices, outcomeLine("approval-outcome"), errorLine());
  return card;
}

function questionCard(runId, item) {
  const card = node("div", {
    class: "decision-card question-card", "data-testid": "question-card", "data-question-id": item.id,
    role: "group", "aria-label": "The agent asks a question",
  });
  const head = node("div", { class: "decision-head" });
  head.append(node("span", { class: "decision-kind" }, "Question"));
  card.append(head, node("p", { class: "decision-question", "data-testid": "question-text" }, item.question || ""));
  const path = `/api/runs/${runId}/questions/${item.id}`;
  if (item.choices.length) {
    const choices = node("div", { class: "decision-choices" });
    for (const choice of item.choices) {
      const button = node("button", {
        type: "button", class: "decision-choice", "data-choice": choice, "data-testid": "question-choice",
        "aria-label": `Answer: ${choice}`,
      }, choice);
      button.addEventListener("click", () => send(card, path, { answer: choice }));
      choices.append(button);
    }
    card.append(choices);
  }
  const form = node("form", { class: "decision-answer" });
  const input = node("input", {
    type: "text", class: "decision-input", maxlength: "4000", "data-testid": "question-input",
    "aria-label": "Your answer", placeholder: item.choices.length ? "Or type another answer…" : "Type your answer…",
  });
  const submit = node("button", { type: "submit", class: "decision-choice", "data-testid": "question-send", "aria-label": "Send answer" }, "Send");
  form.append(input, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) send(card, path, { answer: input.value });
  });
  card.append(form, outcomeLine("question-outcome"), errorLine());
  return card;
}

const outcomeLine = (testid) => node("div", { class: "decision-outcome", "data-testid": testid, role: "status" });
const errorLine = () => node("div", { class: "decision-error", role: "alert", hidden: true });

function settle(card, item, outcome) {
  const signature = `${item.status}|${item.by}|${item.choice ?? item.answer}`;
  if (card.dataset.signature === signature) return;
  card.dataset.signature = signature;
  card.dataset.status = item.status;
  const pending = item.status === "pending";
  if (!pending) delete card.dataset.sending;
  for (const control of card.querySelectorAll("button, input")) control.disabled = !pending || card.dataset.sending === "true";
  for (const button of card.querySelectorAll("[data-choice]")) {
    button.classList.toggle("is-chosen", !pending && button.dataset.choice === (item.choice ?? item.answer));
  }
  const form = card.querySelector(".decision-answer");
  if (form) form.hidden = !pending;
  const line = card.querySelector(".decision-outcome");
  line.textContent = pending ? "" : outcome(item);
  line.hidden = pending;
  if (!pending) card.querySelector(".decision-error").hidden = true;
}

/** Draw the turn's approval and question cards into `body` (after its tool cards). */
export function updateDecisions(body, message) {
  const items = [
    ...(message.approvals || []).map((item) => ["approval", item]),
    ...(message.questions || []).map((item) => ["question", item]),
  ];
  let box = body.querySelector(":scope > .decisions");
  if (!items.length) {
    box?.remove();
    return;
  }
  if (!box) {
    box = node("div", { class: "decisions", "data-testid": "decision-list" });
    const tools = body.querySelector(":scope > .tools");
    if (tools) tools.after(box);
    else body.prepend(box);
  }
  const cards = new Map([...box.children].map((card) => [`${card.dataset.approvalId ? "approval" : "question"}:${card.dataset.approvalId || card.dataset.questionId}`, card]));
  items.forEach(([kind, item], index) => {
    const key = `${kind}:${item.id}`;
    let card = cards.get(key);
    if (!card) card = kind === "approval" ? approvalCard(message.run_id, item) : questionCard(message.run_id, item);
    cards.delete(key);
    if (box.children[index] !== card) box.insertBefore(card, box.children[index] || null);
    settle(card, item, kind === "approval" ? approvalOutcome : questionOutcome);
  });
  for (const stale of cards.values()) stale.remove();
}
