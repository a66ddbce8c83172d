// The composer: the message box, optimistic send and stop (also with Escape), and
// attachments (picker, drag and drop, paste) uploaded as soon as they are added. The agent
// and model pickers live in settings.js.

import { api, toLogin } from "/static/api.js";
import { attachmentView } from "/static/render.js";
import { confirmPending, openSession, renderAll, scheduleRender, scrollToBottom } from "/static/session.js";
import { runChoice } from "/static/settings.js";
import { on, showNotice, state, ui } from "/static/state.js";

// ------------------------------------------------------------------ message box, send, stop

export function updateComposer() {
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

let creating = null; // the session being created for the empty chat, while its POST runs

/** The open session, created now if this is the empty new chat (its first message or file). */
function ensureSession() {
  if (state.sessionId) return Promise.resolve(state.sessionId);
  creating ??= (async () => {
    try {
      const meta = await api("POST", "/api/sessions", {});
      state.sessions.unshift({ ...meta, active_run: null });
      history.pushState({}, "", `/s/${meta.id}`);
      await openSession(meta.id);
      return meta.id;
    } finally {
      creating = null;
    }
  })();
  return creating;
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
    Object.assign(body, runChoice());
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
  if (!active || stop.runId === active.runId) return;
  stop.runId = active.runId; // one cancel per run, however often Stop or Escape is pressed
  ui.stop.disabled = true;
  try {
    await api("POST", `/api/runs/${active.runId}/cancel`);
  } catch (error) {
    stop.runId = null;
    showNotice(`Could not stop: ${error.message}`);
  }
}

/**
 * Escape anywhere in the page stops the running turn, unless something else used it
 * (closing the drawer, leaving a rename: those call preventDefault) or a dialog is open.
 * Listening on window, after every element and document listener, is what lets them.
 */
function stopOnEscape(event) {
  if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
  if (document.querySelector("dialog[open], [aria-modal='true']:not([hidden])")) return;
  if (!(state.fold && state.fold.activeRun)) return;
  event.preventDefault();
  stop();
}

// ------------------------------------------------------------------ attachments

let uploadCounter = 0;

export function clearUploads() {
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
      if (response.status === 401) toLogin();
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

// ------------------------------------------------------------------ wiring

/** Listeners for the message box, send and stop, the file picker, paste and drag and drop. */
export function wireComposer() {
  on("session:opened", clearUploads);
  on("session:rendered", updateComposer);
  window.addEventListener("keydown", stopOnEscape);
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
  ui.main.addEventListener("dragenter", (event) => {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    dragDepth += 1;
    ui.dropHint.hidden = false;
  });
  ui.main.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) ui.dropHint.hidden = true;
  });
  ui.main.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.types || [])].includes("Files")) event.preventDefault();
  });
  ui.main.addEventListener("drop", (event) => {
    dragDepth = 0;
    ui.dropHint.hidden = true;
    if (event.dataTransfer?.files?.length) {
      event.preventDefault();
      addFiles(event.dataTransfer.files);
    }
  });
}
