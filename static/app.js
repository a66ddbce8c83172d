// The page: sessions sidebar, one session's transcript kept live by one stream, composer.
//
// The server is the only source of truth. Opening a session renders its view and then
// tails the session stream from the view's cursor; every frame goes through the same fold
// as on the server (fold.js). Nothing about the transcript is stored in the browser.

import { SessionFold } from "/static/fold.js";
import { SessionStream } from "/static/stream.js";
import { attachmentView, element, updateAssistantMessage, updateUserMessage } from "/static/render.js";

const $ = (id) => document.getElementById(id);
const ui = {
  sidebar: $("sidebar"), backdrop: $("backdrop"), menu: $("menu-button"),
  sessionList: $("session-list"), sessionEmpty: $("session-empty"), newSession: $("new-session"),
  title: $("session-title"), renameForm: $("rename-form"), renameInput: $("rename-input"),
  renameButton: $("rename-button"), deleteButton: $("delete-button"), connection: $("connection"),
  transcript: $("transcript"), messages: $("messages"), welcome: $("welcome"), notice: $("notice"),
  composer: $("composer"), input: $("composer-input"), send: $("send-button"), stop: $("stop-button"),
  attach: $("attach-button"), fileInput: $("file-input"), composerAttachments: $("composer-attachments"),
  dropHint: $("drop-hint"), liveStatus: $("live-status"), agent: $("agent-select"),
};

const SESSION_LIST_REFRESH_MS = 5000;

const state = {
  sessions: [],
  sessionId: null,
  meta: null,
  fold: null,
  stream: null,
  streamState: "idle",
  openToken: 0,
  nodes: new Map(), // message id -> element
  pending: null, // the optimistic user turn: {text, attachments, runId}
  confirmedRun: null, // run whose user message takes over the optimistic element
  uploads: [], // composer attachments: {key, name, mime, size, id?, url?, previewUrl?, error?}
  renderQueued: false,
  sending: false,
};

// ------------------------------------------------------------------ api

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, cache: "no-store" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || `request failed (${response.status})`);
    error.status = response.status;
    error.body = data;
    throw error;
  }
  return data;
}

function showNotice(message) {
  ui.notice.textContent = message || "";
  ui.notice.hidden = !message;
  clearTimeout(showNotice.timer);
  if (message) showNotice.timer = setTimeout(() => showNotice(""), 8000);
}

// ------------------------------------------------------------------ sessions sidebar

