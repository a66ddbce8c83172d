// Export and import of chats: the header's Export menu (Markdown or JSON, downloaded by
// the browser from `GET /api/sessions/<sid>/export`, which names the file) and the
// sidebar's Import chat (a JSON export sent to `POST /api/sessions/import`).

import { api } from "/static/api.js";
import { navigate } from "/static/session.js";
import { emit, on, showNotice, state, ui } from "/static/state.js";

// ------------------------------------------------------------------ export

function updateExport() {
  const sessionId = state.sessionId;
  ui.exportButton.disabled = !sessionId;
  if (!sessionId) return closeExportMenu();
  ui.exportMarkdown.href = `/api/sessions/${sessionId}/export?format=md`;
  ui.exportJson.href = `/api/sessions/${sessionId}/export?format=json`;
}

function openExportMenu() {
  ui.exportMenu.hidden = false;
  ui.exportButton.setAttribute("aria-expanded", "true");
  ui.exportMarkdown.focus();
}

function closeExportMenu() {
  if (ui.exportMenu.hidden) return;
  ui.exportMenu.hidden = true;
  ui.exportButton.setAttribute("aria-expanded", "false");
}

// ------------------------------------------------------------------ import

async function importFile(file) {
  let exported;
  try {
    exported = JSON.parse(await file.text());
  } catch {
    showNotice(`Could not import “${file.name}”: it is not a JSON file.`);
    return;
  }
  let meta;
  try {
    meta = await api("POST", "/api/sessions/import", exported);
  } catch (error) {
    showNotice(`Could not import “${file.name}”: ${error.message}`);
    return;
  }
  emit("sessions:stale");
  await navigate(meta.id);
}

// ------------------------------------------------------------------ wiring

export function wireExchange() {
  on("session:opened", updateExport);
  on("session:rendered", updateExport); // a new chat gets its id with its first message
  ui.exportButton.addEventListener("click", () => (ui.exportMenu.hidden ? openExportMenu() : closeExportMenu()));
  for (const link of [ui.exportMarkdown, ui.exportJson]) link.addEventListener("click", closeExportMenu);
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".export-wrap")) closeExportMenu();
  });
  ui.exportMenu.parentElement.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || ui.exportMenu.hidden) return;
    event.preventDefault(); // spent on the menu: it does not also stop a running turn
    event.stopPropagation();
    closeExportMenu();
    ui.exportButton.focus();
  });
  ui.exportMenu.parentElement.addEventListener("focusout", (event) => {
    if (!ui.exportMenu.parentElement.contains(event.relatedTarget)) closeExportMenu();
  });
  ui.importButton.addEventListener("click", () => ui.importInput.click());
  ui.importInput.addEventListener("change", () => {
    const file = ui.importInput.files[0];
    ui.importInput.value = ""; // the same file can be picked again
    if (file) importFile(file);
  });
}
