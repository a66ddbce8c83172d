"""Every request passes the Host, Origin and media-type checks, and no route grants CORS
(PROTOCOL 2.5); and the small holes the same probe found. Real server, real sockets."""

import http.client
import json
import socket

import pytest

from tests.support import ServerProcess, request, url_map_routes

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
UPLOAD_ENDPOINT = "uploads.upload"
# Views that take any media type and check it themselves (uploads; Durable Streams, whose
# stream holds the type it was created with).
OWN_MEDIA_TYPE_ENDPOINTS = {UPLOAD_ENDPOINT, "durable_streams.stream"}


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """A loopback server without a password, a session with one finished run, and the URL map."""
    root = tmp_path_factory.mktemp("guard")
    server = ServerProcess(root / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "0"}).start()
    session_id = server.create_session()
    run_id = server.start_run(session_id, "a run to look at")["run_id"]
    server.wait_run_finished(run_id)
    server.known = (session_id, run_id)
    server.routes = url_map_routes(root / "map", session_id, run_id)
    yield server
    server.stop()
    log = server.log_path.read_text()
    # The status follows the request line's closing quote (a response may be 500 bytes long).
    assert "Traceback" not in log and '" 500 ' not in log, log[-3000:]


def json_error(status, data, headers, expected_status, code):
    assert status == expected_status, (status, data[:300])
    assert headers["Content-Type"] == "application/json", headers
    error = json.loads(data)["error"]
    assert error["code"] == code and error["message"]
    return error


def state(server) -> list:
    """What a forged request could change: the sessions, each with its messages."""
    sessions = server.api("GET", "/api/sessions")[1]
    return sorted((item["id"], item["title"], len(server.api("GET", f"/api/sessions/{item['id']}")[1]["messages"]))
                  for item in sessions)


def test_a_foreign_host_gets_no_data_on_any_route(open_server):
    before = state(open_server)
    for method, path, _ in open_server.routes:
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{open_server.port}",
                     "127.0.0.1.attacker.example", f"localhost:{open_server.port}, evil.example", ""):
            body = {"title": "x", "text": "x"} if method in STATE_CHANGING else None
            status, data, headers = request(open_server.url, method, path, body, headers={"Host": host})
            error = json_error(status, data, headers, 400, "host_not_allowed")
            assert open_server.known[0] not in json.dumps(error)
    assert state(open_server) == before
    for host in ("localhost", f"localhost:{open_server.port}", "127.0.0.1", f"[::1]:{open_server.port}", "LOCALHOST."):
        assert request(open_server.url, "GET", "/api/sessions", headers={"Host": host})[0] == 200, host


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:1"},  # another port of this machine: same site, other origin
    {"Origin": "http://localhost"},
    {"Origin": "https://attacker.example"},
    {"Origin": "null"},  # sandboxed frames, file: pages
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
], ids=["other-port", "localhost-80", "other-site", "null", "cross-site", "same-site"])
def test_a_foreign_origin_changes_nothing_on_any_route(open_server, headers):
    before = state(open_server)
    checked = 0
    for method, path, _ in open_server.routes:
        if method not in STATE_CHANGING:
            continue
        status, data, response_headers = request(open_server.url, method, path, {"text": "x", "title": "x"}, headers)
        json_error(status, data, response_headers, 403, "cross_origin")
        checked += 1
    assert checked >= 6
    assert state(open_server) == before


def test_the_servers_own_pages_and_clients_without_origin_may_change_things(open_server):
    own = {"Origin": f"http://127.0.0.1:{open_server.port}", "Sec-Fetch-Site": "same-origin"}
    status, created, _ = open_server.api("POST", "/api/sessions", {"title": "from the page"}, headers=own)
    assert status == 201
    status, _, _ = open_server.api("PATCH", f"/api/sessions/{created['id']}", {"title": "renamed"},
                                   headers={"Sec-Fetch-Site": "none"})
    assert status == 200
    assert open_server.api("DELETE", f"/api/sessions/{created['id']}")[0] == 204  # curl: no Origin at all