async function refreshSessions() {
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

function renderSessions() {
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

function setMeta(meta) {
  state.meta = meta;
  const title = (meta && meta.title) || "New chat";
  ui.title.textContent = title;
  document.title = meta ? `${title} · Hermes` : "Hermes";
  const index = state.sessions.findIndex((session) => session.id === meta?.id);
  if (index >= 0) state.sessions[index] = { ...state.sessions[index], ...meta };
  renderSessions();
}

// ------------------------------------------------------------------ navigation

function sessionIdFromPath() {
  const match = /^\/s\/([A-Za-z0-9_-]{1,64})\/?$/.exec(location.pathname);
  return match ? match[1] : null;
}

function navigate(sessionId, { replace = false } = {}) {
  const path = sessionId ? `/s/${sessionId}` : "/";
  if (location.pathname !== path) history[replace ? "replaceState" : "pushState"]({}, "", path);
  closeDrawer();
  openSession(sessionId);
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

async function openSession(sessionId) {
  const token = ++state.openToken;
  closeStream();
  state.sessionId = sessionId;
  state.fold = null;
  state.pending = null;
  state.confirmedRun = null;
  state.nodes.clear();
  ui.messages.replaceChildren();
  ui.renameForm.hidden = true;
  ui.title.hidden = false;
  showNotice("");
  clearUploads();
  if (!sessionId) {
    setMeta(null);
    setConnection("idle");
    renderAll();
    return;
  }
  ui.transcript.setAttribute("aria-busy", "true");
  let view;
  try {
    view = await api("GET", `/api/sessions/${sessionId}`);
  } catch (error) {
    if (token !== state.openToken) return;
    ui.transcript.removeAttribute("aria-busy");
    if (error.status === 404 || error.status === 400) {
      showNotice("This chat does not exist (it may have been deleted).");
      state.sessionId = null;
      setMeta(null);
      renderAll();
      return;
    }
    showNotice(`Could not load this chat: ${error.message}`);
    setConnection("reconnecting");
    setTimeout(() => token === state.openToken && openSession(sessionId), 2000);
    return;
  }
  if (token !== state.openToken) return;
  ui.transcript.removeAttribute("aria-busy");
  state.fold = new SessionFold(view);
  setMeta({ id: view.id, title: view.title, created_at: view.created_at, updated_at: view.updated_at, active_run: view.active_run });
  renderAll();
  scrollToBottom(true);
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

// ------------------------------------------------------------------ stream frames

function onRecord(id, record) {
  const run = state.fold.applyFrame(id, record);
  if (run === null) return;
  if (record.type === "run.started") {
    const pending = state.pending;
    const text = record.user && record.user.text;
    if (pending && (pending.runId === run.runId || (pending.runId === null && text === pending.text))) {
      confirmPending(run.runId);
    }
    announce("The assistant is answering…");
    refreshSessionsSoon();
  } else if (record.type === "title" && typeof record.title === "string") {
    setMeta({ ...state.meta, title: record.title });
  } else if (run.finished) {
    announce(`The answer is ${run.status}.`);
    refreshSessionsSoon();
  }
  scheduleRender();
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
  refreshSessionsSoon.timer = setTimeout(refreshSessions, 150);
}

function announce(text) {
  ui.liveStatus.textContent = text;
}

// ------------------------------------------------------------------ rendering

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    renderAll();
  });
}

function nearBottom() {
  const box = ui.transcript;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

function scrollToBottom(force = false) {
  if (force || nearBottom()) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function pendingMessages() {
  const pending = state.pending;
  if (!pending) return [];
  return [{ id: "pending-user", role: "user", run_id: pending.runId, text: pending.text, attachments: pending.attachments, pending: true }];
}

function confirmPending(runId) {
  state.pending = null;
  state.confirmedRun = runId;
}

function renderAll() {
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
    if (message.role === "user") updateUserMessage(node, message);
    else updateAssistantMessage(node, message);
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
  updateComposer();
  updateConnection();
  renderSessions();
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

// ------------------------------------------------------------------ composer

function updateComposer() {
  const active = state.fold ? state.fold.activeRun : null;
  const busy = Boolean(active) || state.pending !== null || state.sending;
  ui.stop.hidden = !busy;
  ui.send.hidden = busy;
  const uploading = state.uploads.some((upload) => !upload.id && !upload.error);
  const hasContent = ui.input.value.trim() !== "" || state.uploads.some((upload) => upload.id);
  ui.send.disabled = uploading || !hasContent;
  ui.stop.disabled = !active;
  ui.renameButton.disabled = !state.sessionId;
  ui.deleteButton.disabled = !state.sessionId;
}

function autoGrow() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 240)}px`;
}

async function ensureSession() {
  if (state.sessionId) return state.sessionId;
  const meta = await api("POST", "/api/sessions", {});
  state.sessions.unshift({ ...meta, active_run: null });
  history.pushState({}, "", `/s/${meta.id}`);
  await openSession(meta.id);
  return meta.id;
}

async function send() {
  const text = ui.input.value;
  const ready = state.uploads.filter((upload) => upload.id);
  if (state.sending || (!text.trim() && !ready.length)) return;
  if (state.uploads.some((upload) => !upload.id && !upload.error)) return;
  state.sending = true;
  let sessionId;
  try {
    sessionId = await ensureSession();
  } catch (error) {
    state.sending = false;
    showNotice(`Could not create a chat: ${error.message}`);
    return;
  }
  const uploads = state.uploads;
  state.pending = {
    text,
    runId: null,
    attachments: ready.map((upload) => ({ id: upload.id, name: upload.name, mime: upload.mime, size: upload.size, url: upload.url })),
  };
  ui.input.value = "";
  autoGrow();
  state.uploads = [];
  renderComposerAttachments();
  renderAll();
  scrollToBottom(true);
  try {
    const body = { text, attachments: ready.map((upload) => upload.id) };
    if (!ui.agent.hidden && ui.agent.value) body.agent = ui.agent.value;
    const started = await api("POST", `/api/sessions/${sessionId}/runs`, body);
    if (sessionId !== state.sessionId || !state.pending) return;
    state.pending.runId = started.run_id;
    if (state.fold && state.fold.runs.has(started.run_id)) confirmPending(started.run_id);
  } catch (error) {
    if (sessionId === state.sessionId) {
      state.pending = null;
      ui.input.value = text; // give the message back so nothing typed is lost
      state.uploads = uploads;
      renderComposerAttachments();
      autoGrow();
      showNotice(error.status === 409 ? "A turn is already running in this chat." : `Could not send: ${error.message}`);
    }
  } finally {
    state.sending = false;
    scheduleRender();
  }
}

async function stop() {
  const active = state.fold && state.fold.activeRun;
  if (!active) return;
  ui.stop.disabled = true;
  try {
    await api("POST", `/api/runs/${active.runId}/cancel`);
  } catch (error) {
    showNotice(`Could not stop: ${error.message}`);
  }
}

// ------------------------------------------------------------------ attachments

let uploadCounter = 0;

function clearUploads() {
  for (const upload of state.uploads) if (upload.previewUrl) URL.revokeObjectURL(upload.previewUrl);
  state.uploads = [];
  renderComposerAttachments();
}

function renderComposerAttachments() {
  ui.composerAttachments.replaceChildren(...state.uploads.map((upload) => {
    const view = attachmentView(
      { ...upload, url: upload.url || upload.previewUrl },
      { pending: !upload.id && !upload.error, removable: () => removeUpload(upload.key) },
    );
    if (upload.error) {
      view.classList.add("attachment-error");
      view.querySelector(".attachment-size").textContent = upload.error;
    }
    return view;
  }));
  ui.composerAttachments.hidden = state.uploads.length === 0;
  updateComposer();
}

function removeUpload(key) {
  state.uploads = state.uploads.filter((upload) => upload.key !== key);
  renderComposerAttachments();
}

async function addFiles(files) {
  const list = [...files].filter((file) => file && file.size >= 0);
  if (!list.length) return;
  let sessionId;
  try {
    sessionId = await ensureSession();
  } catch (error) {
    showNotice(`Could not create a chat: ${error.message}`);
    return;
  }
  await Promise.all(list.map(async (file) => {
    const name = file.name || `pasted-${new Date().toISOString().replace(/[:.]/g, "-")}.png`;
    const upload = {
      key: ++uploadCounter, name, mime: file.type || "application/octet-stream", size: file.size,
      previewUrl: file.type.startsWith("image/") ? URL.createObjectURL(file) : null,
    };
    state.uploads.push(upload);
    renderComposerAttachments();
    const form = new FormData();
    form.append("file", file, name);
    try {
      const response = await fetch(`/api/sessions/${sessionId}/uploads`, { method: "POST", body: form });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new Error((data && data.error && data.error.message) || `upload failed (${response.status})`);
      const stored = data.attachments[0];
      Object.assign(upload, { id: stored.id, name: stored.name, mime: stored.mime, size: stored.size, url: stored.url });
    } catch (error) {
      upload.error = error.message;
    }
    if (sessionId === state.sessionId) renderComposerAttachments();
  }));
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

function closeDrawer() {
  if (!document.body.classList.contains("drawer-open")) return;
  document.body.classList.remove("drawer-open");
  ui.backdrop.hidden = true;
  ui.menu.setAttribute("aria-expanded", "false");
}

// ------------------------------------------------------------------ wiring

function wire() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      send();
    }
  });
  ui.input.addEventListener("input", () => {
    autoGrow();
    updateComposer();
  });
  ui.input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  ui.stop.addEventListener("click", stop);
  ui.attach.addEventListener("click", () => ui.fileInput.click());
  ui.fileInput.addEventListener("change", () => {
    addFiles(ui.fileInput.files);
    ui.fileInput.value = "";
  });
  let dragDepth = 0;
  const main = $("main");
  main.addEventListener("dragenter", (event) => {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    dragDepth += 1;
    ui.dropHint.hidden = false;
  });
  main.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) ui.dropHint.hidden = true;
  });
  main.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.types || [])].includes("Files")) event.preventDefault();
  });
  main.addEventListener("drop", (event) => {
    dragDepth = 0;
    ui.dropHint.hidden = true;
    if (event.dataTransfer?.files?.length) {
      event.preventDefault();
      addFiles(event.dataTransfer.files);
    }
  });
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
  window.addEventListener("popstate", () => openSession(sessionIdFromPath()));
  window.addEventListener("online", () => state.stream && state.stream.kick());
  // A dead link can stay silent for a long time; the browser knows sooner.
  window.addEventListener("offline", () => state.stream && state.stream.interrupt());
  setInterval(() => document.visibilityState === "visible" && refreshSessions(), SESSION_LIST_REFRESH_MS);
}

// The agent picker appears only when the server offers more than the default agent.
async function loadAgents() {
  try {
    const agents = await api("GET", "/api/agents");
    ui.agent.replaceChildren(...agents.map((agent) => {
      const option = document.createElement("option");
      option.value = agent.name;
      option.textContent = agent.model && agent.model !== agent.name ? `${agent.name} · ${agent.model}` : agent.name;
      option.selected = agent.default;
      return option;
    }));
    ui.agent.hidden = agents.length < 2;
  } catch {
    ui.agent.hidden = true; // the default agent answers
  }
}

wire();
loadAgents();
refreshSessions();
openSession(sessionIdFromPath());
ui.input.focus();
