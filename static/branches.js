// Branches of a conversation (docs/api.md, "Branches"): regenerate (or retry) the last
// answer, edit a message and send it again, and page between the versions of a turn.
//
// A new version is only asked for here (a run that `replaces` another); the page changes
// when its `run.started` arrives on the session stream, where the fold drops the replaced
// turns, so this tab and every other device show the same thing. render.js draws the
// controls under each message; this module decides which are usable and acts on them.

import { api } from "/static/api.js";
import { attachmentView, element } from "/static/render.js";
import { showBranch } from "/static/session.js";
import { runChoice } from "/static/settings.js";
import { announce, on, showNotice, state, ui } from "/static/state.js";

// A turn that ended this way is offered again as "Retry" rather than "Regenerate".
const RETRY_STATUSES = new Set(["failed", "cancelled", "interrupted"]);

let starting = false; // a regenerate or an edit is being sent
let awaited = null; // the run a sent version started, until the stream brings it

function busy() {
  if (awaited !== null && state.fold && !state.fold.runs.has(awaited)) return true;
  awaited = null;
  return starting || state.sending || state.pending !== null || Boolean(state.fold && state.fold.activeRun);
}

/** The server's messages of the turn a node belongs to: `[user, assistant]`. */
function turnOf(node) {
  const runId = node.closest("[data-run-id]")?.dataset.runId;
  return runId && state.fold ? state.fold.messagesOf(runId) : [];
}

// ------------------------------------------------------------------ which controls are usable

/** After every render: Regenerate under the last answer only, nothing usable mid-turn. */
export function updateBranchControls() {
  const idle = !busy();
  const latest = state.branch === null;
  const answers = ui.messages.querySelectorAll(".message-assistant");
  const last = answers[answers.length - 1];
  for (const answer of answers) {
    const button = answer.querySelector("[data-action=regenerate]");
    const shown = answer === last && idle && latest && answer.dataset.status !== "running";
    if (button.hidden !== !shown) button.hidden = !shown;
    if (!shown) continue;
    const retry = RETRY_STATUSES.has(answer.dataset.status);
    const label = retry ? "Retry answer" : "Regenerate answer";
    if (button.getAttribute("aria-label") !== label) {
      button.setAttribute("aria-label", label);
      button.querySelector(".turn-action-label").textContent = retry ? "Retry" : "Regenerate";
    }
  }
  for (const button of ui.messages.querySelectorAll("[data-action=edit-message]")) {
    setDisabled(button, !idle || !latest);
    const title = latest ? "Edit and send again" : "Show the latest version to edit";
    if (button.title !== title) button.title = title;
  }
  for (const button of ui.messages.querySelectorAll(".version-button")) setDisabled(button, !idle || !button.dataset.target);
  for (const form of ui.messages.querySelectorAll(".message-edit")) updateEditForm(form);
}

function setDisabled(button, disabled) {
  if (button.disabled !== disabled) button.disabled = disabled;
}

function explainRefusal(error, action) {
  if (error.status === 409) {
    showNotice("A turn is already running in this chat: wait for it to end, or stop it.");
  } else if (error.status === 400 && error.body?.error?.code === "invalid_replaces") {
    showNotice(`This turn changed elsewhere and cannot be ${action} any more; showing the latest.`);
    showBranch(null);
  } else {
    showNotice(`Could not ${action === "sent again" ? "send" : "regenerate"}: ${error.message}`);
  }
}

/** POST a run that replaces `replaces`; true once the server started it. */
async function startVersion(body, action) {
  const sessionId = state.sessionId;
  starting = true;
  updateBranchControls();
  try {
    const started = await api("POST", `/api/sessions/${sessionId}/runs`, { ...body, ...runChoice() });
    if (sessionId === state.sessionId) awaited = started.run_id;
    return true;
  } catch (error) {
    if (sessionId === state.sessionId) explainRefusal(error, action);
    return false;
  } finally {
    starting = false;
    updateBranchControls();
  }
}

// ------------------------------------------------------------------ regenerate

async function regenerate(button) {
  const [user] = turnOf(button);
  if (!user || busy()) return;
  // No text: the server sends the replaced turn's text and attachments again.
  if (await startVersion({ replaces: user.run_id }, "regenerated")) announce("Answering again…");
}

// ------------------------------------------------------------------ edit and send again

