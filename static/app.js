// The page: sessions sidebar, one session's transcript kept live by one stream, composer.
//
// This entry module only wires the others together and starts the page. Dependencies
// point one way, from the top of this list down; news travels back up as the events of
// state.js:
//   auth.js      the logout button, shown when a password protects the server
//   sidebar.js   session list, new chat / rename / delete, the phone drawer
//   search.js    the sidebar's search, its results in place of the list
//   exchange.js  export (the header's menu) and import (the sidebar's button) of chats
//   composer.js  message box, optimistic send and stop, uploads
//   branches.js  regenerate, edit and send again, the versions of a turn
//   settings.js  agent and model pickers, the per-session settings dialog
//   pages.js     older pages of a long session, loaded when scrolled to the top
//   session.js   navigation, the session stream, the header, transcript rendering, the badge
//   render.js    messages into the DOM (markdown.js: Markdown, code blocks; copy.js: copy buttons)
//   fold.js, stream.js, api.js (a 401 goes to the login page), state.js

import { wireLogout } from "/static/auth.js";
import { wireBranches } from "/static/branches.js";
import { wireComposer } from "/static/composer.js";
import { wireCopyButtons } from "/static/copy.js";
import { wireExchange } from "/static/exchange.js";
import { wirePages } from "/static/pages.js";
import { wireSearch } from "/static/search.js";
import { branchFromLocation, openSession, sessionIdFromPath } from "/static/session.js";
import { loadAgents, wireSettings } from "/static/settings.js";
import { refreshSessions, wireSidebar } from "/static/sidebar.js";
import { showNotice, state, ui } from "/static/state.js";

function wire() {
  wireComposer();
  wireBranches();
  wireSidebar();
  wireSearch();
  wireExchange();
  wireSettings({ onNotice: showNotice });
  wireCopyButtons(ui.messages);
  wirePages();
  window.addEventListener("popstate", () => openSession(sessionIdFromPath(), { branch: branchFromLocation() }));
  window.addEventListener("online", () => state.stream && state.stream.kick());
  // A dead link can stay silent for a long time; the browser knows sooner.
  window.addEventListener("offline", () => state.stream && state.stream.interrupt());
}

wire();
wireLogout();
loadAgents();
refreshSessions();
openSession(sessionIdFromPath(), { branch: branchFromLocation() });
ui.input.focus();
