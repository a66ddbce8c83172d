// The open session: navigation, its one stream, the header, the transcript and the
// connection badge.
//
// The server is the only source of truth. Opening a session renders its view and then
// tails the session stream from the view's cursor; every frame goes through the same fold
// as on the server (fold.js). Nothing about the transcript is stored in the browser.
//
// The sidebar and the composer build on this module; it tells them what happened through
// the events of state.js and never imports them.

import { api } from "/static/api.js";
import { SessionFold, parseCursor } from "/static/fold.js";
import { element, updateAssistantMessage, updateUserMessage } from "/static/render.js";
import { announce, emit, showNotice, state, ui } from "/static/state.js";
import { SessionStream } from "/static/stream.js";

// ------------------------------------------------------------------ navigation

export function sessionIdFromPath() {
  const match = /^\/s\/([A-Za-z0-9_-]{1,64})\/?$/.exec(location.pathname);
  return match ? match[1] : null;
}

/** The version whose branch the URL asks for (`?branch=<run_id>`), or null: the latest. */
export function branchFromLocation() {
  const branch = new URLSearchParams(location.search).get("branch");
  return branch && /^[A-Za-z0-9_-]{1,64}$/.test(branch) ? branch : null;
}

export function navigate(sessionId, { replace = false } = {}) {
  const path = sessionId ? `/s/${sessionId}` : "/";
  if (location.pathname + location.search !== path) history[replace ? "replaceState" : "pushState"]({}, "", path);
  return openSession(sessionId);
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

// Runs in a page of the view: the last page is what a session opens with (pages.js loads older ones).
export const PAGE_RUNS = 50;

/** The view's last page: of the latest branch, or of the branch through version `branch`. */
export function viewPath(sessionId, branch) {
  const path = `/api/sessions/${sessionId}?limit=${PAGE_RUNS}`;
  return branch ? `${path}&branch=${encodeURIComponent(branch)}` : path;
}

/**
 * Show a session: its view (the latest branch, or the branch through the version `branch`),
 * then its one stream from the view's cursor. With `keep`, the session is already open and
 * only its view is fetched again (another version, or the latest after a turn started):
 * the elements of the messages that stay are kept, and so are the composer's attachments
 * and the optimistic turn.
 */
export async function openSession(sessionId, { branch = null, keep = false } = {}) {
  const token = ++state.openToken;
  closeStream();
  state.page = { before: null };
  if (!keep) {
    state.sessionId = sessionId;
    state.branch = null;
    state.fold = null;
    state.pending = null;
    state.confirmedRun = null;
    state.nodes.clear();
    ui.messages.replaceChildren();
    ui.renameForm.hidden = true;
    ui.title.hidden = false;
    showNotice("");
    emit("session:opened", { sessionId });
  }
  if (!sessionId) {
    setMeta(null);
    setConnection("idle");
    renderAll();
    return;
  }
  ui.transcript.setAttribute("aria-busy", "true");
  let view;
  try {
    view = await api("GET", viewPath(sessionId, branch));
  } catch (error) {
    if (token !== state.openToken) return;
    ui.transcript.removeAttribute("aria-busy");
    if (error.status === 400 && branch) {
      showNotice("That version is not in this chat; showing the latest.");
      return openSession(sessionId, { keep: true });
    }
    if (error.status === 404 || error.status === 400) {
      showNotice("This chat does not exist (it may have been deleted).");
      state.sessionId = null;
      state.fold = null;
      setMeta(null);
      renderAll();
      return;
    }
    showNotice(`Could not load this chat: ${error.message}`);
    setConnection("reconnecting");
    setTimeout(() => token === state.openToken && openSession(sessionId, { branch, keep }), 2000);
    return;
  }
  if (token !== state.openToken) return;
  ui.transcript.removeAttribute("aria-busy");
  state.fold = new SessionFold(view);
  state.branch = branch && !isLatestBranch(view) ? branch : null;
  state.page = { before: view.has_more ? view.before : null };
  showBranchInUrl(sessionId);
  confirmPendingFromView();
  const { messages, cursor, has_more: hasMore, before, ...meta } = view; // the view is the metadata (settings too) plus messages
  setMeta(meta);
  renderAll();
  if (!keep) scrollToBottom(true);
  state.stream = new SessionStream(sessionId, {
    cursor: () => state.fold.cursorText,
    onRecord: (id, record) => token === state.openToken && onRecord(id, record),
    onSession: (event, data) => token === state.openToken && onSessionEvent(event, data),
    onState: (streamState) => {
      if (token !== state.openToken) return;
      state.streamState = streamState;
      updateConnection();
    },
    onGone: () => token === state.openToken && onSessionEvent("session.deleted", { id: sessionId }),
  });
  state.stream.open();
}

/** Show the branch through the version `runId` of a turn (null: the latest branch). */
export function showBranch(runId) {
  if (!state.sessionId) return Promise.resolve();
  return openSession(state.sessionId, { branch: runId, keep: true });
}

/** An optimistic turn already in a view fetched again takes over its element. */
function confirmPendingFromView() {
  const pending = state.pending;
  if (!pending) return;
  const active = state.fold.activeRun;
  const sameText = active && state.fold.messagesOf(active.runId)[0]?.text === pending.text;
  const runId = pending.runId ?? (sameText ? active.runId : null);
  if (runId !== null && state.fold.runs.has(runId)) confirmPending(runId);
}

/** True when a view's branch is the latest: it ends with the run its cursor names. */
function isLatestBranch(view) {
  const messages = view.messages || [];
  const cursor = parseCursor(view.cursor);
  return !messages.length || (cursor !== null && messages[messages.length - 1].run_id === cursor.runId);
}

/** `?branch=` in the address while an older version is shown, so a reload shows it again. */
function showBranchInUrl(sessionId) {
  if (sessionIdFromPath() !== sessionId) return;
  const path = state.branch ? `/s/${sessionId}?branch=${encodeURIComponent(state.branch)}` : `/s/${sessionId}`;
  if (location.pathname + location.search !== path) history.replaceState({}, "", path);
}

// ------------------------------------------------------------------ stream frames

function onRecord(id, record) {
  const run = state.fold.applyFrame(id, record);
  if (run === null) return;
  if (record.type === "run.started") {
    if (state.branch !== null) {
      // A new turn always continues the latest branch, not the older version on screen.
      showBranch(null);
      refreshSessionsSoon();
      return;
    }
    const pending = state.pending;
    const text = record.user && record.user.text;
    if (pending && (pending.runId === run.runId || (pending.runId === null && text === pending.text))) {
      confirmPending(run.runId);
    }
    announce("The assistant is answering…");
    refreshSessionsSoon();
    scheduleRender(); // a new pair of messages: the whole transcript is laid out again
    return;
  }
  if (record.type === "title" && typeof record.title === "string") {
    setMeta({ ...state.meta, title: record.title });
  } else if (run.finished) {
    announce(`The answer is ${run.status}.`);
    refreshSessionsSoon();
  }
  scheduleRender(run);
}

function onSessionEvent(event, data) {
  if (event === "session.updated") {
    setMeta({ ...state.meta, ...data });
  } else if (event === "session.deleted") {
    state.sessions = state.sessions.filter((session) => session.id !== data.id);
    navigate(null, { replace: true });
    showNotice("This chat was deleted.");
  }
}

function refreshSessionsSoon() {
  clearTimeout(refreshSessionsSoon.timer);
  refreshSessionsSoon.timer = setTimeout(() => emit("sessions:stale"), 150);
}

/** The header's title and the tab's; the sidebar hears of it through `session:meta`. */
export function setMeta(meta) {
  state.meta = meta;
  const title = (meta && meta.title) || "New chat";
  ui.title.textContent = title;
  document.title = meta ? `${title} · Hermes` : "Hermes";
  emit("session:meta", { meta });
}

// ------------------------------------------------------------------ rendering

// Runs whose messages changed since the last frame; null means everything is drawn again.
let dirtyRuns = null;

/**
 * Draw on the next animation frame, however many frames arrive before it. Given a run,
 * only that run's messages are patched (a delta); without, the whole transcript is.
 */
export function scheduleRender(run = null) {
  if (run === null) dirtyRuns = null;
  else if (dirtyRuns !== null) dirtyRuns.add(run);
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    const runs = dirtyRuns;
    dirtyRuns = new Set();
    if (runs === null) renderAll();
    else renderRuns(runs);
  });
}

