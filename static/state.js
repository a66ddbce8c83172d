// The page's elements and the tab's one mutable state, shared by the UI modules.
//
// Module scripts run after the document is parsed, so every element already exists here.

const $ = (id) => document.getElementById(id);

export const ui = {
  sidebar: $("sidebar"), backdrop: $("backdrop"), menu: $("menu-button"),
  sessionList: $("session-list"), sessionEmpty: $("session-empty"), newSession: $("new-session"),
  title: $("session-title"), renameForm: $("rename-form"), renameInput: $("rename-input"),
  renameButton: $("rename-button"), deleteButton: $("delete-button"), connection: $("connection"),
  main: $("main"), transcript: $("transcript"), messages: $("messages"), welcome: $("welcome"), notice: $("notice"),
  composer: $("composer"), input: $("composer-input"), send: $("send-button"), stop: $("stop-button"),
  attach: $("attach-button"), fileInput: $("file-input"), composerAttachments: $("composer-attachments"),
  dropHint: $("drop-hint"), liveStatus: $("live-status"), agent: $("agent-select"),
};

export const state = {
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
