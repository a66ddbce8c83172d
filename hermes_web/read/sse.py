"""Server-Sent Events framing (PROTOCOL 2.2). Pure: bytes in, bytes out."""

from hermes_web.core.codec import encode_line

HEADERS = {
    # Exactly the media type PROTOCOL 2.2 names; SSE is UTF-8 by definition.
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
PING = b": ping\n\n"


def format_cursor(run_id: str, offset: int) -> str:
    return f"{run_id}:{offset}"


def retry_frame(retry_ms: int) -> bytes:
    """The first frame of every stream: how long EventSource waits before reconnecting."""
    return b"retry: %d\n\n" % retry_ms


def record_frame(run_id: str, end_offset: int, line: bytes, record_type: str) -> bytes:
    """One journal record as a frame; ``line`` is the record's JSON line without ``\\n``."""
    return b"id: %s:%d\nevent: %s\ndata: %s\n\n" % (run_id.encode(), end_offset, event_name(record_type).encode(), line)


def damaged_frame(run_id: str, end_offset: int, size: int) -> bytes:
    """A line that is not a record (PROTOCOL 1.4), with its cursor so offsets stay valid."""
    return b'id: %s:%d\nevent: record.damaged\ndata: {"type":"record.damaged","bytes":%d}\n\n' % (
        run_id.encode(), end_offset, size)


def event_frame(event: str, data: dict) -> bytes:
    """A session-level frame. It has no ``id``: the client's cursor stays where it was."""
    return b"event: %s\ndata: %s\n\n" % (event.encode(), encode_line(data)[:-1])


def event_name(record_type: str) -> str:
    """The frame's ``event`` for a record type: the type itself unless it could break the
    frame (a line break, an unprintable character), then ``message``."""
    return record_type if record_type.isprintable() else "message"
