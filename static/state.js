// The page's elements, the tab's one mutable state, and the events that carry news back up
// from the session module to the modules that use it (sidebar, composer).
//
// Module scripts run after the document is parsed, so every element already exists here.

const $ = (id) => document.getElementById(id);

export const ui = {
  sidebar: $("sidebar"), backdrop: $("backdrop"), menu: $("menu-button"),
  sessionList: $("session-list"), sessionEmpty: $("session-empty"), newSession: $("new-session"),
  showMoreSessions: $("show-more-sessions"), sessionBrowse: $("session-browse"),
  searchInput: $("search-input"), searchPane: $("search-pane"), searchStatus: $("search-status"),
  searchResults: $("search-results"), importButton: $("import-button"), importInput: $("import-input"),
  exportButton: $("export-button"), exportMenu: $("export-menu"), exportMarkdown: $("export-md"),
  exportJson: $("export-json"),
  title: $("session-title"), renameForm: $("rename-form"), renameInput: $("rename-input"),
  renameButton: $("rename-button"), deleteButton: $("delete-button"), connection: $("connection"),
  main: $("main"), transcript: $("transcript"), olderStatus: $("older-status"), messages: $("messages"), welcome: $("welcome"), notice: $("notice"),
  composer: $("composer"), input: $("composer-input"), send: $("send-button"), stop: $("stop-button"),
  attach: $("attach-button"), fileInput: $("file-input"), composerAttachments: $("composer-attachments"),
  dropHint: $("drop-hint"), liveStatus: $("live-status"), agent: $("agent-select"),
};

export const state = {
  sessions: [],
  sessionId: null,
  meta: null,
  branch: null, // the older version whose branch is shown, or null: the latest branch
  fold: null,
  page: { before: null }, // the older page still to load: `before` is the run id to ask before, or null
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

// Events sent up by session.js, so it never imports the modules built on it:
//   session:opened    {sessionId}  a session (or the empty new chat, null) is now shown
//   session:meta      {meta}       the open session's metadata changed (title, timestamps)
//   session:rendered  {}           the transcript was drawn (a turn may have started or ended)
//   sessions:stale    {}           the session list should be fetched again
const events = new EventTarget();

export function emit(type, detail = {}) {
  events.dispatchEvent(new CustomEvent(type, { detail }));
}

export function on(type, listener) {
  events.addEventListener(type, (event) => listener(event.detail));
}

/** An error or warning in the page's notice bar; it clears itself after a while. */
export function showNotice(message) {
  ui.notice.textContent = message || "";
  ui.notice.hidden = !message;
  clearTimeout(showNotice.timer);
  if (message) showNotice.timer = setTimeout(() => showNotice(""), 8000);
}

/** Say `text` to screen readers (the polite live region). */
export function announce(text) {
  ui.liveStatus.textContent = text;
}
