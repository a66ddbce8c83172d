"""Streams: SSE of a run and of a session, and the raw journal (PROTOCOL 2.2)."""

from flask import Blueprint, Response, request

from hermes_web.core.metrics import metrics
from hermes_web.core.services import service
from hermes_web.read import sse
from hermes_web.store.logstore import LogNotFound, is_terminal
from hermes_web.web.api import locate_run, session_or_404
from hermes_web.web.errors import ApiError
from hermes_web.web.inputs import requested_cursor
from hermes_web.web.stream_limits import counted

blueprint = Blueprint("events", __name__, url_prefix="/api")

MAX_JOURNAL_RESPONSE_BYTES = 4 * 1024 * 1024


def _stream_response(frames, kind: str) -> Response:
    response = Response(_measured(frames, kind), status=200, headers=sse.HEADERS, direct_passthrough=True)
    response.headers["Content-Type"] = sse.HEADERS["Content-Type"]
    return response


def _measured(frames, kind: str):
    """The stream's frames as they go out, counted for ``/metrics`` (the run's sender counts
    what it writes to caught-up viewers itself)."""
    try:
        with metrics.count_open_streams(kind):
            for chunk in frames:
                metrics.sent(chunk)
                yield chunk
    finally:
        frames.close()  # a viewer that went away: the stream lets go of its run at once


def _compacted(location) -> ApiError:
    return ApiError(410, "run_compacted", "this run was compacted into the session transcript; load the session view",
                    session_id=location.session_id)


def _open_live(run_id: str):
    """The run's log for streaming or export; 404 unknown, 410 compacted."""
    location = locate_run(run_id)
    if location.compacted:
        raise _compacted(location)
    try:
        return service("logs").open(run_id, location.session_id)
    except LogNotFound:
        raise _compacted(locate_run(run_id)) from None


def _checked_offset(run_log, offset: int):
    """``(committed, last_record)`` after validating ``offset`` (PROTOCOL 1.2)."""
    if not run_log.is_cursor(offset):
        raise ApiError(400, "invalid_cursor", "cursor is not at a record boundary of this run's journal")
    committed, last = run_log.tail()
    if offset > committed:
        raise ApiError(400, "invalid_cursor", "cursor is past the end of this run's journal")
    return committed, last


@blueprint.get("/runs/<run_id>/events")
@counted
def run_events(run_id):
    try:
        with _open_live(run_id) as run_log:
            cursor = requested_cursor(default_run_id=run_id)
            offset = 0
            if cursor is not None:
                if cursor[0] != run_id:
                    raise ApiError(400, "invalid_cursor", "cursor belongs to another run")
                offset = cursor[1]
            committed, last = _checked_offset(run_log, offset)
            session_id = run_log.session_id
    except LogNotFound:
        # A shared store's log can be compacted between opening and reading it.
        raise _compacted(locate_run(run_id)) from None
    if offset == committed and is_terminal(last):
        return "", 204  # nothing follows a terminal record; EventSource stops here
    # The stream opens its own handle once it starts: a response never iterated holds none.
    return _stream_response(service("streams").run_stream(session_id, run_id, offset, direct=_direct_writer()), "run")


def _direct_writer():
    """The connection's direct writer, when the server offers one (see fanout.py)."""
    return request.environ.get("hermes_web.direct_writer")


@blueprint.get("/sessions/<session_id>/events")
@counted
def session_events(session_id):
    session_or_404(session_id)
    streams = service("streams")
    cursor = requested_cursor()
    if cursor is None:
        return _stream_response(streams.session_stream(session_id, None, 0, direct=_direct_writer()), "session")
    run_id, offset = cursor
    try:
        run_log = service("logs").open(run_id, session_id)
    except LogNotFound:
        run_log = None
    if run_log is not None:
        try:
            with run_log:
                committed, last = _checked_offset(run_log, offset)
        except LogNotFound:
            pass  # a shared store's log compacted meanwhile: the transcript has the run
        else:
            # At the end of a finished run the stream goes on with the next run (never 204 here).
            finished = offset == committed and is_terminal(last)
            return _stream_response(streams.session_stream(session_id, run_id, offset, run_finished=finished,
                                                           direct=_direct_writer()), "session")
    if run_id in service("transcripts").read(session_id).by_run:
        return _stream_response(streams.session_stream(session_id, run_id, 0, run_finished=True,
                                                       direct=_direct_writer()), "session")
    raise ApiError(400, "invalid_cursor", "cursor names a run that is not in this session")


@blueprint.get("/runs/<run_id>/journal")
def run_journal(run_id):
    raw_offset = request.args.get("offset", "0")
    # ASCII digits only: str.isdigit() also accepts "³", which int() then refuses.
    if not (raw_offset.isascii() and raw_offset.isdigit()) or len(raw_offset) > 18:
        raise ApiError(400, "invalid_offset", "offset must be a non-negative integer")
    offset = int(raw_offset)
    with _open_live(run_id) as run_log:
        try:
            _checked_offset(run_log, offset)
            lines = run_log.read(offset, MAX_JOURNAL_RESPONSE_BYTES)
        except LogNotFound:
            raise _compacted(locate_run(run_id)) from None
    redaction = service("redaction")
    redact = redaction.line if redaction.on_read else (lambda line: line)
    body = b"".join(redact(line) + b"\n" for line, _ in lines)
    next_offset = lines[-1][1] if lines else offset
    response = Response(body, status=200, mimetype="application/x-ndjson")
    response.headers["X-Next-Offset"] = str(next_offset)
    response.headers["Cache-Control"] = "no-store"
    return response
