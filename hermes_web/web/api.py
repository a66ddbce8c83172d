"""JSON API: sessions, runs, session views (PROTOCOL 2, 2.1)."""

from flask import Blueprint, current_app, jsonify, request

from hermes_web.agents import DEFAULT_AGENT, UnknownAgent
from hermes_web.ids import new_session_id
from hermes_web.runs import RunConflict, RunNotOwned, ShuttingDown
from hermes_web.store import NotFound
from hermes_web.uploads import UnknownAttachment
from hermes_web.web.errors import ApiError
from hermes_web.web.inputs import checked_id, json_body

blueprint = Blueprint("api", __name__, url_prefix="/api")

MAX_TITLE_CHARS = 200
MAX_MESSAGE_CHARS = 200_000
MAX_ATTACHMENTS = 20


def hermes():
    return current_app.extensions["hermes"]


def session_or_404(session_id: str) -> dict:
    checked_id(session_id, "session")
    try:
        return hermes().sessions.get(session_id)
    except NotFound:
        raise ApiError(404, "session_not_found", f"no session {session_id}") from None


def _title_from(body: dict, required: bool):
    title = body.get("title")
    if title is None and not required:
        return None
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
        raise ApiError(400, "invalid_title", f"title must be a non-empty string of at most {MAX_TITLE_CHARS} characters")
    return title.strip()


@blueprint.post("/sessions")
def create_session():
    body = json_body(required=False)
    title = _title_from(body, required=False) or "New chat"
    meta = hermes().sessions.create(new_session_id(), hermes().redaction.text(title))
    return jsonify(meta), 201


@blueprint.get("/sessions")
def list_sessions():
    """A JSON array of session metadata, newest activity first, each with ``active_run``."""
    service = hermes()
    sessions = []
    for meta in service.sessions.list():
        active = service.runs.active_run_id(meta["id"])
        sessions.append(dict(meta, active_run={"id": active} if active else None))
    return jsonify(sessions)


@blueprint.get("/sessions/<session_id>")
def get_session(session_id):
    return jsonify(_view(session_id))


@blueprint.get("/session")
def get_session_compat():
    session_id = request.args.get("session_id")
    if session_id is None:
        raise ApiError(400, "missing_parameter", "session_id is required")
    return jsonify(_view(session_id))


def _view(session_id: str) -> dict:
    session_or_404(session_id)
    service = hermes()
    try:
        view = service.views.view(session_id)
    except NotFound:
        raise ApiError(404, "session_not_found", f"no session {session_id}") from None
    if service.redaction.on_read:
        view = service.redaction.value(view)
    return view


@blueprint.patch("/sessions/<session_id>")
def rename_session(session_id):
    session_or_404(session_id)
    title = _title_from(json_body(), required=True)
    meta = hermes().sessions.update(session_id, title=hermes().redaction.text(title))
    hermes().streams.note_session_changed(session_id)
    return jsonify(meta)


@blueprint.delete("/sessions/<session_id>")
def delete_session(session_id):
    session_or_404(session_id)
    try:
        hermes().delete_session(session_id)
    except RunNotOwned as error:
        raise ApiError(409, "run_active_elsewhere", "another server process is running a turn in this session",
                       run_id=str(error)) from None
    return "", 204


@blueprint.post("/sessions/<session_id>/runs")
def start_run(session_id):
    session_or_404(session_id)
    body = json_body()
    text = body.get("text", "")
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_CHARS:
        raise ApiError(400, "invalid_text", f"text must be a string of at most {MAX_MESSAGE_CHARS} characters")
    attachment_ids = body.get("attachments") or []
    if not isinstance(attachment_ids, list) or len(attachment_ids) > MAX_ATTACHMENTS:
        raise ApiError(400, "invalid_attachments", f"attachments must be a list of at most {MAX_ATTACHMENTS} ids")
    for attachment_id in attachment_ids:
        if not isinstance(attachment_id, str):
            raise ApiError(400, "invalid_attachments", "attachments must be a list of attachment ids")
        checked_id(attachment_id, "attachment")
    if not text.strip() and not attachment_ids:
        raise ApiError(400, "empty_message", "a message needs text or at least one attachment")
    agent_name = body.get("agent", DEFAULT_AGENT)
    if not isinstance(agent_name, str):
        raise ApiError(400, "unknown_agent", "agent must be a string")
    service = hermes()
    try:
        attachments = service.uploads.resolve(session_id, attachment_ids)
    except UnknownAttachment as error:
        raise ApiError(400, "unknown_attachment", f"no attachment {error} in this session") from None
    try:
        started = service.runs.start(session_id, text, attachments, agent_name)
    except RunConflict as conflict:
        raise ApiError(409, "run_active", f"session already has an active run {conflict.run_id}",
                       run_id=conflict.run_id) from None
    except UnknownAgent:
        raise ApiError(400, "unknown_agent", f"no agent named {agent_name!r}") from None
    except ShuttingDown:
        raise ApiError(503, "shutting_down", "the server is shutting down; try again in a moment") from None
    return jsonify(started), 202


def locate_run(run_id: str):
    """The run's location, or 404 (400 for a malformed id)."""
    try:
        return hermes().locate_run(checked_id(run_id, "run"))
    except NotFound:
        raise ApiError(404, "run_not_found", f"no run {run_id}") from None


@blueprint.get("/agents")
def list_agents():
    """The agents a run can name, the default first."""
    agents = hermes().runs.agents
    names = sorted(agents, key=lambda name: (name != DEFAULT_AGENT, name))
    return jsonify([
        {"name": name, "model": agents[name].model, "default": name == DEFAULT_AGENT} for name in names
    ])


@blueprint.get("/runs/<run_id>")
def get_run(run_id):
    return _run_resource(run_id, locate_run(run_id))


def _run_resource(run_id: str, location):
    return jsonify({
        "id": run_id,
        "session_id": location.session_id,
        "status": location.status,
        "committed": location.committed,
    })


@blueprint.post("/runs/<run_id>/cancel")
def cancel_run(run_id):
    service = hermes()
    location = locate_run(run_id)
    if not location.compacted:
        try:
            service.runs.cancel(run_id)
        except RunNotOwned:
            raise ApiError(409, "run_active_elsewhere", "another server process runs this turn", run_id=run_id) from None
        location = service.locate_run(run_id)
    return _run_resource(run_id, location)
