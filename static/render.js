// Rendering of transcript messages into the DOM, patched in place.
//
// Each message element is created once and updated field by field, so a streaming turn
// costs one render of its last Markdown block per animation frame (markdown.js), open
// <details> stay open, and images already loaded are never re-created.

import { updateDecisions } from "/static/approvals.js";
import { updateMarkdown } from "/static/markdown.js";

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function formatSize(bytes) {
  if (typeof bytes !== "number") return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

/** A message's time, short: `14:05` today, `Yesterday 14:05`, `Mar 3, 14:05`, `Mar 3, 2023`. */
export function shortTime(seconds, now = new Date()) {
  const date = new Date(seconds * 1000);
  const clock = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (sameDay(date, now)) return clock;
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (sameDay(date, yesterday)) return `Yesterday ${clock}`;
  if (date.getFullYear() === now.getFullYear()) return `${date.toLocaleDateString([], { month: "short", day: "numeric" })}, ${clock}`;
  return date.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

/** The full date and time, for the tooltip. */
export function fullTime(seconds) {
  return new Date(seconds * 1000).toLocaleString([], { dateStyle: "full", timeStyle: "long" });
}

/** `<time>` of Unix `seconds`: short text, the full date on hover; empty without a time. */
function updateTime(node, seconds) {
  const known = typeof seconds === "number" && Number.isFinite(seconds);
  node.hidden = !known;
  if (!known || node.dataset.seconds === String(seconds)) return;
  node.dataset.seconds = String(seconds);
  node.dateTime = new Date(seconds * 1000).toISOString();
  node.title = fullTime(seconds);
  node.textContent = shortTime(seconds);
}

const COPY_ICON = '<svg class="icon-copy" viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><rect x="9" y="9" width="12" height="12" rx="2"/><path d="M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"/></svg>'
  + '<svg class="icon-done" viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M5 12.5l4.5 4.5L19 7.5"/></svg>';

const EDIT_ICON = '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M12 20h9"/><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z"/></svg>';
const REGENERATE_ICON = '<svg viewBox="0 0 24 24" width="15" height="15" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/></svg>';

/** The row under a message: its time, a button that copies its Markdown source, and the
 * branch controls (branches.js acts on them): the versions and Edit under a user turn,
 * Regenerate under an answer (shown under the last one only). */
function messageFoot(className, role) {
  const copy = element("button", {
    type: "button", class: "icon-button message-copy", "data-action": "copy-message", "data-testid": "copy-message",
    "aria-label": "Copy message", title: "Copy message",
  });
  copy.innerHTML = COPY_ICON;
  const foot = element("div", { class: className },
    element("span", { class: "message-meta" }),
    element("time", { class: "message-time", "data-testid": "message-time", hidden: true }),
    copy);
  if (role === "user") {
    const edit = element("button", {
      type: "button", class: "icon-button message-edit-button", "data-action": "edit-message", "data-testid": "edit-message",
      "aria-label": "Edit message", title: "Edit and send again",
    });
    edit.innerHTML = EDIT_ICON;
    foot.prepend(versionSwitcher());
    foot.append(edit);
  } else {
    const regenerate = element("button", {
      type: "button", class: "button turn-action", "data-action": "regenerate", "data-testid": "regenerate",
      "aria-label": "Regenerate answer", hidden: true,
    });
    regenerate.innerHTML = REGENERATE_ICON;
    regenerate.append(element("span", { class: "turn-action-label", text: "Regenerate" }));
    foot.append(regenerate);
  }
  return foot;
}

/** "‹ 2/3 ›": the versions of a turn, shown when it has more than one. */
function versionSwitcher() {
  const button = (action, label, text) => element("button", {
    type: "button", class: "icon-button version-button", "data-action": action, "data-testid": action,
    "aria-label": label, title: label, text,
  });
  return element("div", { class: "versions", role: "group", "aria-label": "Versions of this message", "data-testid": "versions", hidden: true },
    button("previous-version", "Previous version", "‹"),
    element("span", { class: "version-label", "data-testid": "version-label", "aria-hidden": "true" }),
    element("span", { class: "visually-hidden version-spoken" }),
    button("next-version", "Next version", "›"));
}

/** The switcher of a user turn from its `alternatives`; each arrow names the run it shows. */
function updateVersions(foot, message) {
  const switcher = foot.querySelector(".versions");
  const versions = Array.isArray(message.alternatives) ? message.alternatives : [];
  const index = versions.indexOf(message.run_id);
  switcher.hidden = versions.length < 2 || index < 0;
  if (switcher.hidden) return;
  switcher.querySelector(".version-label").textContent = `${index + 1}/${versions.length}`;
  switcher.querySelector(".version-spoken").textContent = `Version ${index + 1} of ${versions.length}`;
  switcher.querySelector("[data-action=previous-version]").dataset.target = versions[index - 1] || "";
  switcher.querySelector("[data-action=next-version]").dataset.target = versions[index + 1] || "";
}

function pretty(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

/** One attachment as a chip (and an image preview for images). */
export function attachmentView(attachment, { removable = null, pending = false } = {}) {
  const isImage = typeof attachment.mime === "string" && attachment.mime.startsWith("image/");
  const chip = element("div", {
    class: `attachment${isImage ? " attachment-image" : ""}${pending ? " attachment-pending" : ""}`,
    "data-testid": "attachment",
    "data-attachment-id": attachment.id || null,
  });
  if (isImage && attachment.url) {
    chip.append(element("img", {
      src: attachment.previewUrl || attachment.url,
      alt: attachment.name || "image",
      loading: "lazy",
      "data-testid": "attachment-preview",
    }));
  }
  const label = element("span", { class: "attachment-label" },
    element("a", { href: attachment.url || null, target: "_blank", rel: "noopener", class: "attachment-name", text: attachment.name || "file" }),
    element("span", { class: "attachment-size", text: pending ? "uploading…" : formatSize(attachment.size) }));
  chip.append(label);
  if (removable) {
    chip.append(element("button", {
      type: "button", class: "icon-button attachment-remove", "aria-label": `Remove ${attachment.name}`,
      text: "×", onclick: removable,
    }));
  }
  return chip;
}

function attachmentsSignature(attachments) {
  return (attachments || []).map((item) => `${item.id}|${item.url}`).join(",");
}

/** A user turn; `update` keeps the element when nothing visible changed. */
export function updateUserMessage(node, message) {
  const signature = `${message.text}\u0000${attachmentsSignature(message.attachments)}`;
  if (node.dataset.signature !== signature) {
    node.dataset.signature = signature;
    const bubble = element("div", { class: "bubble" });
    if (message.attachments && message.attachments.length) {
      bubble.append(element("div", { class: "attachments" }, ...message.attachments.map((item) => attachmentView(item))));
    }
    if (message.text) {
      const text = element("div", { class: "user-text", "data-testid": "message-text", text: message.text });
      text.rawText = message.text;
      bubble.append(text);
    }
    // A message being edited keeps its edit box (branches.js) in place of the bubble.
    const editor = node.querySelector(".message-edit");
    bubble.hidden = editor !== null;
    node.replaceChildren(bubble, ...(editor ? [editor] : []), node.querySelector(".message-foot") || messageFoot("message-foot", "user"));
  }
  const foot = node.querySelector(".message-foot");
  foot.querySelector(".message-copy").hidden = !message.text;
  foot.querySelector(".message-edit-button").hidden = Boolean(message.pending) || !message.run_id;
  updateVersions(foot, message);
  updateTime(foot.querySelector(".message-time"), message.created_at);
}

const STATUS_LABEL = {
  running: "",
  completed: "",
  failed: "Failed",
  cancelled: "Stopped",
  interrupted: "Interrupted",
};

function statusText(message) {
  if (message.status === "failed") {
    const error = message.error || {};
    return `Failed: ${error.message || error.type || "the agent reported an error"}`;
  }
  if (message.status === "interrupted") return `Interrupted: ${message.reason || "the server stopped during this turn"}`;
  if (message.status === "cancelled") return "Stopped — the turn was cancelled; its partial output is kept.";
  return STATUS_LABEL[message.status] || "";
}

// What a running turn waits on (its last `status` record), in words.
const ACTIVITY_LABEL = {
  waiting_for_model: "Waiting for the model",
  running_tool: "Running a tool",
  waiting_for_approval: "Waiting for your approval",
  waiting_for_answer: "Waiting for your answer",
};

/** "12 s", "3 min 05 s": how long a wait has lasted. */
export function elapsedText(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  if (whole < 60) return `${whole} s`;
  return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
}

function activityText(activity, now = Date.now() / 1000) {
  const words = activity.detail || ACTIVITY_LABEL[activity.state] || "Working";
  const label = words.charAt(0).toUpperCase() + words.slice(1);
  return typeof activity.since === "number" ? `${label} · ${elapsedText(now - activity.since)}` : label;
}

// One clock for every visible wait: its elapsed time goes on while no record arrives.
let activityClock = null;
function tickActivities() {
  const shown = document.querySelectorAll(".turn-activity:not([hidden])");
  for (const node of shown) {
    if (node.activity) node.textContent = activityText(node.activity);
  }
  if (!shown.length) {
    clearInterval(activityClock);
    activityClock = null;
  }
}

function updateActivity(node, message) {
  const activity = message.status === "running" ? message.activity : null;
  node.hidden = !activity;
  node.activity = activity || null;
  if (!activity) {
    delete node.dataset.state;
    return;
  }
  node.dataset.state = activity.state;
  node.textContent = activityText(activity);
  if (activityClock === null) activityClock = setInterval(tickActivities, 1000);
}

function toolCard(call) {
  const card = element("details", { class: "tool-card", "data-testid": "tool-card", "data-call-id": call.id });
  const summary = element("summary", {},
    element("span", { class: "tool-icon", "aria-hidden": "true" }),
    element("span", { class: "tool-name", "data-testid": "tool-name" }),
    element("span", { class: "tool-status", "data-testid": "tool-status" }));
  const body = element("div", { class: "tool-body" },
    element("div", { class: "tool-label", text: "Arguments" }),
    element("pre", { class: "tool-args", "data-testid": "tool-args" }),
    element("div", { class: "tool-label tool-result-label", text: "Result" }),
    element("pre", { class: "tool-result", "data-testid": "tool-result" }));
  card.append(summary, body);
  return card;
}

function updateToolCard(card, call) {
  const signature = JSON.stringify([call.name, call.args, call.status, call.result, call.duration_ms]);
  if (card.dataset.signature === signature) return;
  card.dataset.signature = signature;
  card.dataset.status = call.status;
  card.querySelector(".tool-name").textContent = call.name || "tool";
  const duration = typeof call.duration_ms === "number" ? ` · ${call.duration_ms} ms` : "";
  const label = { running: "running", done: "done", error: "error" }[call.status] || call.status;
  card.querySelector(".tool-status").textContent = call.status === "running" ? "running…" : `${label}${duration}`;
  card.querySelector(".tool-args").textContent = pretty(call.args);
  const hasResult = call.result !== null && call.result !== undefined;
  card.querySelector(".tool-result").textContent = hasResult ? pretty(call.result) : "";
  card.querySelector(".tool-result").hidden = !hasResult;
  card.querySelector(".tool-result-label").hidden = !hasResult;
}

/** `text` in a plain-text element; a text that grew only has its new end appended. */
function updatePlainText(node, text) {
  const shown = node.rawText || "";
  if (shown === text) return;
  if (shown && text.length > shown.length && text.startsWith(shown.slice(-64), shown.length - Math.min(64, shown.length))
      && node.lastChild instanceof Text) {
    node.lastChild.appendData(text.slice(shown.length));
  } else {
    node.textContent = text;
  }
  node.rawText = text;
}

/** Build the fixed skeleton of an assistant turn. */
function assistantSkeleton(node) {
  const reasoning = element("details", { class: "reasoning", "data-testid": "reasoning", hidden: true },
    element("summary", {}, element("span", { class: "reasoning-title", text: "Reasoning" })),
    element("div", { class: "reasoning-text", "data-testid": "reasoning-text" }));
  const tools = element("div", { class: "tools", "data-testid": "tool-list" });
  const text = element("div", { class: "markdown", "data-testid": "message-text" });
  const status = element("div", { class: "turn-status", "data-testid": "turn-status", role: "status" });
  const activity = element("div", { class: "turn-activity", "data-testid": "turn-activity", hidden: true });
  node.append(element("div", { class: "avatar", "aria-hidden": "true", text: "H" }),
    element("div", { class: "turn-body" }, reasoning, tools, text, activity, status, messageFoot("turn-meta", "assistant")));
}

/** An assistant turn: reasoning, tool cards in order, markdown text, status line. */
export function updateAssistantMessage(node, message) {
  if (!node.firstChild) assistantSkeleton(node);
  node.dataset.status = message.status || "";
  node.dataset.cursor = message.cursor || "";

  const reasoning = node.querySelector(".reasoning");
  const reasoningText = reasoning.querySelector(".reasoning-text");
  updatePlainText(reasoningText, message.reasoning || "");
  reasoning.hidden = !message.reasoning;
  const thinking = message.status === "running" && !message.text && !(message.tool_calls || []).length;
  reasoning.querySelector(".reasoning-title").textContent = thinking ? "Thinking…" : "Reasoning";
  reasoning.classList.toggle("is-live", thinking);

  const tools = node.querySelector(".tools");
  const cards = new Map([...tools.children].map((card) => [card.dataset.callId, card]));
  (message.tool_calls || []).forEach((call, index) => {
    let card = cards.get(String(call.id));
    if (!card) card = toolCard(call);
    if (tools.children[index] !== card) tools.insertBefore(card, tools.children[index] || null);
    updateToolCard(card, call);
  });
  while (tools.children.length > (message.tool_calls || []).length) tools.lastChild.remove();
  updateDecisions(node.querySelector(".turn-body"), message);

  const text = node.querySelector(".markdown");
  const source = message.text || "";
  const streaming = message.status === "running";
  // The source beside its rendering, set in the same step: copy uses it, and tests compare
  // it with the journal. A property, not an attribute: an attribute would copy the whole
  // answer into the DOM on every frame.
  text.rawText = source;
  updateMarkdown(text, source, { streaming });
  text.classList.toggle("is-streaming", streaming);

  updateActivity(node.querySelector(".turn-activity"), message);

  const status = node.querySelector(".turn-status");
  const label = statusText(message);
  status.textContent = label;
  status.dataset.status = message.status || "";
  status.hidden = !label;

  const foot = node.querySelector(".turn-meta");
  const parts = [];
  if (message.agent && message.agent.name) parts.push(message.agent.model && message.agent.model !== message.agent.name ? `${message.agent.name} · ${message.agent.model}` : message.agent.name);
  if (message.usage && typeof message.usage.output_tokens === "number") parts.push(`${message.usage.output_tokens} tokens`);
  const meta = foot.querySelector(".message-meta");
  const metaText = parts.join(" · ");
  if (meta.textContent !== metaText) meta.textContent = metaText;
  foot.querySelector(".message-copy").hidden = !source;
  updateTime(foot.querySelector(".message-time"), message.finished_at ?? message.created_at);
}
