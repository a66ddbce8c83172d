// The page: sessions sidebar, one session's transcript kept live by one stream, composer.
//
// This entry module only wires the others together and starts the page:
//   state.js    the page's elements and the tab's mutable state
//   api.js      the JSON fetch wrapper
//   session.js  navigation, the session stream, transcript rendering, the connection badge
//   sidebar.js  session list, create / rename / delete, the phone drawer
//   composer.js message box, optimistic send and stop, uploads
//   settings.js agent and model pickers, the per-session settings dialog
// Those modules import functions from one another; none runs anything at import time, so
// every call happens after all of them are loaded.

import { wireComposer } from "/static/composer.js";
import { openSession, sessionIdFromPath, showNotice } from "/static/session.js";
import { loadAgents, wireSettings } from "/static/settings.js";
import { refreshSessions, wireSidebar } from "/static/sidebar.js";
import { state, ui } from "/static/state.js";

function wire() {
  wireComposer();
  wireSidebar();
  wireSettings({ onNotice: showNotice });
  window.addEventListener("popstate", () => openSession(sessionIdFromPath()));
  window.addEventListener("online", () => state.stream && state.stream.kick());
  // A dead link can stay silent for a long time; the browser knows sooner.
  window.addEventListener("offline", () => state.stream && state.stream.interrupt());
}

wire();
loadAgents();
refreshSessions();
openSession(sessionIdFromPath());
ui.input.focus();
