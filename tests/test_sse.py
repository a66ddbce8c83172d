"""SSE framing: pure bytes in, bytes out (PROTOCOL 2.2)."""

import json

import pytest

from hermes_web import sse


def test_record_frame_carries_id_event_and_the_line_verbatim():
    line = b'{"type":"text.delta","ts":1.5,"text":"a\\nb"}'
    assert sse.record_frame("r1", 120, line) == (
        b'id: r1:120\nevent: text.delta\ndata: {"type":"text.delta","ts":1.5,"text":"a\\nb"}\n\n')
    assert sse.record_frame("r1", 120, line, "custom") == (
        b"id: r1:120\nevent: custom\ndata: " + line + b"\n\n")


def test_retry_ping_and_session_frames():
    assert sse.retry_frame(2000) == b"retry: 2000\n\n"
    assert sse.PING == b": ping\n\n"
    assert sse.event_frame("session.updated", {"id": "s", "title": "Ünï"}) == (
        'event: session.updated\ndata: {"id":"s","title":"Ünï"}\n\n'.encode())
    assert b"id:" not in sse.event_frame("session.deleted", {"id": "s"})
    assert sse.format_cursor("r1", 0) == "r1:0"


@pytest.mark.parametrize("line, expected", [
    (b'{"type":"run.started","ts":1}', "run.started"),
    (b'{"ts":1,"type":"tool.finished"}', "tool.finished"),  # not first: parsed
    (b'{"type":"a\\"b","ts":1}', 'a"b'),  # escaped: parsed, still printable
    (b'{"type":"a\\nb"}', "message"),  # a newline would break the frame
    (b'{"type":5}', "message"),
    (b'{"ts":1}', "message"),
    (b"[1,2]", "message"),
    (b"not json", "message"),
])
def test_record_type_of(line, expected):
    assert sse.record_type_of(line) == expected


def test_headers_forbid_caching_and_proxy_buffering():
    assert sse.HEADERS == {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    frame = sse.record_frame("r", 3, json.dumps({"type": "x"}).encode())
    assert frame.endswith(b"\n\n") and frame.count(b"\n") == 4
