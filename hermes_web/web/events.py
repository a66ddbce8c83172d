"""Streams: SSE of a run and of a session, and the raw journal (PROTOCOL 2.2)."""

import os

from flask import Blueprint, Response, current_app, request

from hermes_web import sse
from hermes_web.journal import TERMINAL_TYPES, is_line_boundary, read_lines, read_tail
from hermes_web.web.api import session_or_404, locate_run
from hermes_web.web.errors import ApiError
from hermes_web.web.inputs import requested_cursor

blueprint = Blueprint("events", __name__, url_prefix="/api")

MAX_JOURNAL_RESPONSE_BYTES = 4 * 1024 * 1024


def hermes():
    return current_app.extensions["hermes"]


def _stream_response(frames) -> Response:
    response = Response(frames, status=200, headers=sse.HEADERS, direct_passthrough=True)
    response.headers["Content-Type"] = sse.HEADERS["Content-Type"]
    return response


def _live_location(run_id: str):
    location = locate_run(run_id)
    if location.compacted:
        raise ApiError(410, "run_compacted",
                       "this run was compacted into the session transcript; load the session view",
                       session_id=location.session_id)
    return location


def _checked_offset(path, offset: int):
    """``(offset, committed, last_record)`` after validating ``offset`` (PROTOCOL 1.2)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if not is_line_boundary(fd, offset):
            raise ApiError(400, "invalid_cursor", "cursor is not at a record boundary of this run's journal")
        committed, last = read_tail(fd)
    finally:
        os.close(fd)
    if offset > committed:
        raise ApiError(400, "invalid_cursor", "cursor is past the end of this run's journal")
    return committed, last


@blueprint.get("/runs/<run_id>/events")
def run_events(run_id):
    location = _live_location(run_id)
    cursor = requested_cursor(default_run_id=run_id)
    offset = 0
    if cursor is not None:
        if cursor[0] != run_id:
            raise ApiError(400, "invalid_cursor", "cursor belongs to another run")
        offset = cursor[1]
    path = hermes().data_dir.journal_path(location.session_id, run_id)
    committed, last = _checked_offset(path, offset)
    if offset == committed and last is not None and last.get("type") in TERMINAL_TYPES:
        return "", 204  # nothing follows a terminal record; EventSource stops here
    return _stream_response(hermes().streams.run_stream(location.session_id, run_id, offset))


@blueprint.get("/sessions/<session_id>/events")
def session_events(session_id):
    session_or_404(session_id)
    service = hermes()
    cursor = requested_cursor()
    if cursor is None:
        return _stream_response(service.streams.session_stream(session_id, None, 0))
    run_id, offset = cursor
    path = service.data_dir.journal_path(session_id, run_id)
    if path.exists():
        committed, last = _checked_offset(path, offset)
        # At the end of a finished run the stream goes on with the next run (never 204 here).
        finished = offset == committed and last is not None and last.get("type") in TERMINAL_TYPES
        return _stream_response(service.streams.session_stream(session_id, run_id, offset, run_finished=finished))
    if run_id in service.views.compacted_run_ids(session_id):
        return _stream_response(service.streams.session_stream(session_id, run_id, 0, run_finished=True))
    raise ApiError(400, "invalid_cursor", "cursor names a run that is not in this session")


@blueprint.get("/runs/<run_id>/journal")
def run_journal(run_id):
    location = _live_location(run_id)
    raw_offset = request.args.get("offset", "0")
    if not raw_offset.isdigit() or len(raw_offset) > 18:
        raise ApiError(400, "invalid_offset", "offset must be a non-negative integer")
    offset = int(raw_offset)
    service = hermes()
    path = service.data_dir.journal_path(location.session_id, run_id)
    _checked_offset(path, offset)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        lines = read_lines(fd, offset, MAX_JOURNAL_RESPONSE_BYTES)
    finally:
        os.close(fd)
    redact = service.redaction.line if service.redaction.on_read else (lambda line: line)
    body = b"".join(redact(line) + b"\n" for line, _ in lines)
    next_offset = lines[-1][1] if lines else offset
    response = Response(body, status=200, mimetype="application/x-ndjson")
    response.headers["X-Next-Offset"] = str(next_offset)
    response.headers["Cache-Control"] = "no-store"
    return response

