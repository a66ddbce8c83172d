// Rendering of transcript messages into the DOM, patched in place.
//
// Each message element is created once and updated field by field, so a streaming turn
// costs one markdown render per animation frame, open <details> stay open, and images
// already loaded are never re-created.

import { marked } from "/vendor/marked.js";
import DOMPurify from "/vendor/purify.js";

marked.setOptions({ gfm: true, breaks: false });
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Markdown source -> sanitized HTML. */
export function renderMarkdown(source) {
  return DOMPurify.sanitize(marked.parse(source || ""), { USE_PROFILES: { html: true } });
}

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

function formatTime(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
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
  if (node.dataset.signature === signature) return;
  node.dataset.signature = signature;
  node.replaceChildren();
  const bubble = element("div", { class: "bubble" });
  if (message.attachments && message.attachments.length) {
    bubble.append(element("div", { class: "attachments" }, ...message.attachments.map((item) => attachmentView(item))));
  }
  if (message.text) bubble.append(element("div", { class: "user-text", "data-testid": "message-text", text: message.text }));
  node.append(bubble);
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

/** Build the fixed skeleton of an assistant turn. */
function assistantSkeleton(node) {
  const reasoning = element("details", { class: "reasoning", "data-testid": "reasoning", hidden: true },
    element("summary", {}, element("span", { class: "reasoning-title", text: "Reasoning" })),
    element("div", { class: "reasoning-text", "data-testid": "reasoning-text" }));
  const tools = element("div", { class: "tools", "data-testid": "tool-list" });
  const text = element("div", { class: "markdown", "data-testid": "message-text" });
  const status = element("div", { class: "turn-status", "data-testid": "turn-status", role: "status" });
  const meta = element("div", { class: "turn-meta" });
  node.append(element("div", { class: "avatar", "aria-hidden": "true", text: "H" }),
    element("div", { class: "turn-body" }, reasoning, tools, text, status, meta));
}

/** An assistant turn: reasoning, tool cards in order, markdown text, status line. */
export function updateAssistantMessage(node, message) {
  if (!node.firstChild) assistantSkeleton(node);
  node.dataset.status = message.status || "";
  node.dataset.cursor = message.cursor || "";

  const reasoning = node.querySelector(".reasoning");
  const reasoningText = reasoning.querySelector(".reasoning-text");
  if (reasoningText.dataset.raw !== message.reasoning) {
    reasoningText.dataset.raw = message.reasoning || "";
    reasoningText.textContent = message.reasoning || "";
  }
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

  const text = node.querySelector(".markdown");
  if (text.dataset.raw !== (message.text || "") || !text.dataset.rendered) {
    text.dataset.raw = message.text || "";
    text.dataset.rendered = "1";
    text.innerHTML = renderMarkdown(message.text);
  }
  text.classList.toggle("is-streaming", message.status === "running");

  const status = node.querySelector(".turn-status");
  const label = statusText(message);
  status.textContent = label;
  status.dataset.status = message.status || "";
  status.hidden = !label;

  const meta = node.querySelector(".turn-meta");
  const parts = [];
  if (message.agent && message.agent.name) parts.push(message.agent.model && message.agent.model !== message.agent.name ? `${message.agent.name} · ${message.agent.model}` : message.agent.name);
  if (message.usage && typeof message.usage.output_tokens === "number") parts.push(`${message.usage.output_tokens} tokens`);
  if (message.finished_at) parts.push(formatTime(message.finished_at));
  meta.textContent = parts.join(" · ");
}
