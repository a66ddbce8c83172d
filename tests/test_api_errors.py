"""Every failure is a 4xx JSON error ``{"error": {"code", "message"}}``, never a 500, an HTML
page or a traceback; and session CRUD (PROTOCOL 2)."""

import json
import re
import socket

import pytest

from tests.support import ServerProcess, SseClient, request

UNKNOWN_ID = "nosuchthing0000"
BAD_IDS = ["a.b", "x" * 65, "%2E%2E", "a%20b", "a%00b", "%C3%A9", "a:b", "a%2Fb"]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("api") / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "1"}).start()
    session_id = server.create_session()
    run_id = server.start_run(session_id, "an existing run")["run_id"]
    server.wait_run_finished(run_id)
    server.known = (session_id, run_id)
    yield server
    server.stop()
    log = server.log_path.read_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
    assert re.search(r'" 5\d\d ', log) is None, "a request was answered with a 5xx"


def assert_json_error(status, body, headers, expected_status=None, code=None):
    assert 400 <= status < 500, (status, body[:300])
    if expected_status is not None:
        assert status == expected_status, (status, body[:300])
    assert headers["Content-Type"].startswith("application/json"), headers
    lowered = body.lower()
    assert b"traceback" not in lowered and b"<html" not in lowered and b"<!doctype" not in lowered
    error = json.loads(body)["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def id_paths(session_id, run_id):
    """Every endpoint taking ids, as (method, path template with {sid} and {rid}, JSON body)."""
    return [
        ("GET", "/api/sessions/{sid}", None),
        ("PATCH", "/api/sessions/{sid}", {"title": "x"}),
        ("DELETE", "/api/sessions/{sid}", None),
        ("POST", "/api/sessions/{sid}/runs", {"text": "hi"}),
        ("GET", "/api/sessions/{sid}/events", None),
        ("GET", "/api/session?session_id={sid}", None),
        ("GET", "/api/runs/{rid}", None),
        ("POST", "/api/runs/{rid}/cancel", None),
        ("GET", "/api/runs/{rid}/events", None),
        ("GET", "/api/runs/{rid}/journal?offset=0", None),
        ("GET", "/api/sessions/{sid}/attachments/{rid}", None),
        ("GET", "/api/file/raw?session_id={sid}&path=x.txt", None),
    ]


def test_unknown_ids_get_404_json_on_every_endpoint(api_server):
    for method, template, body in id_paths(*api_server.known):
        path = template.format(sid=UNKNOWN_ID, rid=UNKNOWN_ID)
        status, data, headers = request(api_server.url, method, path, body)
        assert_json_error(status, data, headers, 404)


def test_ids_failing_the_pattern_get_4xx_json_on_every_endpoint(api_server):
    for method, template, body in id_paths(*api_server.known):
        for bad in BAD_IDS:
            path = template.format(sid=bad, rid=bad)
            status, data, headers = request(api_server.url, method, path, body)
            error = assert_json_error(status, data, headers)
            assert status in (400, 404), (method, path, status)
            if status == 400:
                assert error["code"] in ("invalid_id", "invalid_path", "bad_request"), error


def test_missing_session_id_on_the_compatibility_route(api_server):
    status, data, headers = request(api_server.url, "GET", "/api/session")
    assert_json_error(status, data, headers, 400, "missing_parameter")


MALFORMED_BODIES = [
    (b"{", "invalid_json"),
    (b"{'text': 'hi'}", "invalid_json"),
    (b'{"text": "hi",}', "invalid_json"),
    (b"\xff\xfe{}", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'"a string"', "invalid_json"),
    (b"42", "invalid_json"),
    (b"null", "invalid_json"),
    (b"true", "invalid_json"),
    (b"NaN-ish", "invalid_json"),
]


@pytest.mark.parametrize("payload, code", MALFORMED_BODIES)
def test_malformed_and_non_object_json_bodies_get_400(api_server, payload, code):
    session_id, _ = api_server.known
    for method, path in (("POST", "/api/sessions"), ("PATCH", f"/api/sessions/{session_id}"),
                         ("POST", f"/api/sessions/{session_id}/runs")):
        status, data, headers = request(api_server.url, method, path, payload,
                                        headers={"Content-Type": "application/json"})
        assert_json_error(status, data, headers, 400, code)


def test_invalid_fields_get_400(api_server):
    session_id, _ = api_server.known
    cases = [
        ("POST", f"/api/sessions/{session_id}/runs", {"text": ""}, "empty_message"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "   "}, "empty_message"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": 5}, "invalid_text"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "x" * 200_001}, "invalid_text"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi", "attachments": "a1"}, "invalid_attachments"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi", "attachments": [1]}, "invalid_attachments"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi", "attachments": ["../x"]}, "invalid_id"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi", "attachments": ["nope"]}, "unknown_attachment"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi", "agent": "nope"}, "unknown_agent"),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi", "agent": 3}, "unknown_agent"),
        ("PATCH", f"/api/sessions/{session_id}", {"title": ""}, "invalid_title"),
        ("PATCH", f"/api/sessions/{session_id}", {"title": "t" * 201}, "invalid_title"),
        ("PATCH", f"/api/sessions/{session_id}", {"title": 7}, "invalid_title"),
        ("PATCH", f"/api/sessions/{session_id}", {}, "nothing_to_change"),
        ("POST", "/api/sessions", {"title": ["x"]}, "invalid_title"),
    ]
    for method, path, body, code in cases:
        status, data, headers = request(api_server.url, method, path, body)
        assert_json_error(status, data, headers, 400, code)
    # Nothing above started a run.
    assert api_server.api("GET", f"/api/sessions/{session_id}")[1]["active_run"] is None


