"""One error format for every response: ``{"error": {"code", "message"}}`` (PROTOCOL 2)."""

import errno
import logging
import re

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from hermes_web.core.codec import encode_line
from hermes_web.core.metrics import metrics
from hermes_web.core.services import find_service
from hermes_web.store.logstore import StoreFull, StoreUnavailable

log = logging.getLogger(__name__)
DISK_FULL_MESSAGE = "the disk that holds the data dir is full; free some space and try again"


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``extra`` fields join the error object."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra):
    metrics.refused(code)
    redaction = find_service(current_app, "redaction")
    if redaction is not None:
        message = redaction.text(message)  # error text can quote user input
    # Extra fields (the active run_id of a 409, the session_id of a 410) also stand at the
    # top level, where a client checking a conflict looks first.
    body = {"error": {"code": code, "message": message, **extra}, **extra}
    response = current_app.response_class(
        encode_line(body)[:-1], status=status, mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app) -> None:
    """Register the handlers that turn every failure into the JSON error body."""

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        return error_response(error.status, error.code, error.message, **error.extra)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        code = re.sub(r"[^a-z0-9]+", "_", (error.name or "error").lower()).strip("_")
        response = error_response(error.code or 500, code, error.description or error.name)
        # Keep what the exception says beside its body: Allow on 405, Content-Range on 416.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(StoreFull)
    def handle_store_full(error: StoreFull):
        log.warning("%s %s: the disk is full: %s", request.method, request.path, error)
        return error_response(507, "disk_full", DISK_FULL_MESSAGE)

    @app.errorhandler(StoreUnavailable)
    def handle_store_unavailable(error: StoreUnavailable):
        log.warning("%s %s: the store is unavailable: %s", request.method, request.path, error)
        response = error_response(503, "store_unavailable", "the data store cannot be reached right now; try again shortly")
        # A shared store (Redis) comes back by itself: the client is told when to retry.
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(OSError)
    def handle_storage_error(error: OSError):
        # The data dir failed under the request (a full disk, a file this user cannot read, a
        # failing disk): say which, name no path, keep the rest of the server answering.
        log.warning("%s %s: storage error: %s", request.method, request.path, error)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error_response(507, "disk_full", DISK_FULL_MESSAGE)
        if error.errno in (errno.EACCES, errno.EPERM):
            reason = "a file of it cannot be read or written by the server (permission denied)"
        elif error.errno == errno.EROFS:
            reason = "the data dir is on a read-only file system"
        else:
            reason = f"the disk failed reading or writing it ({error.strerror or 'I/O error'})"
        return error_response(503, "storage_error", f"this request could not be served: {reason}")

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        # Never a traceback on the wire; the log has it.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
