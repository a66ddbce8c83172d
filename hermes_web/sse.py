"""Server-Sent Events framing (PROTOCOL 2.2). Pure: bytes in, bytes out."""

import json

HEADERS = {
    # Exactly the media type PROTOCOL 2.2 names; SSE is UTF-8 by definition.
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
PING = b": ping\n\n"
_TYPE_PREFIX = b'{"type":"'


def format_cursor(run_id: str, offset: int) -> str:
    return f"{run_id}:{offset}"


def retry_frame(retry_ms: int) -> bytes:
    """The first frame of every stream: how long EventSource waits before reconnecting."""
    return b"retry: %d\n\n" % retry_ms


def record_frame(run_id: str, end_offset: int, line: bytes, record_type: str = None) -> bytes:
    """One journal record as a frame; ``line`` is the record's JSON line without ``\\n``."""
    if record_type is None:
        record_type = record_type_of(line)
    return b"id: %s:%d\nevent: %s\ndata: %s\n\n" % (run_id.encode(), end_offset, record_type.encode(), line)


def event_frame(event: str, data: dict) -> bytes:
    """A session-level frame. It has no ``id``: the client's cursor stays where it was."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return b"event: %s\ndata: %s\n\n" % (event.encode(), payload)


def record_type_of(line: bytes) -> str:
    """The ``type`` of a journal line, cheaply when it comes first (as this server writes it)."""
    if line.startswith(_TYPE_PREFIX):
        end = line.find(b'"', len(_TYPE_PREFIX))
        if end > 0:
            candidate = line[len(_TYPE_PREFIX):end]
            if b"\\" not in candidate:
                return candidate.decode()
    try:
        kind = json.loads(line).get("type")
    except (ValueError, AttributeError):
        kind = None
    return kind if isinstance(kind, str) and kind.isprintable() and "\n" not in kind else "message"
