"""SSE framing: pure bytes in, bytes out (PROTOCOL 2.2)."""

import json

import pytest

from hermes_web.read import sse


def test_record_frame_carries_id_event_and_the_line_verbatim():
    line = b'{"type":"text.delta","ts":1.5,"text":"a\\nb"}'
    assert sse.record_frame("r1", 120, line, "text.delta") == (
        b'id: r1:120\nevent: text.delta\ndata: {"type":"text.delta","ts":1.5,"text":"a\\nb"}\n\n')
    assert sse.record_frame("r1", 120, line, "custom") == (
        b"id: r1:120\nevent: custom\ndata: " + line + b"\n\n")


def test_a_damaged_line_is_a_frame_with_its_cursor_and_size():
    assert sse.damaged_frame("r1", 200, 17) == (
        b'id: r1:200\nevent: record.damaged\ndata: {"type":"record.damaged","bytes":17}\n\n')


def test_retry_ping_and_session_frames():
    assert sse.retry_frame(2000) == b"retry: 2000\n\n"
    assert sse.PING == b": ping\n\n"
    assert sse.event_frame("session.updated", {"id": "s", "title": "Ünï"}) == (
        'event: session.updated\ndata: {"id":"s","title":"Ünï"}\n\n'.encode())
    assert b"id:" not in sse.event_frame("session.deleted", {"id": "s"})
    assert sse.format_cursor("r1", 0) == "r1:0"


@pytest.mark.parametrize("record_type, expected", [
    ("run.started", "run.started"),
    ('a"b', 'a"b'),  # printable: kept
    ("a\nb", "message"),  # a newline would break the frame
    ("a\rb", "message"),
    ("\u2028", "message"),
])
def test_event_name(record_type, expected):
    assert sse.event_name(record_type) == expected


def test_headers_forbid_caching_and_proxy_buffering():
    assert sse.HEADERS == {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    frame = sse.record_frame("r", 3, json.dumps({"type": "x"}).encode(), "x")
    assert frame.endswith(b"\n\n") and frame.count(b"\n") == 4
