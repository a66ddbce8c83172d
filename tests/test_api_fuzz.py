"""Hostile and malformed requests against every route: always a 4xx JSON error (or a
success), never a 500, never an HTML page or a traceback. Seeded, so a failure reproduces."""

import http.client
import json
import random

import pytest

from tests.support import request

HOSTILE_IDS = [
    "", "..", "%2e%2e", "a" * 65, "a%20b", "a%00b", "%00", "%C3%A4", "-", "_", "con", "..%2f..%2fetc",
    "%252e%252e", "a/b", "a%5Cb", "0" * 64, "null", "%ff", "%c0%ae%c0%ae", "%EF%BF%BC", "'", "%22", "%3Cscript%3E",
]
BODIES = [
    b"", b"{", b"[]", b"null", b"1", b'"x"', b"{}", b'{"text": 5}', b'{"text": null}', b'{"text": ["a"]}',
    b'{"text": "hi", "attachments": "x"}', b'{"text": "hi", "attachments": [1]}', b'{"text": "hi", "attachments": ["../../x"]}',
    b'{"text": "hi", "attachments": [null]}', b'{"text": "hi", "agent": []}', b'{"text": "hi", "agent": "nope"}',
    b'{"title": 5}', b'{"title": ""}', b'{"title": "' + b"t" * 300 + b'"}', b'{"text": "\\ud800"}',
    b'{"text": "' + b"x" * 300_000 + b'"}', b"\xff\xfe\x00", b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b'{"text": 1e999}', b'{"text": "hi", "attachments": []}', b'{"title": "ok"}',
]
CURSORS = [None, "", "x", "-1", "1:2:3", ":5", "abc:", "abc:-1", "abc:1e3", "abc:99999999999999999999",
           "abc:0", "0", "18446744073709551616", "%00", "ä:1", " 1", "1 ", "0x10"]


def routes(session_id, run_id):
    yield "GET", "/api/sessions"
    yield "POST", "/api/sessions"
    for sid in [session_id, *HOSTILE_IDS]:
        yield "GET", f"/api/sessions/{sid}"
        yield "PATCH", f"/api/sessions/{sid}"
        yield "POST", f"/api/sessions/{sid}/runs"
        yield "GET", f"/api/sessions/{sid}/events"
        yield "POST", f"/api/sessions/{sid}/uploads"
        yield "GET", f"/api/sessions/{sid}/attachments/{random.choice(HOSTILE_IDS) or 'x'}"
        yield "GET", f"/api/session?session_id={sid}"
        yield "GET", f"/api/file/raw?session_id={sid}&path=/etc/passwd"
    for rid in [run_id, *HOSTILE_IDS]:
        yield "GET", f"/api/runs/{rid}"
        yield "POST", f"/api/runs/{rid}/cancel"
        yield "GET", f"/api/runs/{rid}/events"
        yield "GET", f"/api/runs/{rid}/journal?offset={random.choice(['x', '-1', '3', '99999999', ''])}"
    yield "GET", "/api/agents"
    yield "GET", "/api/nope"
    yield "PUT", "/api/sessions"
    yield "DELETE", "/api/agents"


@pytest.mark.timeout(300)
def test_no_request_gets_a_500_or_a_non_json_error(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "0"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "fuzz target")["run_id"]
    server.wait_run_finished(run_id)
    rng = random.Random(20261124)
    random.seed(20261124)
    seen = 0
    attempts = []
    for method, path in routes(session_id, run_id):
        attempts += [(method, path)] * 3 + [(rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]), path)]
    for method, path in attempts:
        if (method, path.split("?")[0]) == ("DELETE", f"/api/sessions/{session_id}"):
            continue  # deleting the fuzz target ends the fun early; deletion has its own tests
        body = rng.choice(BODIES) if method in ("POST", "PATCH", "PUT", "DELETE") else None
        headers = {}
        cursor = rng.choice(CURSORS)
        if cursor is not None and path.endswith("/events"):
            headers["Last-Event-ID"] = cursor
        if body is not None:
            headers["Content-Type"] = rng.choice(["application/json", "text/plain", "multipart/form-data; boundary=x"])
        if method == "GET" and path.split("?")[0].endswith("/events"):
            status, data, response_headers = open_stream(server.port, path, headers)
        else:
            status, data, response_headers = request(server.url, method, path, body, headers, timeout=10)
        seen += 1
        assert status < 500, (method, path, body[:80] if body else None, data[:300])
        if status >= 400:
            assert response_headers.get("Content-Type", "").startswith("application/json"), (method, path, status, data[:200])
            error = json.loads(data)["error"]
            assert error["code"] and error["message"]
            assert b"Traceback" not in data
        if status == 200 and method == "GET" and path.split("?")[0].endswith("/events"):
            assert response_headers["Content-Type"] == "text/event-stream"
    assert seen > 500


def open_stream(port, path, headers):
    """Status and headers of a stream request; a 200 stream is closed unread (it may never end)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        data = b"" if response.status == 200 else response.read()
        return response.status, data, dict(response.getheaders())
    finally:
        connection.close()
