// The sessions sidebar and the header's session actions: list, new chat, rename, delete,
// and the drawer it becomes at phone widths.
//
// The list can hold thousands of sessions: it draws the first rows only (more as the
// user scrolls or asks), and patches each row in place when what it shows changes, so a
// refresh or a running turn never rebuilds it (which would also steal focus and clicks).

import { api } from "/static/api.js";
import { element } from "/static/render.js";
import { navigate, setMeta } from "/static/session.js";
import { on, showNotice, state, ui } from "/static/state.js";

const SESSION_LIST_REFRESH_MS = 5000;
// Rows drawn at first, and added by each "show more".
const SESSION_ROWS_PAGE = 100;

// ------------------------------------------------------------------ session list

export async function refreshSessions() {
  try {
    const data = await api("GET", "/api/sessions");
    state.sessions = Array.isArray(data) ? data : data.sessions || [];
  } catch {
    return; // the stream state already tells the user when the server is unreachable
  }
  renderSessions();
}

function relativeTime(seconds) {
  const delta = Date.now() / 1000 - seconds;
  if (delta < 60) return "just now";
  if (delta < 3600) return `${Math.floor(delta / 60)} min ago`;
  if (delta < 86400) return `${Math.floor(delta / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

function isRunning(session) {
  if (session.id === state.sessionId && state.fold) return state.fold.activeRun !== null || state.pending !== null;
  return Boolean(session.active_run);
}

let rowLimit = SESSION_ROWS_PAGE;
const rows = new Map(); // session id -> <li>, for the rows drawn

function rowSignature(session) {
  return JSON.stringify([session.title, session.id === state.sessionId, isRunning(session), relativeTime(session.updated_at)]);
}

function openFromLink(event) {
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(event.currentTarget.closest("[data-session-id]").dataset.sessionId);
}

function sessionRow(session) {
  const link = element("a", { href: `/s/${session.id}`, class: "session-link", "data-testid": "session-link", onclick: openFromLink },
    element("span", { class: "session-name" }),
    element("span", { class: "session-meta" },
      element("span", { class: "running-dot", "data-testid": "session-running", title: "A turn is running", hidden: true }),
      element("span", { class: "session-when" })));
  return element("li", { class: "session-item", "data-session-id": session.id, "data-testid": "session-item" }, link);
}

/** Bring one row up to date; untouched when nothing it shows changed. */
function updateRow(row, session) {
  const signature = rowSignature(session);
  if (row.dataset.signature === signature) return;
  row.dataset.signature = signature;
  const current = session.id === state.sessionId;
  const running = isRunning(session);
  row.classList.toggle("is-current", current);
  const link = row.firstChild;
  if (current) link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
  link.querySelector(".session-name").textContent = session.title || "Untitled";
  link.querySelector(".running-dot").hidden = !running;
  link.querySelector(".session-when").textContent = running ? "running" : relativeTime(session.updated_at);
}

/** Draw the first `rowLimit` sessions, reusing the rows already there. */
export function renderSessions() {
  const shown = state.sessions.slice(0, rowLimit);
  const keep = new Set();
  let previous = null;
  for (const session of shown) {
    keep.add(session.id);
    let row = rows.get(session.id);
    if (!row) {
      row = sessionRow(session);
      rows.set(session.id, row);
    }
    updateRow(row, session);
    const expected = previous ? previous.nextSibling : ui.sessionList.firstChild;
    if (expected !== row) ui.sessionList.insertBefore(row, expected);
    previous = row;
  }
  for (const [id, row] of rows) {
    if (!keep.has(id)) {
      row.remove();
      rows.delete(id);
    }
  }
  ui.sessionEmpty.hidden = shown.length > 0;
  const more = Math.min(SESSION_ROWS_PAGE, state.sessions.length - shown.length);
  ui.showMoreSessions.hidden = more <= 0;
  if (more > 0) {
    ui.showMoreSessions.textContent = `Show ${more} more`;
    ui.showMoreSessions.setAttribute("aria-label", `Show ${more} more chats`);
  }
}

function showMoreSessions() {
  rowLimit += SESSION_ROWS_PAGE;
  renderSessions();
}

/** Patch the open session's row alone (its title, or whether a turn runs in it). */
function renderCurrentRow() {
  const session = state.sessions.find((item) => item.id === state.sessionId);
  const row = session && rows.get(session.id);
  if (row) updateRow(row, session);
}

function onMeta(meta) {
  const index = meta ? state.sessions.findIndex((session) => session.id === meta.id) : -1;
  if (index >= 0) state.sessions[index] = { ...state.sessions[index], ...meta };
  renderSessions(); // the current row changed (or there is none now)
}

// ------------------------------------------------------------------ session actions

/**
 * An empty chat at `/`: the session is created when its first message is sent (or a file
 * is attached), so clicking New chat again and again leaves no empty sessions behind. A
 * session that has nothing in it yet is simply kept.
 */
function newChat() {
  const empty = state.sessionId && state.fold && state.fold.runs.size === 0 && state.pending === null;
  if (!empty) navigate(null);
  closeDrawer();
  ui.input.focus();
}

function startRename() {
  if (!state.sessionId) return;
  ui.renameInput.value = state.meta?.title || "";
  ui.title.hidden = true;
  ui.renameForm.hidden = false;
  ui.renameInput.focus();
  ui.renameInput.select();
}

function endRename() {
  ui.renameForm.hidden = true;
  ui.title.hidden = false;
}

async function submitRename(event) {
  event.preventDefault();
  const title = ui.renameInput.value.trim();
  const sessionId = state.sessionId;
  endRename();
  if (!title || !sessionId || title === state.meta?.title) return;
  try {
    const meta = await api("PATCH", `/api/sessions/${sessionId}`, { title });
    if (sessionId === state.sessionId) setMeta({ ...state.meta, ...meta });
  } catch (error) {
    showNotice(`Could not rename: ${error.message}`);
  }
  ui.renameButton.focus();
}

async function deleteSession() {
  const sessionId = state.sessionId;
  if (!sessionId) return;
  if (!window.confirm(`Delete “${state.meta?.title || "this chat"}” and everything in it?`)) return;
  try {
    await api("DELETE", `/api/sessions/${sessionId}`);
  } catch (error) {
    showNotice(`Could not delete: ${error.message}`);
    return;
  }
  state.sessions = state.sessions.filter((session) => session.id !== sessionId);
  const next = state.sessions[0];
  navigate(next ? next.id : null, { replace: true });
  renderSessions();
}

// ------------------------------------------------------------------ drawer (phone widths)

function openDrawer() {
  document.body.classList.add("drawer-open");
  ui.backdrop.hidden = false;
  ui.menu.setAttribute("aria-expanded", "true");
  // While search results stand in for the list, the search box is where to start.
  const start = ui.sessionBrowse.hidden ? ui.searchInput : ui.sidebar.querySelector(".session-link[aria-current], .session-link, button");
  start?.focus();
}

export function closeDrawer() {
  if (!document.body.classList.contains("drawer-open")) return;
  document.body.classList.remove("drawer-open");
  ui.backdrop.hidden = true;
  ui.menu.setAttribute("aria-expanded", "false");
}

// ------------------------------------------------------------------ wiring

/** Listeners for the sidebar, the header's session actions and the drawer; the list's refresh timer. */
export function wireSidebar() {
  on("session:opened", () => {
    closeDrawer();
    renderSessions(); // the row of the session being opened is current at once
  });
  on("session:meta", ({ meta }) => onMeta(meta));
  on("session:rendered", renderCurrentRow);
  on("sessions:stale", refreshSessions);
  ui.newSession.addEventListener("click", newChat);
  ui.showMoreSessions.addEventListener("click", showMoreSessions);
  // Scrolling to the end of the list shows more rows without a click. The entries may be
  // stale (a click that just added rows moved the button away): look again.
  const list = ui.sidebar.querySelector(".session-list-wrap");
  new IntersectionObserver(() => {
    if (ui.showMoreSessions.hidden) return;
    const button = ui.showMoreSessions.getBoundingClientRect();
    const box = list.getBoundingClientRect();
    if (button.top < box.bottom && button.bottom > box.top) showMoreSessions();
  }, { root: list }).observe(ui.showMoreSessions);
  ui.renameButton.addEventListener("click", startRename);
  ui.title.addEventListener("dblclick", startRename);
  ui.renameForm.addEventListener("submit", submitRename);
  ui.renameInput.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault(); // spent on the rename: it does not also stop a running turn
      endRename();
      ui.renameButton.focus();
    }
  });
  ui.renameInput.addEventListener("blur", () => !ui.renameForm.hidden && ui.renameForm.requestSubmit());
  ui.deleteButton.addEventListener("click", deleteSession);
  ui.menu.addEventListener("click", () => (document.body.classList.contains("drawer-open") ? closeDrawer() : openDrawer()));
  ui.backdrop.addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !document.body.classList.contains("drawer-open")) return;
    event.preventDefault(); // this Escape is spent: it does not also stop a running turn
    closeDrawer();
  });
  setInterval(() => document.visibilityState === "visible" && refreshSessions(), SESSION_LIST_REFRESH_MS);
}
