"""JSON API: sessions, runs, session views (PROTOCOL 2, 2.1, 2.6)."""

from flask import Blueprint, jsonify, request

from hermes_web.core.services import service
from hermes_web.read.search import MAX_QUERY_CHARS
from hermes_web.read.views import DEFAULT_PAGE_RUNS, MAX_PAGE_RUNS, InvalidPage
from hermes_web.runs.agents import UnknownAgent, UnknownModel
from hermes_web.runs.manager import InvalidReplaces, RunConflict, RunNotOwned, ShuttingDown, check_replaces
from hermes_web.runs.settings import InvalidSetting, checked_run_model, checked_title, run_settings, validated_changes
from hermes_web.store.metadata import NotFound
from hermes_web.store.uploads import UnknownAttachment
from hermes_web.web.errors import ApiError
from hermes_web.web.inputs import checked_id, json_body

blueprint = Blueprint("api", __name__, url_prefix="/api")

MAX_MESSAGE_CHARS = 200_000
MAX_ATTACHMENTS = 20


def session_or_404(session_id: str) -> dict:
    """The session's metadata; 400 for a malformed id, 404 for an unknown session."""
    checked_id(session_id, "session")
    try:
        return service("sessions").get(session_id)
    except NotFound:
        raise ApiError(404, "session_not_found", f"no session {session_id}") from None


@blueprint.post("/sessions")
def create_session():
    body = json_body(required=False)
    try:
        title = "New chat" if body.get("title") is None else checked_title(body["title"])
    except InvalidSetting as error:
        raise ApiError(400, error.code, str(error)) from None
    meta = service("sessions").create(service("redaction").text(title))
    return jsonify(meta), 201


@blueprint.get("/sessions")
def list_sessions():
    """A JSON array of session metadata, newest activity first, each with ``active_run``."""
    return jsonify(_outgoing(service("sessions").list()))


@blueprint.get("/sessions/<session_id>")
def get_session(session_id):
    limit = _int_arg("limit", DEFAULT_PAGE_RUNS, 1, MAX_PAGE_RUNS)
    before = request.args.get("before")
    if before is not None:
        checked_id(before, "run")
    branch = request.args.get("branch")
    if branch is not None:
        checked_id(branch, "run")
    return jsonify(_view(session_id, limit=limit, before=before, branch=branch))


@blueprint.get("/session")
def get_session_compat():
    session_id = request.args.get("session_id")
    if session_id is None:
        raise ApiError(400, "missing_parameter", "session_id is required")
    return jsonify(_view(session_id))  # the v1 answer: the whole active branch