def raw_request(server, head: bytes, body: bytes = b"") -> tuple:
    """Send raw bytes and read the whole answer (the server may stop reading the body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    response = b"".join(chunks)
    head_part, _, body_part = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.decode().partition(":")
        headers[name.strip()] = value.strip()
    if headers.get("Transfer-Encoding") == "chunked":
        decoded, rest = b"", body_part
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        body_part = decoded
    return int(status_line.split()[1]), body_part, headers


def test_bodies_over_one_mebibyte_get_413(api_server):
    session_id, _ = api_server.known
    big = json.dumps({"text": "x" * (1024 * 1024 + 10)}).encode()
    for method, path in (("POST", "/api/sessions"), ("PATCH", f"/api/sessions/{session_id}"),
                         ("POST", f"/api/sessions/{session_id}/runs")):
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(big)}\r\nConnection: close\r\n\r\n").encode()
        status, data, headers = raw_request(api_server, head, big)
        assert_json_error(status, data, headers, 413, "body_too_large")
    # Without a Content-Length (chunked), the limit still holds.
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536]) for i in range(0, len(big), 65536))
    head = (f"POST /api/sessions/{session_id}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, data, headers = raw_request(api_server, head, chunked + b"0\r\n\r\n")
    assert_json_error(status, data, headers, 413, "body_too_large")
    assert api_server.api("GET", f"/api/sessions/{session_id}")[1]["active_run"] is None


def test_wrong_methods_and_unknown_paths_get_json_errors(api_server):
    session_id, run_id = api_server.known
    cases = [
        ("PUT", "/api/sessions", 405),
        ("DELETE", "/api/sessions", 405),
        ("POST", f"/api/sessions/{session_id}", 405),
        ("PUT", f"/api/sessions/{session_id}", 405),
        ("GET", f"/api/sessions/{session_id}/runs", 405),
        ("DELETE", f"/api/runs/{run_id}", 405),
        ("GET", f"/api/runs/{run_id}/cancel", 405),
        ("POST", f"/api/runs/{run_id}/events", 405),
        ("POST", f"/api/sessions/{session_id}/events", 405),
        ("GET", "/api/nothing-here", 404),
        ("GET", "/api/runs", 404),
        ("GET", "/nothing-here", 404),
    ]
    for method, path, expected in cases:
        status, data, headers = request(api_server.url, method, path)
        assert_json_error(status, data, headers, expected)
        if expected == 405:
            assert method not in headers["Allow"]


def test_session_crud(server):
    status, created, headers = server.api("POST", "/api/sessions", {})
    assert status == 201 and headers["Content-Type"] == "application/json"
    assert set(created) == {"id", "title", "created_at", "updated_at"}
    first = created["id"]
    second = server.api("POST", "/api/sessions", {"title": "  Named  "})[1]
    assert second["title"] == "Named"
    third = server.create_session()
    listed = server.api("GET", "/api/sessions")[1]
    assert [item["id"] for item in listed][:3] == [third, second["id"], first]
    assert all(item["active_run"] is None for item in listed)
    # Activity moves a session to the top; a running one shows its active run.
    run_id = server.start_run(first, "activity")["run_id"]
    listed = server.api("GET", "/api/sessions")[1]
    assert listed[0]["id"] == first
    assert listed[0]["active_run"] in ({"id": run_id}, None)
    server.wait_run_finished(run_id)
    status, renamed, _ = server.api("PATCH", f"/api/sessions/{second['id']}", {"title": "Renamed"})
    assert status == 200 and renamed["title"] == "Renamed"
    assert server.api("GET", "/api/sessions")[1][0]["id"] == second["id"]
    # The compatibility route answers the same view.
    status, view, _ = server.api("GET", f"/api/sessions/{first}")
    status_compat, compat, _ = server.api("GET", f"/api/session?session_id={first}")
    # The paged view adds has_more (PROTOCOL 2.6); the compatibility route keeps the v1 shape.
    assert view.pop("has_more") is False and "before" not in view
    assert status == status_compat == 200 and compat == view and len(view["messages"]) == 2
    # Delete: metadata, journals and transcript gone; open session streams learn it.
    transcript = server.data_dir / "transcripts" / f"{first}.jsonl"
    transcript.write_bytes(b"")
    journals = server.data_dir / "journals" / first
    assert journals.is_dir()
    stream = SseClient(server.url, f"/api/sessions/{first}/events?cursor={view['cursor']}", timeout=30)
    try:
        frames = stream.frames()
        assert next(frames) == {"retry": "2000"}
        status, data, _ = request(server.url, "DELETE", f"/api/sessions/{first}")
        assert status == 204 and data == b""
        deleted = next(frames)
        assert deleted["event"] == "session.deleted" and json.loads(deleted["data"]) == {"id": first}
    finally:
        stream.close()
    assert not journals.exists() and not transcript.exists()
    assert not (server.data_dir / "sessions" / f"{first}.json").exists()
    status, data, headers = request(server.url, "GET", f"/api/sessions/{first}")
    assert_json_error(status, data, headers, 404, "session_not_found")
    assert first not in [item["id"] for item in server.api("GET", "/api/sessions")[1]]
    status, data, headers = request(server.url, "GET", f"/api/runs/{run_id}")
    assert_json_error(status, data, headers, 404, "run_not_found")


def test_deleting_a_session_with_an_active_run_cancels_it_first(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "50"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "busy")["run_id"]
    status, _, _ = server.api("DELETE", f"/api/sessions/{session_id}")
    assert status == 204
    assert not (server.data_dir / "journals" / session_id).exists()
    status, data, headers = request(server.url, "GET", f"/api/runs/{run_id}")
    assert_json_error(status, data, headers, 404)