@pytest.mark.parametrize("content_type, body", [
    ("text/plain", '{"text": "x", "title": "x"}'),
    ("text/plain;charset=UTF-8", '{"text": "x"}'),
    ("application/x-www-form-urlencoded", "text=x&title=x"),
    ("multipart/form-data; boundary=B", '--B\r\nContent-Disposition: form-data; name="text"\r\n\r\nx\r\n--B--\r\n'),
    ("application/jsonp", '{"text": "x"}'),
    (None, '{"text": "x"}'),
])
def test_a_body_that_is_not_json_gets_415_on_every_json_route(open_server, content_type, body):
    before = state(open_server)
    checked = 0
    for method, path, endpoint in open_server.routes:
        if method not in STATE_CHANGING or endpoint in OWN_MEDIA_TYPE_ENDPOINTS:
            continue
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body.encode())}\r\nConnection: close\r\n"
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        status, data, headers = raw_request(open_server, (head + "\r\n" + body).encode())
        json_error(status, data, headers, 415, "unsupported_media_type")
        checked += 1
    assert checked >= 6
    assert state(open_server) == before


def test_uploads_take_multipart_only(open_server):
    session_id, _ = open_server.known
    status, data, headers = request(open_server.url, "POST", f"/api/sessions/{session_id}/uploads", {"file": "x"})
    json_error(status, data, headers, 415, "unsupported_media_type")


def test_no_route_grants_cors(open_server):
    preflight = {"Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    for method, path, _ in open_server.routes:
        for used, headers in (("OPTIONS", preflight), (method, {"Origin": "http://127.0.0.1:1"})):
            response_headers = response_head(open_server, used, path, headers)
            assert not [name for name in response_headers if name.lower().startswith("access-control-")], path


def response_head(server, method, path, headers) -> dict:
    """The response headers only (a stream's body may never end)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers)
        return dict(connection.getresponse().getheaders())
    finally:
        connection.close()


def test_a_journal_offset_must_be_ascii_digits(open_server):
    _, run_id = open_server.known
    for offset in ("%C2%B3", "%D9%A3", "%EF%BC%91", "1%C2%B2", "+1", "0x10"):  # ³ ٣ １ 1² +1 0x10
        status, data, headers = request(open_server.url, "GET", f"/api/runs/{run_id}/journal?offset={offset}")
        json_error(status, data, headers, 400, "invalid_offset")
    assert request(open_server.url, "GET", f"/api/runs/{run_id}/journal?offset=0")[0] == 200


def test_deeply_nested_json_is_a_400(open_server):
    session_id, _ = open_server.known
    nested = '{"title": ' + "[" * 200_000 + "]" * 200_000 + "}"
    for method, path in (("POST", "/api/sessions"), ("PATCH", f"/api/sessions/{session_id}"),
                         ("POST", f"/api/sessions/{session_id}/runs")):
        status, data, headers = request(open_server.url, method, path, nested)
        json_error(status, data, headers, 400, "invalid_json")


def test_a_lone_surrogate_is_a_400(open_server):
    session_id, _ = open_server.known
    before = state(open_server)
    for method, path, body in (("POST", "/api/sessions", '{"title": "a \\ud800 b"}'),
                               ("PATCH", f"/api/sessions/{session_id}", '{"title": "\\udfff"}'),
                               ("POST", f"/api/sessions/{session_id}/runs", '{"text": "hi \\udc80"}')):
        status, data, headers = request(open_server.url, method, path, body)
        json_error(status, data, headers, 400, "invalid_json")
    assert state(open_server) == before
    # A proper pair is a character like any other.
    status, created, _ = open_server.api("POST", "/api/sessions", body='{"title": "\\ud83d\\ude00"}')
    assert status == 201 and created["title"] == "\U0001F600"
    assert open_server.api("DELETE", f"/api/sessions/{created['id']}")[0] == 204


def test_204_answers_carry_no_content_type(open_server):
    session_id = open_server.create_session()
    status, data, headers = request(open_server.url, "DELETE", f"/api/sessions/{session_id}")
    assert status == 204 and data == b"" and "Content-Type" not in headers
    _, run_id = open_server.known
    committed = open_server.api("GET", f"/api/runs/{run_id}")[1]["committed"]
    status, data, headers = request(open_server.url, "GET", f"/api/runs/{run_id}/events",
                                    headers={"Last-Event-ID": f"{run_id}:{committed}"})
    assert status == 204 and "Content-Type" not in headers


def test_redirects_never_name_the_requested_host(open_server):
    for path in ("//api//sessions", "/api//agents"):
        status, _, headers = request(open_server.url, "GET", path, headers={"Host": f"localhost:{open_server.port}"})
        assert status == 308, path
        assert headers["Location"].startswith("/") and not headers["Location"].startswith("//"), headers
        assert "localhost" not in headers["Location"]


def raw_request(server, data: bytes) -> tuple:
    """Send raw bytes on a fresh connection; ``(status, body, headers)`` of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), body, headers
