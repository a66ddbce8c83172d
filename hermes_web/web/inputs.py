"""Request input helpers: ids, JSON bodies, cursors. Each failure is a 4xx ApiError."""

import json

from flask import request

from hermes_web.core.cursors import CursorError, parse_cursor
from hermes_web.core.ids import is_valid_id
from hermes_web.core.services import service
from hermes_web.web.errors import ApiError


def checked_id(value: str, kind: str) -> str:
    """``value`` if it is a well-formed id; 400 before it can reach a path otherwise."""
    if not is_valid_id(value):
        raise ApiError(400, "invalid_id", f"{kind} id must match ^[A-Za-z0-9_-]{{1,64}}$")
    return value


def bounded_body(limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (413 beyond, before reading it all)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
    return data


def json_body(required: bool = True, limit: int = None) -> dict:
    """The request's JSON object, read with a size limit (413) and parsed strictly (400)."""
    data = bounded_body(limit or service("config").max_json_bytes)
    if not data.strip():
        if required:
            raise ApiError(400, "invalid_json", "a JSON object body is required")
        return {}
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    except RecursionError:  # a megabyte of "[" nests deeper than the parser's stack
        raise ApiError(400, "invalid_json", "request body nests too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    try:
        # JSON may spell a lone surrogate ("\\ud800"), which is no character: it would
        # fail much later, writing metadata or a journal line as UTF-8.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_json", "request body holds a lone surrogate (\\ud800-\\udfff)") from None
    return body


def requested_cursor(default_run_id: str = None):
    """The start cursor: ``Last-Event-ID``, else ``?cursor=``, else None (the beginning)."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        raw = request.args.get("cursor")
    if raw is None:
        return None
    try:
        return parse_cursor(raw.strip(), default_run_id)
    except CursorError as error:
        raise ApiError(400, "invalid_cursor", str(error)) from None
