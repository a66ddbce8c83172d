// The sidebar's search: titles, user messages and answers of every chat
// (`GET /api/search`). While the box holds text its results take the place of the
// session list; Escape or an empty box brings the list back.
//
// Only the newest query's answer is ever shown: a new keystroke aborts the request before
// it, and an answer that still arrives for an older query is dropped. Server text is put
// in the page as text nodes only (the matches inside <mark>), never as HTML.

import { api } from "/static/api.js";
import { revealRun } from "/static/pages.js";
import { element } from "/static/render.js";
import { navigate, openSession } from "/static/session.js";
import { state, ui } from "/static/state.js";

const SEARCH_DELAY_MS = 150;
const SEARCH_LIMIT = 20;

let timer = null;
let controller = null;
let generation = 0; // bumped by every new query and by ending the search

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** `text` as text nodes, every case-insensitive occurrence of `query` in a <mark>. */
export function highlighted(text, query) {
  const fragment = document.createDocumentFragment();
  const pattern = new RegExp(escapeRegExp(query), "giu");
  let start = 0;
  for (const match of text.matchAll(pattern)) {
    if (match[0] === "") break;
    if (match.index > start) fragment.append(text.slice(start, match.index));
    fragment.append(element("mark", { text: match[0] }));
    start = match.index + match[0].length;
  }
  if (start < text.length) fragment.append(text.slice(start));
  return fragment;
}

function showPane(searching) {
  ui.searchPane.hidden = !searching;
  ui.sessionBrowse.hidden = searching;
}

function setStatus(text, kind = "") {
  ui.searchStatus.textContent = text;
  ui.searchStatus.dataset.kind = kind;
}

/** Back to the session list; an answer still on its way is dropped. */
function endSearch() {
  clearTimeout(timer);
  if (controller) controller.abort();
  controller = null;
  generation += 1;
  ui.searchResults.replaceChildren();
  setStatus("");
  showPane(false);
}

function onInput() {
  clearTimeout(timer);
  const query = ui.searchInput.value.trim();
  if (!query) return endSearch();
  showPane(true);
  if (!ui.searchResults.firstChild) setStatus("Searching…");
  timer = setTimeout(() => search(query), SEARCH_DELAY_MS);
}

async function search(query) {
  if (controller) controller.abort();
  controller = new AbortController();
  const mine = ++generation;
  let data;
  try {
    data = await api("GET", `/api/search?q=${encodeURIComponent(query)}&limit=${SEARCH_LIMIT}`, undefined,
      { signal: controller.signal });
  } catch (error) {
    if (mine !== generation || error.name === "AbortError") return;
    ui.searchResults.replaceChildren();
    // An empty box never asks, so a refused query is one that is too long.
    if (error.status === 400) setStatus(`Try a shorter search (${error.message}).`, "hint");
    else setStatus(`Search is unavailable right now (${error.message}).`, "hint");
    return;
  }
  if (mine !== generation) return;
  renderResults(data.results || [], query);
}

function renderResults(results, query) {
  const items = results.map((result) => {
    const link = element("a", {
      href: `/s/${result.session_id}`, class: "search-result", "data-testid": "search-result",
      "data-session-id": result.session_id, "data-run-id": result.run_id || "",
      onclick: (event) => openFromResult(event, result),
    },
    element("span", { class: "session-name" }, highlighted(result.title || "Untitled", query)),
    result.run_id ? element("span", { class: "search-snippet" }, highlighted(result.snippet || "", query)) : null);
    return element("li", { class: "search-item" }, link);
  });
  ui.searchResults.replaceChildren(...items);
  if (!results.length) setStatus("No matches", "empty");
  else setStatus(results.length === 1 ? "1 match" : `${results.length} matches`);
}

/** Open the result's session; for a message, show it (older pages loaded as needed, the
 * branch through its version when it was replaced). */
async function openFromResult(event, result) {
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  await navigate(result.session_id);
  if (!result.run_id || state.sessionId !== result.session_id) return;
  if (await revealRun(result.run_id)) return;
  // Not on the latest branch: a replaced version of a turn. Show the branch through it.
  await openSession(result.session_id, { branch: result.run_id, keep: true });
  if (state.sessionId === result.session_id) await revealRun(result.run_id);
}

function resultLinks() {
  return [...ui.searchResults.querySelectorAll(".search-result")];
}

function onBoxKey(event) {
  if (event.key === "Escape" && ui.searchInput.value) {
    // Spent on the search: it neither closes the drawer nor stops a running turn.
    event.preventDefault();
    event.stopPropagation();
    ui.searchInput.value = "";
    endSearch();
  } else if (event.key === "ArrowDown" && resultLinks().length) {
    event.preventDefault();
    resultLinks()[0].focus();
  } else if (event.key === "Enter" && resultLinks().length) {
    event.preventDefault();
    resultLinks()[0].click();
  }
}

function onResultsKey(event) {
  const links = resultLinks();
  const index = links.indexOf(document.activeElement);
  if (index < 0) return;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const next = index + (event.key === "ArrowDown" ? 1 : -1);
    if (next < 0) ui.searchInput.focus();
    else links[Math.min(next, links.length - 1)].focus();
  } else if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    ui.searchInput.value = "";
    endSearch();
    ui.searchInput.focus();
  }
}

export function wireSearch() {
  ui.searchInput.addEventListener("input", onInput);
  ui.searchInput.addEventListener("keydown", onBoxKey);
  ui.searchResults.addEventListener("keydown", onResultsKey);
}
