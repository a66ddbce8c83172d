"""Export and import of sessions (PROTOCOL 2.6): ``/api/sessions/<sid>/export``, ``/api/sessions/import``."""

import re

from flask import Blueprint, Response, jsonify, request

from hermes_web.core.codec import encode_line
from hermes_web.core.ids import new_session_id
from hermes_web.core.services import service
from hermes_web.read.export import InvalidImport, export_json, export_markdown, import_messages
from hermes_web.web.api import _outgoing, session_or_404
from hermes_web.web.errors import ApiError
from hermes_web.web.inputs import json_body

blueprint = Blueprint("exchange", __name__, url_prefix="/api")


@blueprint.get("/sessions/<session_id>/export")
def export_session(session_id):
    session_or_404(session_id)
    kind = request.args.get("format", "json")
    if kind not in ("json", "md"):
        raise ApiError(400, "invalid_format", "format must be md or json")
    view = _outgoing(service("views").view(session_id))
    name = _file_name(view.get("title") or "chat")
    if kind == "md":
        response = Response(export_markdown(view), mimetype="text/markdown")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}.md"'
    else:
        response = Response(encode_line(export_json(view)), mimetype="application/json")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/sessions/import")
def import_session():
    limit = service("config").max_import_bytes
    document = json_body(limit=limit)
    session_id = new_session_id()
    try:
        fields, messages = import_messages(document, session_id)
    except InvalidImport as error:
        raise ApiError(400, "invalid_import", str(error)) from None
    redaction = service("redaction")
    if redaction.at_rest:
        messages = [redaction.value(message) for message in messages]  # like every record written
    if messages:
        # The transcript first, the metadata last: the session appears whole or not at all.
        service("transcripts").create(session_id, messages)
    meta = service("sessions").create(redaction.text(fields["title"]), session_id=session_id)
    search = service("search")
    for message in messages:
        search.add(session_id, message["run_id"], "user" if message["role"] == "user" else "answer",
                   message.get("text") or "", message.get("created_at") or 0)
    return jsonify(meta), 201


def _file_name(title: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._ -]+", "", title).strip(" .")[:80]
    return cleaned or "chat"
