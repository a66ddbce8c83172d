// The agent and model pickers, and the per-session settings dialog (system prompt,
// temperature).
//
// The session is the source of truth: its metadata carries the agent and model of its last
// run (or the ones picked since), its system prompt and temperature, and every change is a
// PATCH that the session stream echoes back (session.updated) to every open tab. For a chat
// that does not exist yet, the last choice is kept in this browser and sent with its first
// message. Metadata arrives as the session module's "session:meta" event; this module
// imports nothing but the api wrapper and the shared state.

import { api } from "/static/api.js";
import { on, state, ui } from "/static/state.js";

const CHOICE_KEY = "hermes.agentChoice";
const $ = (id) => document.getElementById(id);
const view = {
  model: $("model-select"),
  button: $("settings-button"),
  dialog: $("settings-dialog"),
  form: $("settings-form"),
  prompt: $("settings-system-prompt"),
  temperature: $("settings-temperature"),
  error: $("settings-error"),
  cancel: $("settings-cancel"),
};

let agents = []; // as GET /api/agents lists them
let wanted = null; // {agent, model} to show once the agents are known
let notify = () => {};

// ------------------------------------------------------------------ pickers

function agentNamed(name) {
  return agents.find((agent) => agent.name === name) || null;
}

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(CHOICE_KEY) || "null");
  } catch {
    return null;
  }
}

function option(value, label, selected) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  element.selected = selected;
  return element;
}

/** Show `choice` (agent and model) in the pickers; unknown names fall back to the defaults. */
function show(choice) {
  if (!agents.length) {
    wanted = choice;
    return;
  }
  const fallback = agents.find((agent) => agent.default) || agents[0];
  const agent = agentNamed(choice && choice.agent) || fallback;
  ui.agent.value = agent.name;
  const models = agent.models && agent.models.length ? agent.models : [agent.model];
  const model = choice && choice.agent === agent.name && models.includes(choice.model) ? choice.model : agent.model;
  view.model.replaceChildren(...models.map((name) => option(name, name, name === model)));
  view.model.hidden = ui.agent.hidden || models.length < 2;
}

/** The agent and model the next run asks for (nothing when there is nothing to choose). */
export function runChoice() {
  if (ui.agent.hidden || !ui.agent.value) return {};
  const choice = { agent: ui.agent.value };
  if (!view.model.hidden && view.model.value) choice.model = view.model.value;
  return choice;
}

async function picked() {
  const choice = { agent: ui.agent.value, model: view.model.hidden ? null : view.model.value };
  try {
    localStorage.setItem(CHOICE_KEY, JSON.stringify(choice));
  } catch { /* private mode: the choice lasts for this page */ }
  if (!state.sessionId) return;
  try {
    await api("PATCH", `/api/sessions/${state.sessionId}`, choice);
  } catch (error) {
    notify(`Could not switch the model: ${error.message}`);
  }
}

/** The agents the server offers; the pickers appear when there is more than one choice. */
export async function loadAgents() {
  try {
    agents = await api("GET", "/api/agents");
  } catch {
    agents = [];
  }
  ui.agent.replaceChildren(...agents.map((agent) => option(agent.name, agent.name, agent.default)));
  ui.agent.hidden = agents.length < 2;
  show(wanted || (state.meta && state.meta.agent ? state.meta : remembered()));
  wanted = null;
}

// ------------------------------------------------------------------ the settings dialog

function fillDialog(meta) {
  view.prompt.value = (meta && meta.system_prompt) || "";
  view.temperature.value = meta && typeof meta.temperature === "number" ? String(meta.temperature) : "";
  view.error.hidden = true;
}

function openDialog() {
  fillDialog(state.meta);
  view.dialog.showModal();
  view.prompt.focus();
}

async function saveDialog(event) {
  event.preventDefault();
  const raw = view.temperature.value.trim();
  const temperature = raw === "" ? null : Number(raw);
  if (raw !== "" && !Number.isFinite(temperature)) {
    view.error.textContent = "Temperature must be a number from 0 to 2, or empty for the model's default.";
    view.error.hidden = false;
    return;
  }
  const body = { system_prompt: view.prompt.value.trim() ? view.prompt.value : null, temperature };
  const sessionId = state.sessionId;
  if (!sessionId) return;
  try {
    const meta = await api("PATCH", `/api/sessions/${sessionId}`, body);
    if (sessionId === state.sessionId) state.meta = { ...state.meta, ...meta };
    view.dialog.close();
  } catch (error) {
    view.error.textContent = error.message;
    view.error.hidden = false;
  }
}

// ------------------------------------------------------------------ wiring

/** Listeners for the pickers and the dialog; ``onNotice`` shows a message to the person. */
export function wireSettings({ onNotice }) {
  notify = onNotice;
  view.button.disabled = true;
  ui.agent.addEventListener("change", () => {
    show({ agent: ui.agent.value });
    picked();
  });
  view.model.addEventListener("change", picked);
  view.button.addEventListener("click", openDialog);
  view.form.addEventListener("submit", saveDialog);
  view.cancel.addEventListener("click", () => view.dialog.close());
  on("session:meta", ({ meta }) => {
    // An existing chat shows its own choice; a new one keeps what was last picked here.
    if (meta && meta.agent) show(meta);
    else if (!meta) show(remembered());
    view.button.disabled = !meta;
    if (!view.dialog.open) fillDialog(meta);
  });
}