def _int_arg(name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not lowest <= int(raw) <= highest:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer from {lowest} to {highest}")
    return int(raw)


def _view(session_id: str, **page) -> dict:
    session_or_404(session_id)
    try:
        view = service("views").view(session_id, **page)
    except NotFound:
        raise ApiError(404, "session_not_found", f"no session {session_id}") from None
    except InvalidPage as error:
        raise ApiError(400, "invalid_page", str(error)) from None
    return _outgoing(view)


def _outgoing(value):
    """What leaves the server is redacted, also when the data dir holds raw records."""
    redaction = service("redaction")
    return redaction.value(value) if redaction.on_read else value


@blueprint.patch("/sessions/<session_id>")
def update_session(session_id):
    """Rename a session, or change its settings (agent, model, system prompt, temperature)."""
    meta = session_or_404(session_id)
    redaction = service("redaction")
    try:
        changes = validated_changes(json_body(), service("runs").agents, meta)
    except InvalidSetting as error:
        raise ApiError(400, error.code, str(error)) from None
    if "title" in changes:
        changes["title"] = redaction.text(changes["title"])
    if changes.get("system_prompt") and redaction.at_rest:
        changes["system_prompt"] = redaction.text(changes["system_prompt"])
    return jsonify(_outgoing(service("sessions").update(session_id, **changes)))


@blueprint.delete("/sessions/<session_id>")
def delete_session(session_id):
    session_or_404(session_id)
    try:
        service("sessions").delete(session_id)
    except RunNotOwned as error:
        raise ApiError(409, "run_active_elsewhere", "another server process is running a turn in this session",
                       run_id=str(error)) from None
    return "", 204


@blueprint.post("/sessions/<session_id>/runs")
def start_run(session_id):
    meta = session_or_404(session_id)
    body = json_body()
    replaces = body.get("replaces")
    if replaces is not None and (not isinstance(replaces, str) or not checked_id(replaces, "run")):
        raise ApiError(400, "invalid_replaces", "replaces must be the id of a finished run of this session")
    replaced = _replaced_user_message(session_id, replaces) if replaces is not None else None
    if replaced is not None and "text" not in body and "attachments" not in body:
        # Regenerate: the same user turn again (PROTOCOL 1.6).
        body = dict(body, text=replaced.get("text", ""),
                    attachments=[item["id"] for item in replaced.get("attachments") or () if item.get("id")])
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
    agent_name = body.get("agent")
    if agent_name is not None and (not isinstance(agent_name, str) or not agent_name):
        raise ApiError(400, "unknown_agent", "agent must be the name of an agent")
    runs = service("runs")
    try:
        agent, model = runs.agents.choose(agent_name, checked_run_model(body.get("model")), meta)
    except UnknownAgent:
        raise ApiError(400, "unknown_agent", f"no agent named {agent_name!r}") from None
    except (UnknownModel, InvalidSetting) as error:
        raise ApiError(400, "unknown_model", str(error)) from None
    try:
        attachments = service("uploads").resolve(session_id, attachment_ids)
    except UnknownAttachment as error:
        raise ApiError(400, "unknown_attachment", f"no attachment {error} in this session") from None
    try:
        started = runs.start(session_id, text, attachments, agent.name, replaces=replaces, model=model,
                             settings=run_settings(meta))
    except RunConflict as conflict:
        raise ApiError(409, "run_active", f"session already has an active run {conflict.run_id}",
                       run_id=conflict.run_id) from None
    except InvalidReplaces as error:
        raise ApiError(400, "invalid_replaces", str(error)) from None
    except UnknownAgent:
        raise ApiError(400, "unknown_agent", f"no agent named {agent_name!r}") from None
    except ShuttingDown:
        raise ApiError(503, "shutting_down", "the server is shutting down; try again in a moment") from None
    except NotFound:
        raise ApiError(404, "session_not_found", f"no session {session_id}") from None
    return jsonify(started), 202


def _replaced_user_message(session_id: str, run_id: str):
    """The user message of the finished run ``run_id`` on the active branch, or 400."""
    views = service("views")
    try:
        check_replaces(views.session_runs(session_id).tree, run_id)
    except InvalidReplaces as error:
        raise ApiError(400, "invalid_replaces", str(error)) from None
    messages = views.run_messages(session_id, run_id)
    if not messages or messages[-1].get("status") == "running":
        raise ApiError(400, "invalid_replaces", f"run {run_id} has not finished")
    return messages[0]


def locate_run(run_id: str):
    """The run's location, or 404 (400 for a malformed id)."""
    try:
        return service("runs").locate(checked_id(run_id, "run"))
    except NotFound:
        raise ApiError(404, "run_not_found", f"no run {run_id}") from None


@blueprint.get("/search")
def search():
    """Sessions, user messages and answers that contain ``q``, newest first (PROTOCOL 2.6)."""
    query = request.args.get("q", "")
    if not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, "invalid_query", f"q must be 1 to {MAX_QUERY_CHARS} characters")
    limit = _int_arg("limit", 20, 1, 100)
    sessions = service("sessions")

    def title_of(session_id):
        try:
            return sessions.get(session_id).get("title")
        except NotFound:
            return None

    results = service("search").search(query, limit, title_of)
    return jsonify(_outgoing({"results": results}))


@blueprint.get("/agents")
def list_agents():
    """The agents a run can name with their models, the default first."""
    # Always redacted: an endpoint's error may quote its URL, credentials included.
    return jsonify(service("redaction").value(service("runs").agents.describe()))


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
    runs = service("runs")
    location = locate_run(run_id)
    if not location.compacted:
        try:
            runs.cancel(run_id)
        except RunNotOwned:
            raise ApiError(409, "run_active_elsewhere", "another server process runs this turn", run_id=run_id) from None
        location = locate_run(run_id)
    return _run_resource(run_id, location)
