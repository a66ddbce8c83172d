// Markdown into sanitized DOM: highlighted code blocks with a copy button, and an answer
// that is still streaming rendered block by block.
//
// A growing answer only ever changes at its end, and a Markdown block that another block
// follows is finished: text appended later cannot change how it renders (the exceptions,
// reference links defined further down and raw HTML split over blocks, are mended by one
// full render when the turn ends). So each container remembers how much of its source is
// rendered for good; a frame lexes only the rest, keeps the blocks that became complete,
// and re-renders just the last, still-growing one. The cost of a frame follows the size of
// the last block, not the size of the answer.

import hljs from "/vendor/highlight.js";
import { Marked } from "/vendor/marked.js";
import DOMPurify from "/vendor/purify.js";

// Highlighting costs time linear in the code on every render; past these sizes it stays plain.
const HIGHLIGHT_MAX_CHARS = 100_000;
// Guessing the language runs every grammar over the code: only for finished blocks, and small ones.
const DETECT_MAX_CHARS = 20_000;
// This much of the end of the finished part is checked before a frame builds on it.
const CHECK_CHARS = 64;
// Finished blocks are grouped this many to a wrapper: laying out a long answer then visits
// a few dozen boxes per frame, not thousands (a cost that would grow with the answer).
const CHUNK_BLOCKS = 50;

let detectLanguage = true; // off while rendering a block that is still growing

const escapes = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => escapes[c]);

function highlighted(code, lang) {
  const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
  if (code.length <= HIGHLIGHT_MAX_CHARS && language && hljs.getLanguage(language)) {
    return { html: hljs.highlight(code, { language, ignoreIllegals: true }).value, language };
  }
  if (!language && detectLanguage && code.length <= DETECT_MAX_CHARS) {
    const guess = hljs.highlightAuto(code);
    if (guess.language && guess.relevance >= 5) return { html: guess.value, language: guess.language };
  }
  return { html: escapeHtml(code), language };
}

const markdown = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    code({ text, lang }) {
      const { html, language } = highlighted(text, lang);
      const name = language ? ` data-language="${escapeHtml(language)}"` : "";
      return `<pre><code class="hljs"${name}>${html}</code></pre>\n`;
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Markdown source -> sanitized HTML (the whole text at once). */
export function renderMarkdown(source) {
  detectLanguage = true;
  return DOMPurify.sanitize(markdown.parse(source || ""), { USE_PROFILES: { html: true } });
}

const COPY_ICON = '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><rect x="9" y="9" width="12" height="12" rx="2"/><path d="M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"/></svg>';

/** Sanitized HTML -> nodes, each code block framed with its language and a copy button. */
function toNodes(html) {
  const template = document.createElement("template");
  template.innerHTML = DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
  for (const pre of template.content.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const language = code.dataset.language || "";
    const frame = document.createElement("div");
    frame.className = "code-block";
    frame.dataset.testid = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.className = "code-language";
    label.textContent = language || "text";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-button";
    button.dataset.action = "copy-code";
    button.dataset.testid = "copy-code";
    button.setAttribute("aria-label", language ? `Copy ${language} code` : "Copy code");
    button.title = "Copy code";
    button.innerHTML = `${COPY_ICON}<span class="copy-label">Copy</span>`;
    head.append(label, button);
    pre.replaceWith(frame);
    frame.append(head, pre);
  }
  return [...template.content.childNodes];
}

const views = new WeakMap(); // container -> {source, done, live: [nodes], final, chunk, chunkBlocks}

const newView = (source, final) => ({ source, done: 0, live: [], final, chunk: null, chunkBlocks: 0 });

/** Append finished nodes to the last chunk of `container`, opening a new one when it is full. */
function appendFinished(container, view, nodes) {
  for (const node of nodes) {
    const block = node.nodeType === Node.ELEMENT_NODE;
    if (view.chunk === null || (block && view.chunkBlocks >= CHUNK_BLOCKS)) {
      view.chunk = document.createElement("div");
      view.chunk.className = "md-chunk";
      view.chunkBlocks = 0;
      container.append(view.chunk);
    }
    view.chunk.append(node);
    if (block) view.chunkBlocks += 1;
  }
}

function renderWhole(container, source, final) {
  detectLanguage = final;
  const nodes = toNodes(markdown.parse(source));
  const view = newView(source, final);
  container.replaceChildren();
  if (final) appendFinished(container, view, nodes);
  else container.append(...(view.live = nodes));
  views.set(container, view);
}

/** True when `source` continues what `view` shows (the finished part is still its start). */
function continues(view, source) {
  const from = Math.max(0, view.done - CHECK_CHARS);
  return !view.final && source.length >= view.source.length && source.startsWith(view.source.slice(from, view.done), from);
}

/**
 * Show Markdown `source` in `container`. While `streaming`, `source` is expected to grow
 * at its end: finished blocks are rendered once, the last block on every call. Otherwise
 * the whole text is rendered once, and not again while it stays the same.
 */
export function updateMarkdown(container, source, { streaming = false } = {}) {
  source = source || "";
  let view = views.get(container);
  if (view && view.source === source && view.final === !streaming) return;
  if (!streaming) return renderWhole(container, source, true);
  if (!view || !continues(view, source)) {
    container.replaceChildren();
    view = newView("", false);
    views.set(container, view);
  }
  // The lexer turns \r\n into \n, which would shift every offset after it.
  if (source.includes("\r", view.done)) return renderWhole(container, source, false);
  advance(container, view, source);
}

function advance(container, view, source) {
  const tokens = markdown.lexer(source.slice(view.done));
  let last = tokens.length - 1;
  while (last > 0 && tokens[last].type === "space") last -= 1;
  for (const node of view.live) node.remove();
  if (last > 0) {
    const finished = tokens.slice(0, last);
    detectLanguage = true;
    appendFinished(container, view, toNodes(markdown.parser(finished)));
    view.done += finished.reduce((total, token) => total + token.raw.length, 0);
  }
  detectLanguage = false;
  view.live = toNodes(markdown.parser(tokens.slice(Math.max(last, 0))));
  container.append(...view.live);
  view.source = source;
}
