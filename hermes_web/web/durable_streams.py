"""Durable Streams over HTTP (docs/durable-streams.md): generic streams at
``/ds/streams/<name>`` (PUT, POST, GET, HEAD, DELETE) and every run, read-only, at
``/ds/runs/<run_id>``. The guard's checks (Host, Origin, login, limits) apply as to every
route; these views check media types themselves, since a stream may hold any type.
"""

import base64
import json
import random
import time

from flask import Blueprint, Response, g, request

from hermes_web.core.services import service
from hermes_web.store.streams import (
    DEFAULT_CONTENT_TYPE,
    Settings,
    parse_expires_at,
    StreamError,
    creation_type,
    format_offset,
    is_json,
    is_text,
    parse_offset,
    parse_producer,
    parse_sub_offset,
    parse_ttl,
    response_cursor,
    sse_data,
)
from hermes_web.web.durable_runs import RunSource
from hermes_web.web.errors import error_response
from hermes_web.web.guard import any_body
from hermes_web.web.inputs import bounded_body
from hermes_web.web.stream_limits import counted

blueprint = Blueprint("durable_streams", __name__, url_prefix="/ds")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"}
MAX_READ_BYTES = 4 * 1024 * 1024


@blueprint.errorhandler(StreamError)
def _stream_error(error: StreamError):
    response = error_response(error.status, error.code, error.message)
    response.headers.update(error.headers)
    return response


