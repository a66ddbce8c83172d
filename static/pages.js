// Older pages of a long session. A session opens with its last page of runs (session.js);
// scrolling near the top of the transcript fetches the page before it and puts it above,
// keeping what the user is looking at where it was.
//
// Older pages hold finished runs only, so they are seeded into the fold as the view's
// messages are, and the fold's cursor (where the stream goes on) is never touched.

import { api } from "/static/api.js";
import { openSession, renderAll, viewPath } from "/static/session.js";
import { on, showNotice, state, ui } from "/static/state.js";

// How close to the top (px) the transcript has to be scrolled for the older page to load.
const LOAD_MARGIN = 600;
// How long a message found by search stays highlighted.
const FOUND_MS = 2500;

// A failed fetch is not tried again by scrolling before this many ms.
const RETRY_MS = 3000;

let loading = null; // {token, promise} of the page being fetched
let retryAt = 0;

/** Whether an older page is there to load for the open session. */
export function hasOlderPage() {
  return Boolean(state.sessionId && state.fold && state.page.before);
}

/**
 * Fetch the page before the runs loaded and put it above them. Resolves to true when a
 * page was added; a second call while one is on its way waits for that one.
 */
export function loadOlderPage() {
  const token = state.openToken;
  if (loading && loading.token === token) return loading.promise;
  if (!hasOlderPage()) return Promise.resolve(false);
  const promise = fetchOlderPage(state.sessionId, token, state.page.before).finally(() => {
    if (loading?.promise !== promise) return;
    loading = null;
    ui.olderStatus.hidden = true;
    setTimeout(loadWhenNearTop); // still near the top (a short page): the next one
  });
  loading = { token, promise };
  ui.olderStatus.hidden = false;
  return promise;
}

async function fetchOlderPage(sessionId, token, before) {
  let view;
  try {
    view = await api("GET", `${viewPath(sessionId, state.branch)}&before=${encodeURIComponent(before)}`);
  } catch (error) {
    if (token !== state.openToken) return false;
    if (error.status === 400 && error.body?.error?.code === "invalid_page") {
      await openSession(sessionId, { branch: state.branch }); // the branch changed under the page: start from the last page again
    } else {
      retryAt = Date.now() + RETRY_MS;
      showNotice(`Could not load older messages: ${error.message}`);
    }
    return false;
  }
  if (token !== state.openToken) return false;
  const first = state.fold.runs.keys().next().value;
  if (first !== before) {
    // The turns at the top were replaced while the page was on its way: what it holds is
    // not what comes before them any more.
    await openSession(sessionId, { branch: state.branch });
    return false;
  }
  const anchor = topVisibleMessage();
  const anchorTop = anchor ? offsetInTranscript(anchor) : 0;
  const height = ui.transcript.scrollHeight;
  state.fold.prependPage(view.messages || []);
  state.page = { before: view.has_more ? view.before : null };
  renderAll();
  // The message that was at the top of the screen stays there (whatever the browser's own
  // scroll anchoring did); without one, the added height is scrolled past.
  if (anchor && anchor.isConnected) ui.transcript.scrollTop += offsetInTranscript(anchor) - anchorTop;
  else ui.transcript.scrollTop += ui.transcript.scrollHeight - height;
  return true;
}

function offsetInTranscript(node) {
  return node.getBoundingClientRect().top - ui.transcript.getBoundingClientRect().top;
}

function topVisibleMessage() {
  const top = ui.transcript.getBoundingClientRect().top;
  for (const node of ui.messages.children) {
    if (node.getBoundingClientRect().bottom > top) return node;
  }
  return null;
}

function loadWhenNearTop() {
  if (!hasOlderPage() || ui.transcript.scrollTop > LOAD_MARGIN || Date.now() < retryAt) return;
  loadOlderPage();
}

/**
 * Show the messages of run `runId` of the open session: older pages are loaded until it is
 * there, then it is scrolled into view and highlighted for a moment. False when the run is
 * not on the session's active branch.
 */
export async function revealRun(runId) {
  const sessionId = state.sessionId;
  while (state.sessionId === sessionId && state.fold && !state.fold.runs.has(runId)) {
    // Run ids sort in start order: one after the first loaded run that is not loaded is not
    // on this branch (a replaced version), and no older page holds it.
    const first = state.fold.runs.keys().next().value;
    if (first !== undefined && runId > first) return false;
    if (!hasOlderPage() || !(await loadOlderPage())) return false;
  }
  if (state.sessionId !== sessionId || !state.fold) return false;
  const nodes = [...ui.messages.children].filter((node) => node.dataset.runId === runId);
  if (!nodes.length) return false;
  nodes[0].scrollIntoView({ block: "start" });
  for (const node of nodes) {
    node.classList.add("is-found");
    setTimeout(() => node.classList.remove("is-found"), FOUND_MS);
  }
  return true;
}

/** The scroll listener that loads older pages. */
export function wirePages() {
  ui.transcript.addEventListener("scroll", loadWhenNearTop, { passive: true });
  // A first page too short to scroll never sends a scroll event: look once it is drawn.
  on("session:rendered", () => setTimeout(loadWhenNearTop));
  on("session:opened", () => {
    ui.olderStatus.hidden = true;
  });
}