/** Patch the messages of `runs` in place; their elements exist already. */
function renderRuns(runs) {
  if (state.fold === null) return; // another session is opening: it draws itself once loaded
  const stick = nearBottom();
  for (const run of runs) {
    for (const message of state.fold.messagesOf(run.runId)) {
      const node = state.nodes.get(message.id);
      if (!node) return renderAll(); // not drawn yet: lay everything out
      updateMessage(node, message);
    }
  }
  afterRender(stick);
}

function updateMessage(node, message) {
  if (message.role === "user") updateUserMessage(node, message);
  else updateAssistantMessage(node, message);
}

function nearBottom() {
  const box = ui.transcript;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

export function scrollToBottom(force = false) {
  if (force || nearBottom()) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function pendingMessages() {
  const pending = state.pending;
  if (!pending) return [];
  return [{ id: "pending-user", role: "user", run_id: pending.runId, text: pending.text, attachments: pending.attachments, pending: true }];
}

export function confirmPending(runId) {
  state.pending = null;
  state.confirmedRun = runId;
}

export function renderAll() {
  dirtyRuns = new Set();
  const stick = nearBottom();
  const messages = state.fold ? [...state.fold.messages(), ...pendingMessages()] : [];
  if (state.confirmedRun !== null) {
    // The server's user turn takes over the optimistic element: no flicker, no duplicate.
    const confirmed = messages.find((message) => message.role === "user" && message.run_id === state.confirmedRun);
    const node = state.nodes.get("pending-user");
    if (confirmed && node) {
      state.nodes.delete("pending-user");
      state.nodes.set(confirmed.id, node);
      node.removeAttribute("data-pending");
    }
    state.confirmedRun = null;
  }
  const seen = new Set();
  let previous = null;
  for (const message of messages) {
    seen.add(message.id);
    let node = state.nodes.get(message.id);
    if (!node) {
      node = element("article", { class: `message message-${message.role}`, "data-testid": `message-${message.role}` });
      state.nodes.set(message.id, node);
    }
    node.dataset.messageId = message.id;
    node.dataset.runId = message.run_id || "";
    if (message.pending) node.dataset.pending = "true";
    updateMessage(node, message);
    const expected = previous ? previous.nextSibling : ui.messages.firstChild;
    if (expected !== node) ui.messages.insertBefore(node, expected);
    previous = node;
  }
  for (const [id, node] of state.nodes) {
    if (!seen.has(id)) {
      node.remove();
      state.nodes.delete(id);
    }
  }
  if (state.pending) {
    let waiting = ui.messages.querySelector(".message-waiting");
    if (!waiting) {
      waiting = element("div", { class: "message message-waiting", "data-testid": "message-waiting" },
        element("div", { class: "avatar", "aria-hidden": "true", text: "H" }),
        element("div", { class: "typing", "aria-label": "Waiting for the answer" }, element("span"), element("span"), element("span")));
    }
    ui.messages.append(waiting);
  } else {
    ui.messages.querySelector(".message-waiting")?.remove();
  }
  ui.welcome.hidden = messages.length > 0;
  afterRender(stick);
}

function afterRender(stick) {
  updateConnection();
  emit("session:rendered");
  if (stick) scrollToBottom(true);
}

function setConnection(connection) {
  const labels = { connecting: "Connecting…", live: "Live", idle: "Idle", reconnecting: "Reconnecting…" };
  if (ui.connection.dataset.state === connection) return;
  ui.connection.dataset.state = connection;
  ui.connection.querySelector(".connection-label").textContent = labels[connection] || connection;
}

/** What the badge shows: never "live" unless the stream is open and a turn is running. */
function updateConnection() {
  if (!state.sessionId || !state.fold) return setConnection(state.sessionId ? "connecting" : "idle");
  const streamState = state.streamState;
  if (streamState === "open") return setConnection(state.fold.activeRun ? "live" : "idle");
  if (streamState === "reconnecting") return setConnection("reconnecting");
  if (streamState === "connecting") return setConnection("connecting");
  return setConnection("idle");
}