@blueprint.after_request
def _secure(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class StreamSource:
    """A generic stream as the read loop sees it (captured in the request: an SSE
    response runs after the request's context is gone)."""

    def __init__(self, streams, name: str):
        self.streams = streams
        self.name = name
        self.stream = streams.head(name)
        self.content_type = self.stream.settings.content_type

    def tail(self) -> tuple:
        state = self.streams.current(self.name) or self.stream
        return state.tail, state.closed

    def read(self, after: int):
        return self.streams.read(self.name, after, MAX_READ_BYTES)

    def touch(self) -> None:
        self.streams.touch(self.stream)

    def wait(self, after: int, timeout: float) -> bool:
        return self.streams.wait(self.name, after, timeout)

    def ended(self) -> bool:
        state = self.streams.current(self.name)
        return state is None or state.gone

    def close(self) -> None:
        pass


@blueprint.route("/streams/<path:name>", methods=["GET", "HEAD", "PUT", "POST", "DELETE"])
@any_body
@counted
def stream(name):
    streams = service("ds_streams")
    if request.method == "PUT":
        return _create(streams, name)
    if request.method == "POST":
        return _append(streams, name)
    if request.method == "DELETE":
        streams.delete(name)
        return Response(status=204)
    source = StreamSource(streams, name)
    if request.method == "HEAD":
        return _head(source, source.stream.settings)
    return read_response(source)


@blueprint.route("/runs/<run_id>", methods=["GET", "HEAD"])
@counted
def run(run_id):
    source = RunSource.open(run_id)
    if request.method == "HEAD":
        try:
            return _head(source, None)
        finally:
            source.close()
    return read_response(source)


def _head(source, settings) -> Response:
    tail, closed = source.tail()
    response = Response(status=200, content_type=source.content_type)
    response.headers["Stream-Next-Offset"] = format_offset(tail)
    response.headers["Cache-Control"] = "no-store"
    response.headers["ETag"] = _etag(request.path, "-1", format_offset(tail), closed)
    if closed:
        response.headers["Stream-Closed"] = "true"
    if settings is not None and settings.ttl_seconds is not None:
        response.headers["Stream-TTL"] = str(settings.ttl_seconds)
    if settings is not None and settings.expires_at is not None:
        response.headers["Stream-Expires-At"] = settings.expires_at
    return response


def _create(streams, name: str) -> Response:
    headers = request.headers
    forked_from = headers.get("Stream-Forked-From")
    ttl_header, expires_header = headers.get("Stream-TTL"), headers.get("Stream-Expires-At")
    if ttl_header is not None and expires_header is not None:
        raise StreamError(400, "ttl_and_expiry", "send Stream-TTL or Stream-Expires-At, not both")
    content_type = creation_type(headers.get("Content-Type"))
    if content_type is None and forked_from is None:
        content_type = DEFAULT_CONTENT_TYPE
    fork_offset_header = headers.get("Stream-Fork-Offset")
    fork_offset = parse_offset(fork_offset_header) if fork_offset_header else None
    sub_offset_header = headers.get("Stream-Fork-Sub-Offset")
    if sub_offset_header is not None and forked_from is None:
        raise StreamError(400, "invalid_fork", "Stream-Fork-Sub-Offset needs Stream-Forked-From")
    settings = Settings(
        content_type=content_type,
        ttl_seconds=parse_ttl(ttl_header),
        expires_at=parse_expires_at(expires_header),
        forked_from=forked_from.lstrip("/") if forked_from is not None else None,
        fork_offset=fork_offset if forked_from is not None else 0,
        fork_sub_offset=parse_sub_offset(sub_offset_header),
        created_closed=headers.get("Stream-Closed", "").lower() == "true",
    )
    body = bounded_body(service("config").max_append_bytes)
    stream, created = streams.create(name, settings, body)
    response = Response(status=201 if created else 200, content_type=stream.settings.content_type)
    response.headers["Stream-Next-Offset"] = format_offset(stream.tail)
    if created:
        # An absolute URL, as the protocol asks; the Host it names passed the guard's check.
        response.headers["Location"] = request.host_url.rstrip("/") + request.path
    if stream.closed:
        response.headers["Stream-Closed"] = "true"
    return response


def _append(streams, name: str) -> Response:
    headers = request.headers
    close = headers.get("Stream-Closed", "").lower() == "true"
    producer = parse_producer(headers.get("Producer-Id"), headers.get("Producer-Epoch"),
                              headers.get("Producer-Seq"))
    body = bounded_body(service("config").max_append_bytes)
    if not body:
        if not close:
            raise StreamError(400, "empty_body", "an append needs a body (or Stream-Closed: true)")
        outcome = streams.close(name, producer)
    else:
        content_type = headers.get("Content-Type")
        if not content_type:
            raise StreamError(400, "content_type_required", "an append names its Content-Type")
        outcome = streams.append(name, body, content_type, headers.get("Stream-Seq"), producer, close)
    # 200 with the producer's headers for an accepted append; a retry, and any close
    # without data, answer 204.
    status = 200 if producer is not None and not outcome.duplicate and body else 204
    response = Response(status=status)
    if not (outcome.duplicate and not outcome.closed and body):
        response.headers["Stream-Next-Offset"] = format_offset(outcome.offset)
    if outcome.closed:
        response.headers["Stream-Closed"] = "true"
    if producer is not None:
        response.headers["Producer-Epoch"] = str(producer.epoch)
        response.headers["Producer-Seq"] = str(outcome.producer_seq)
    return response


# -- reads: catch-up, long-poll and SSE, for generic streams and runs alike ------------------


def _position(raw, source) -> int:
    if raw is None or raw == "-1":
        return 0
    if raw == "now":
        return source.tail()[0]
    return parse_offset(raw)


def read_response(source) -> Response:
    """A GET of ``source`` as the query asks: catch-up, ``live=long-poll`` or ``live=sse``."""
    try:
        offsets = request.args.getlist("offset")
        if len(offsets) > 1:
            raise StreamError(400, "invalid_offset", "give one offset")
        raw = offsets[0] if offsets else None
        if raw == "":
            raise StreamError(400, "invalid_offset", "the offset is empty")
        live = request.args.get("live")
        if live not in (None, "long-poll", "sse"):
            raise StreamError(400, "invalid_live", "live must be long-poll or sse")
        if live is not None and raw is None:
            raise StreamError(400, "offset_required", f"live={live} needs an offset")
        after = _position(raw, source)
        cursor = request.args.get("cursor")
        if live == "sse":
            return _sse_response(source, after, cursor)
        if raw == "now" and live is None:
            return _now_response(source)
        return _catch_up(source, raw or "-1", after, live, cursor)
    except BaseException:
        source.close()
        raise


def _now_response(source) -> Response:
    try:
        source.touch()
        tail, closed = source.tail()
    finally:
        source.close()
    response = Response(b"[]" if is_json(source.content_type) else b"", status=200, content_type=source.content_type)
    response.headers["Stream-Next-Offset"] = format_offset(tail)
    response.headers["Stream-Up-To-Date"] = "true"
    response.headers["Cache-Control"] = "no-store"
    if closed:
        response.headers["Stream-Closed"] = "true"
    return response


def _catch_up(source, start: str, after: int, live, cursor) -> Response:
    try:
        result = source.read(after)
        if live == "long-poll" and not result.messages and result.complete:
            if result.closed:
                return _no_content(result.offset, closed=True)
            timeout = service("config").long_poll_seconds
            arrived = source.wait(result.offset, timeout)
            source.touch()  # a reader waiting keeps a sliding TTL alive
            tail, closed = source.tail()
            if source.ended():
                raise StreamError(404, "stream_not_found", "the stream was deleted")
            result = source.read(result.offset) if arrived else result
            if not result.messages:
                return _no_content(result.offset, closed=closed, cursor=_cursor(cursor))
    finally:
        source.close()
    next_offset = format_offset(result.offset)
    response = Response(_encode(source.content_type, result.messages), status=200, content_type=source.content_type)
    response.headers["Stream-Next-Offset"] = next_offset
    if result.complete:
        response.headers["Stream-Up-To-Date"] = "true"
    if result.closed:
        response.headers["Stream-Closed"] = "true"
    if live == "long-poll":
        response.headers["Stream-Cursor"] = _cursor(cursor)
    response.headers["ETag"] = _etag(request.path, start, next_offset, result.closed)
    # A read short of the tail never changes: caches may keep it, a shared one only when
    # no login guards the server.
    if result.complete:
        response.headers["Cache-Control"] = "no-cache"
    else:
        response.headers["Cache-Control"] = ("private" if g.get("password_required") else "public") + ", max-age=60"
    if request.headers.get("If-None-Match") == response.headers["ETag"]:
        return Response(status=304, headers={"ETag": response.headers["ETag"]})
    return response


def _no_content(offset: int, closed: bool, cursor: str = None) -> Response:
    response = Response(status=204)
    response.headers["Stream-Next-Offset"] = format_offset(offset)
    response.headers["Stream-Up-To-Date"] = "true"
    if cursor is not None and not closed:
        response.headers["Stream-Cursor"] = cursor
    if closed:
        response.headers["Stream-Closed"] = "true"
    return response


def _sse_response(source, after: int, cursor) -> Response:
    binary = not is_text(source.content_type)
    timeout = service("config").long_poll_seconds
    response = Response(_sse_frames(source, after, cursor, binary, timeout), status=200,
                        content_type="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    if binary:
        response.headers["Stream-SSE-Data-Encoding"] = "base64"
    return response


def _sse_frames(source, after: int, cursor, binary: bool, timeout: float):
    json_mode = is_json(source.content_type)
    try:
        while True:
            result = source.read(after)
            # Every data event is followed by its control event (the offset after it), so a
            # client can resume after any message it has.
            frames = []
            for message in result.messages:
                frames.append(_sse_event("data", _sse_payload(message.payload, json_mode, binary)))
                if message is not result.messages[-1]:
                    frames.append(_sse_control(message.offset, cursor, up_to_date=False))
            after = result.offset
            if result.closed:
                frames.append(_sse_event("control", json.dumps({"streamNextOffset": format_offset(after),
                                                                "streamClosed": True})))
                yield "".join(frames).encode("utf-8")
                return
            frames.append(_sse_control(after, cursor, up_to_date=result.complete))
            yield "".join(frames).encode("utf-8")
            if not result.complete:
                continue
            while not source.wait(after, timeout):
                source.touch()  # a reader waiting keeps a sliding TTL alive
                tail, closed = source.tail()
                keep_alive = {"streamNextOffset": format_offset(after)}
                if closed:
                    keep_alive["streamClosed"] = True
                    yield _sse_event("control", json.dumps(keep_alive)).encode("utf-8")
                    return
                keep_alive.update(streamCursor=_cursor(cursor), upToDate=True)
                yield _sse_event("control", json.dumps(keep_alive)).encode("utf-8")
            if source.ended():
                return
    finally:
        source.close()


def _sse_control(offset: int, cursor, up_to_date: bool) -> str:
    control = {"streamNextOffset": format_offset(offset), "streamCursor": _cursor(cursor)}
    if up_to_date:
        control["upToDate"] = True
    return _sse_event("control", json.dumps(control))


def _sse_event(kind: str, payload: str) -> str:
    return f"event: {kind}\n" + sse_data(payload)


def _sse_payload(payload, json_mode: bool, binary: bool) -> str:
    if json_mode:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if binary:
        return base64.b64encode(payload).decode("ascii")
    return payload


def _encode(content_type: str, messages: list) -> bytes:
    if is_json(content_type):
        values = [value for message in messages for value in message.payload]
        return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if is_text(content_type):
        return "".join(message.payload for message in messages).encode("utf-8")
    return b"".join(message.payload for message in messages)


def _cursor(client_cursor) -> str:
    return response_cursor(client_cursor, time.time(), random.random())


def _etag(path: str, start: str, end: str, closed: bool) -> str:
    name = base64.b64encode(path.encode("utf-8")).decode("ascii")
    return f'"{name}:{start}:{end}{":c" if closed else ""}"'
