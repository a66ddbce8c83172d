"""Upload and attachment routes (PROTOCOL 2, 2.3); docs/attachments.md has the rules."""

import os
import re
import shutil
import unicodedata
import urllib.parse

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable, RequestEntityTooLarge
from werkzeug.http import parse_options_header, parse_range_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wsgi import wrap_file

from hermes_web.core.attachment_markers import attached_file_paths
from hermes_web.core.safepath import UnsafePath, open_beneath, resolve_inside
from hermes_web.core.services import service
from hermes_web.core.sniff import HEAD_BYTES, TextDetector, is_inline, served_content_type, sniff_mime
from hermes_web.read.fold import attachment_url
from hermes_web.store.uploads import UnknownAttachment, UploadTooLarge, display_name, public_metadata
from hermes_web.web.api import session_or_404
from hermes_web.web.errors import ApiError, error_response
from hermes_web.web.guard import multipart
from hermes_web.web.inputs import checked_id

blueprint = Blueprint("uploads", __name__, url_prefix="/api")

FILE_FIELD = "file"
MAX_FILES_PER_REQUEST = 20
CHUNK_BYTES = 64 * 1024
# Part headers and ignored form fields are held in memory: keep them small.
MAX_PART_HEADER_BYTES = 16 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = MAX_FILES_PER_REQUEST + 16
# RFC 2046: 1-70 characters from this set.
BOUNDARY_PATTERN = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# Served bytes are never a document of this origin: no script, no plugins, no same-origin.
SANDBOX_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


# ---------------------------------------------------------------- upload


@blueprint.post("/sessions/<session_id>/uploads")
@multipart
def upload(session_id):
    session_or_404(session_id)
    store = service("uploads")
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "uploads are multipart/form-data with one or more 'file' fields")
    boundary = options.get("boundary", "")
    if not BOUNDARY_PATTERN.fullmatch(boundary):
        raise ApiError(400, "malformed_multipart", "multipart boundary is missing or invalid")
    overhead = MAX_PARTS * (MAX_PART_HEADER_BYTES + 256) + MAX_FIELD_BYTES
    if request.content_length is not None and request.content_length > MAX_FILES_PER_REQUEST * store.limit + overhead:
        raise _too_large(store.limit, drain=False)
    receiving = store.receive(session_id)
    try:
        # The decoder's memory bound applies to what one read hands it plus what it holds back.
        decoder = MultipartDecoder(boundary.encode("ascii"), CHUNK_BYTES + MAX_PART_HEADER_BYTES, max_parts=MAX_PARTS)
        _receive_files(decoder, receiving)
        if not receiving.files:
            raise ApiError(400, "no_file", "no 'file' field in the upload")
        metas = receiving.commit()
    except UploadTooLarge as error:
        raise _too_large(error.limit, drain=True) from None
    except RequestEntityTooLarge:
        raise ApiError(413, "upload_too_large", "too many parts or oversized part headers") from None
    except ValueError:
        raise ApiError(400, "malformed_multipart", "the multipart body is malformed") from None
    finally:
        receiving.abort()
    if not service("sessions").exists(session_id):
        # Deleted while the body streamed: take the files with it rather than orphan them.
        shutil.rmtree(service("data_dir").uploads_dir(session_id), ignore_errors=True)
        raise ApiError(404, "session_not_found", f"no session {session_id}")
    attachments = [dict(public_metadata(meta), url=attachment_url(session_id, meta["id"])) for meta in metas]
    return jsonify({"attachments": attachments}), 201


def _receive_files(decoder: MultipartDecoder, receiving) -> None:
    """Stream every ``file`` part to its temporary file; other fields are read and dropped."""
    stream = request.stream
    current = None
    field_bytes = 0
    while True:
        event = decoder.next_event()
        if isinstance(event, NeedData):
            decoder.receive_data(stream.read(CHUNK_BYTES) or None)
        elif isinstance(event, File) and event.name == FILE_FIELD:
            if not event.filename.strip():
                raise ApiError(400, "missing_filename", "each uploaded file needs a file name")
            if len(receiving.files) >= MAX_FILES_PER_REQUEST:
                raise ApiError(413, "too_many_files", f"at most {MAX_FILES_PER_REQUEST} files per upload")
            current = receiving.new_file(event.filename)
        elif isinstance(event, (File, Field)):
            current = None
        elif isinstance(event, Data):
            if current is not None:
                current.write(event.data)
            else:
                field_bytes += len(event.data)
                if field_bytes > MAX_FIELD_BYTES:
                    raise ApiError(413, "upload_too_large", "form fields other than 'file' are too large")
            if not event.more_data:
                current = None
        elif isinstance(event, Epilogue):
            return


