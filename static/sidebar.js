// The sessions sidebar and the header's session actions: list, create, rename, delete,
// and the drawer it becomes at phone widths.

import { api } from "/static/api.js";
import { element } from "/static/render.js";
import { navigate, showNotice } from "/static/session.js";
import { state, ui } from "/static/state.js";

const SESSION_LIST_REFRESH_MS = 5000;

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

let sessionsSignature = "";

export function renderSessions() {
  // Rebuild only on a visible change: a list replaced every frame would steal focus and clicks.
  const signature = JSON.stringify([state.sessionId, state.sessions.map((session) => [
    session.id, session.title, isRunning(session), relativeTime(session.updated_at)])]);
  if (signature === sessionsSignature) return;
  sessionsSignature = signature;
  const items = state.sessions.map((session) => {
    const current = session.id === state.sessionId;
    const running = isRunning(session);
    const link = element("a", {
      href: `/s/${session.id}`, class: "session-link", "data-testid": "session-link",
      "aria-current": current ? "page" : null,
      onclick: (event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        navigate(session.id);
      },
    },
    element("span", { class: "session-name", text: session.title || "Untitled" }),
    element("span", { class: "session-meta" },
      running ? element("span", { class: "running-dot", "data-testid": "session-running", title: "A turn is running" }) : null,
      element("span", { text: running ? "running" : relativeTime(session.updated_at) })));
    return element("li", { class: `session-item${current ? " is-current" : ""}`, "data-session-id": session.id, "data-testid": "session-item" }, link);
  });
  ui.sessionList.replaceChildren(...items);
  ui.sessionEmpty.hidden = items.length > 0;
}

export function setMeta(meta) {
  state.meta = meta;
  const title = (meta && meta.title) || "New chat";
  ui.title.textContent = title;
  document.title = meta ? `${title} · Hermes` : "Hermes";
  const index = state.sessions.findIndex((session) => session.id === meta?.id);
  if (index >= 0) state.sessions[index] = { ...state.sessions[index], ...meta };
  renderSessions();
  document.dispatchEvent(new CustomEvent("hermes:meta", { detail: meta }));
}

// ------------------------------------------------------------------ session actions

async function createSession() {
  try {
    const meta = await api("POST", "/api/sessions", {});
    state.sessions.unshift({ ...meta, active_run: null });
    navigate(meta.id);
    ui.input.focus();
  } catch (error) {
    showNotice(`Could not create a chat: ${error.message}`);
  }
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
}

// ------------------------------------------------------------------ drawer (phone widths)

function openDrawer() {
  document.body.classList.add("drawer-open");
  ui.backdrop.hidden = false;
  ui.menu.setAttribute("aria-expanded", "true");
  ui.sidebar.querySelector(".session-link[aria-current], .session-link, button")?.focus();
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
  ui.newSession.addEventListener("click", createSession);
  ui.renameButton.addEventListener("click", startRename);
  ui.title.addEventListener("dblclick", startRename);
  ui.renameForm.addEventListener("submit", submitRename);
  ui.renameInput.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      endRename();
      ui.renameButton.focus();
    }
  });
  ui.renameInput.addEventListener("blur", () => !ui.renameForm.hidden && ui.renameForm.requestSubmit());
  ui.deleteButton.addEventListener("click", deleteSession);
  ui.menu.addEventListener("click", () => (document.body.classList.contains("drawer-open") ? closeDrawer() : openDrawer()));
  ui.backdrop.addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (event) => event.key === "Escape" && closeDrawer());
  setInterval(() => document.visibilityState === "visible" && refreshSessions(), SESSION_LIST_REFRESH_MS);
}
