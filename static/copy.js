// Copy buttons: a code block's code alone, or a message's Markdown source.
//
// One delegated listener serves every button, including those of blocks re-rendered
// while an answer streams. The async Clipboard API needs a secure context (https or
// localhost); opened over plain http on a LAN the page falls back to a hidden textarea
// and the `copy` command.

import { announce } from "/static/state.js";

const COPIED_MS = 1500;

/** Put `text` on the clipboard; resolves true when it got there. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Refused (no permission, page not focused): try the older way below.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

/** What a copy button copies: the code of its block, or the source of its message. */
function sourceFor(button) {
  if (button.dataset.action === "copy-code") {
    return button.closest(".code-block")?.querySelector("pre code")?.textContent ?? null;
  }
  const text = button.closest("[data-message-id]")?.querySelector("[data-testid=message-text]");
  return text && typeof text.rawText === "string" ? text.rawText : null;
}

/** Handle clicks on every copy button inside `root`. */
export function wireCopyButtons(root) {
  root.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action='copy-code'], button[data-action='copy-message']");
    if (!button || !root.contains(button)) return;
    const text = sourceFor(button);
    if (text === null) return;
    const copied = await copyText(text);
    const label = button.querySelector(".copy-label");
    button.dataset.copied = copied ? "true" : "false";
    if (label) label.textContent = copied ? "Copied" : "Copy failed";
    announce(copied ? "Copied to the clipboard." : "Could not copy: the browser refused.");
    clearTimeout(button.copiedTimer);
    button.copiedTimer = setTimeout(() => {
      delete button.dataset.copied;
      if (label) label.textContent = "Copy";
    }, COPIED_MS);
  });
}