def _too_large(limit: int, drain: bool) -> ApiError:
    if drain:
        # Read (a bounded amount of) the rest so the client sees the 413 instead of a reset.
        remaining = limit
        while remaining > 0:
            chunk = request.stream.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    return ApiError(413, "file_too_large", f"each file may be at most {limit} bytes", limit=limit)


# ---------------------------------------------------------------- serving


@blueprint.get("/sessions/<session_id>/attachments/<attachment_id>")
def attachment(session_id, attachment_id):
    session_or_404(session_id)
    checked_id(attachment_id, "attachment")
    store = service("uploads")
    try:
        meta = store.get(session_id, attachment_id)
        fd = store.open_blob(session_id, meta)
    except UnknownAttachment:
        raise ApiError(404, "attachment_not_found", f"no attachment {attachment_id} in this session") from None
    return _send(fd, meta["mime"], meta["name"], etag=meta["sha256"])


@blueprint.get("/file/raw")
def raw_file():
    """Compatibility route: a file named by this session's attachments or legacy markers."""
    session_id = request.args.get("session_id", "")
    session_or_404(session_id)
    store = service("uploads")
    not_found = ApiError(404, "file_not_found", "no such file in this session")  # never echoes the path
    try:
        real_root, parts = resolve_inside(store.real_root(), request.args.get("path", ""))
        if not store.is_servable_part(session_id, parts):
            raise not_found
        real_path = os.path.join(real_root, *parts)
        checked = os.stat(real_path, follow_symlinks=False)
        if real_path not in _referenced_paths(session_id):
            raise not_found
        fd = open_beneath(real_root, parts)
    except (UnsafePath, OSError):
        raise not_found from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
        os.close(fd)  # replaced between the check and the open
        raise not_found
    meta = _blob_metadata(store, session_id, parts)
    if meta is not None:
        return _send(fd, meta["mime"], meta["name"], etag=meta["sha256"])
    name = display_name(os.path.basename(request.args["path"]))
    head = os.pread(fd, HEAD_BYTES, 0)
    text = TextDetector()
    text.feed(head)
    is_text = text.finish() if opened.st_size <= HEAD_BYTES else text.is_text
    etag = f"{opened.st_ino:x}-{opened.st_size:x}-{opened.st_mtime_ns:x}"
    return _send(fd, sniff_mime(head, is_text, name), name, etag=etag)


def _referenced_paths(session_id: str) -> set:
    """Real paths the session references: its attachments' content and legacy markers."""
    referenced = service("uploads").referenced_paths(session_id)
    for message in service("views").every_message(session_id):
        if message.get("role") == "user":
            for path in attached_file_paths(message.get("text")):
                if "\x00" not in path:
                    referenced.add(os.path.realpath(path))
    return referenced


def _blob_metadata(store, session_id: str, parts):
    if len(parts) == 3 and parts[0] == session_id and parts[1] == "blobs":
        for meta in store.list(session_id):
            if meta["sha256"] == parts[2]:
                return meta
    return None


def _send(fd: int, mime: str, name: str, etag: str):
    """The file's bytes with the sandboxing headers; conditional (ETag) and single-range aware."""
    handle = os.fdopen(fd, "rb")
    size = os.fstat(fd).st_size
    response = current_app.response_class(
        wrap_file(request.environ, handle), content_type=served_content_type(mime), direct_passthrough=True
    )
    response.content_length = size
    response.set_etag(etag)
    response.headers["Content-Disposition"] = content_disposition("inline" if is_inline(mime) else "attachment", name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = SANDBOX_CSP
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "private, no-cache"
    environ = request.environ
    parsed = parse_range_header(environ.get("HTTP_RANGE"))
    if "HTTP_RANGE" in environ and (parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1):
        # Several ranges, other units or a malformed header: the whole file (RFC 9110 14.2).
        environ = {key: value for key, value in environ.items() if key != "HTTP_RANGE"}
    try:
        return response.make_conditional(environ, accept_ranges=True, complete_length=size)
    except RequestedRangeNotSatisfiable:
        handle.close()
        refused = error_response(416, "range_not_satisfiable", "the requested range is outside the file")
        refused.headers["Content-Range"] = f"bytes */{size}"
        return refused


def content_disposition(kind: str, name: str) -> str:
    """``kind`` with an ASCII ``filename`` fallback and the exact name as RFC 5987 ``filename*``."""
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = re.sub(r"[^A-Za-z0-9._()+\- ]", "_", fallback).strip(" .") or "file"
    quoted = urllib.parse.quote(name, safe="!#$&+-.^_`|~")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"