function startEdit(button) {
  const node = button.closest(".message-user");
  const [user] = turnOf(node);
  if (!node || !user || button.disabled) return;
  let form = node.querySelector(".message-edit");
  if (!form) {
    const input = element("textarea", {
      class: "edit-input", "aria-label": "Edited message", "data-testid": "edit-input",
      rows: String(Math.min(10, Math.max(2, (user.text || "").split("\n").length))),
    });
    input.value = user.text || "";
    const attachments = (user.attachments || []).filter((item) => item.id);
    form = element("form", { class: "message-edit", "data-testid": "edit-form" },
      attachments.length ? element("div", { class: "attachments" }, ...attachments.map((item) => attachmentView(item))) : null,
      input,
      element("div", { class: "edit-actions" },
        element("button", { type: "button", class: "button", "data-action": "cancel-edit", "data-testid": "edit-cancel", "aria-label": "Cancel edit", text: "Cancel" }),
        element("button", { type: "submit", class: "button button-primary", "data-testid": "edit-send", "aria-label": "Send edited message", text: "Send" })));
    form.attachmentIds = attachments.map((item) => item.id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sendEdit(form);
    });
    form.addEventListener("keydown", (event) => onEditKey(event, form));
    input.addEventListener("input", () => updateEditForm(form));
    node.querySelector(".bubble").hidden = true;
    node.querySelector(".message-foot").hidden = true;
    node.insertBefore(form, node.querySelector(".message-foot"));
    updateEditForm(form);
  }
  const input = form.querySelector(".edit-input");
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

function updateEditForm(form) {
  const empty = !form.querySelector(".edit-input").value.trim() && !form.attachmentIds.length;
  setDisabled(form.querySelector("[data-testid=edit-send]"), form.dataset.sending === "true" || empty || busy());
}

/** Escape leaves the edit (and only that: the page's Escape-to-stop sees it was used). */
function onEditKey(event, form) {
  if (event.isComposing) return;
  if (event.key === "Escape") {
    event.preventDefault();
    cancelEdit(form);
  } else if (event.key === "Enter" && event.target.matches(".edit-input")
             && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey) {
    event.preventDefault();
    sendEdit(form);
  }
}

function cancelEdit(form) {
  const node = form.closest(".message-user");
  form.remove();
  if (!node) return;
  node.querySelector(".bubble").hidden = false;
  node.querySelector(".message-foot").hidden = false;
  node.querySelector("[data-action=edit-message]")?.focus();
}

async function sendEdit(form) {
  if (form.dataset.sending === "true") return;
  const text = form.querySelector(".edit-input").value;
  if (!text.trim() && !form.attachmentIds.length) return;
  if (busy()) {
    showNotice("A turn is running: wait for it to end, or stop it, before sending the edit.");
    return;
  }
  const [user] = turnOf(form);
  if (!user) return;
  form.dataset.sending = "true";
  form.querySelector(".edit-input").readOnly = true;
  // The edited turn and those after it stay until the new run's run.started replaces them.
  const started = await startVersion({ text, replaces: user.run_id, attachments: form.attachmentIds }, "sent again");
  if (started) return;
  delete form.dataset.sending;
  form.querySelector(".edit-input").readOnly = false;
  updateEditForm(form);
}

// ------------------------------------------------------------------ versions

async function switchVersion(button) {
  const target = button.dataset.target;
  const action = button.dataset.action;
  if (!target || button.disabled || busy()) return;
  await showBranch(target);
  const node = ui.messages.querySelector(`.message-user[data-run-id="${CSS.escape(target)}"]`);
  if (!node) return;
  const again = node.querySelector(`[data-action=${action}]`);
  // At the first or last version the pressed arrow is disabled: keep focus in the switcher.
  (again && !again.disabled ? again : node.querySelector(".version-button:not(:disabled)"))?.focus();
  announce(node.querySelector(".version-spoken")?.textContent || "");
}

// ------------------------------------------------------------------ wiring

/** One delegated listener for the branch controls of every message. */
export function wireBranches() {
  on("session:opened", () => {
    awaited = null;
  });
  on("session:rendered", updateBranchControls);
  ui.messages.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !ui.messages.contains(button)) return;
    const action = button.dataset.action;
    if (action === "regenerate") regenerate(button);
    else if (action === "edit-message") startEdit(button);
    else if (action === "cancel-edit") cancelEdit(button.closest(".message-edit"));
    else if (action === "previous-version" || action === "next-version") switchVersion(button);
  });
}
