"""With a password set, nothing is served without a credential; login, logout, tokens, and the
failed-login limit (PROTOCOL 2.5, Authentication). Real servers, real sockets."""

import http.client
import http.cookies
import json
import os
import subprocess
import sys
import time

import pytest

from hermes_web.security import auth
from tests.support import ROOT, ServerProcess, SseClient, free_port, request, url_map_routes

PASSWORD = "correct horse battery staple"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Reachable without a credential (PROTOCOL 2.5): the login page and the login itself; the
# health check, which tells nothing the server holds; the metrics on a loopback server.
PUBLIC = {("GET", "login.page"), ("POST", "login.login"), ("GET", "health.healthz"), ("GET", "health.metrics")}
PAGES = {"ui.index", "ui.session_page"}


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A server with a password (from the environment), a token, a session and a finished run."""
    data_dir = tmp_path_factory.mktemp("locked") / "var"
    server = ServerProcess(data_dir, env={"HERMES_WEB_PASSWORD": PASSWORD, "HERMES_WEB_DEMO_DELAY_MS": "0"}).start()
    server.token = auth.create_token(data_dir, "tests")
    session_id = server.create_session()
    run_id = server.start_run(session_id, "a run to look at")["run_id"]
    server.wait_run_finished(run_id)
    server.known = (session_id, run_id)
    yield server
    server.stop()
    log = server.log_path.read_text()
    assert "Traceback" not in log and PASSWORD not in log and server.token not in log


def login(server, password=PASSWORD, source=None, headers=None):
    """``(status, body, headers, cookie header value or None)`` of ``POST /api/login``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30,
                                            source_address=(source, 0) if source else None)
    return _login(connection, password, headers)


def login_over(server, password=PASSWORD):
    """:func:`login` to a server that speaks TLS."""
    return _login(http.client.HTTPSConnection("127.0.0.1", server.port, timeout=30, context=server.tls), password, {})


def _login(connection, password, headers):
    try:
        connection.request("POST", "/api/login", body=json.dumps({"password": password}),
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        data = response.read()
        set_cookie = response.getheader("Set-Cookie")
        cookie = None
        if set_cookie:
            parsed = http.cookies.SimpleCookie(set_cookie)
            cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in parsed.items())
        return response.status, json.loads(data) if data else None, dict(response.getheaders()), cookie
    finally:
        connection.close()


def as_json_error(status, data, headers, expected_status, code):
    assert status == expected_status, (status, data[:300])
    assert headers["Content-Type"] == "application/json"
    assert json.loads(data)["error"]["code"] == code
    return json.loads(data)


def session_ids(server) -> list:
    status, sessions, _ = server.api("GET", "/api/sessions")
    assert status == 200
    return sorted(item["id"] for item in sessions)


def test_every_route_refuses_a_request_without_a_credential(locked, tmp_path):
    all_routes = url_map_routes(tmp_path / "map", *locked.known)
    before = session_ids(locked)
    checked = set()
    for method, path, endpoint in all_routes:
        if (method, endpoint) in PUBLIC:
            continue
        body = {"text": "x", "title": "x"} if method in STATE_CHANGING else None
        for credential in ({}, {"Authorization": "Bearer hwt_" + "A" * 43}, {"Cookie": "hermes_web_login=forged.x.y"}):
            status, data, headers = request(locked.url, method, path, body, headers=credential)
            if endpoint in PAGES and method == "GET":
                assert status == 303, (method, path, status)
                assert headers["Location"].startswith("/login?next=%2F"), headers
            else:
                as_json_error(status, data, headers, 401, "unauthorized")
                assert headers["WWW-Authenticate"].startswith("Bearer")
        checked.add(endpoint)
    # Every endpoint was tried (a new route is covered by itself), the public ones with
    # their other methods.
    assert checked | {endpoint for _, endpoint in PUBLIC} == {endpoint for _, _, endpoint in all_routes}
    assert len(checked) >= 15
    assert session_ids(locked) == before  # nothing was created or deleted


def test_the_login_page_and_its_assets_need_no_credential(locked):
    status, page, headers = request(locked.url, "GET", "/login")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b'id="login-form"' in page
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    for asset in ("/static/app.css", "/static/login.js"):
        assert request(locked.url, "GET", asset)[0] == 200
    assert request(locked.url, "GET", "/static/app.js")[0] == 401


def test_a_token_opens_every_api_route_and_stops_working_once_revoked(locked):
    session_id, run_id = locked.known
    for path in ("/api/sessions", f"/api/sessions/{session_id}", f"/api/runs/{run_id}", "/api/agents", "/api/auth"):
        assert locked.api("GET", path)[0] == 200, path
    status, state, _ = locked.api("GET", "/api/auth")
    assert state == {"password_required": True, "auth_by_proxy": False, "credential": "token"}
    stream = SseClient(locked.url, f"/api/runs/{run_id}/events", headers={"Authorization": f"Bearer {locked.token}"})
    try:
        assert stream.status == 200
        assert [event for _, event, _ in stream.records()][-1] == "run.completed"
    finally:
        stream.close()
    other = auth.create_token(locked.data_dir, "short-lived")
    headers = {"Authorization": f"Bearer {other}"}
    assert request(locked.url, "GET", "/api/sessions", headers=headers)[0] == 200
    auth.revoke_token(locked.data_dir, "short-lived")
    assert request(locked.url, "GET", "/api/sessions", headers=headers)[0] == 401


def test_login_sets_a_private_cookie_that_opens_pages_streams_and_the_api_until_logout(locked):
    session_id, run_id = locked.known
    status, body, headers, _ = login(locked, "not the password")
    assert status == 401 and body["error"]["code"] == "wrong_password"
    status, body, headers, cookie = login(locked)
    assert status == 200 and body["login"] == "cookie"
    set_cookie = headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "SameSite=Lax" in set_cookie and "Secure" not in set_cookie  # plain HTTP here
    assert headers["Cache-Control"] == "no-store"
    with_cookie = {"Cookie": cookie}
    assert request(locked.url, "GET", "/api/sessions", headers=with_cookie)[0] == 200
    status, page, _ = request(locked.url, "GET", f"/s/{session_id}", headers=with_cookie)
    assert status == 200 and b"<!doctype html>" in page
    assert json.loads(request(locked.url, "GET", "/api/auth", headers=with_cookie)[1])["credential"] == "cookie"
    # EventSource sends the cookie like any same-origin request.
    stream = SseClient(locked.url, f"/api/sessions/{session_id}/events", headers=with_cookie, timeout=10)
    try:
        assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    finally:
        stream.close()
    status, data, headers = request(locked.url, "POST", "/api/logout", headers=with_cookie)
    assert status == 204 and data == b"" and "Content-Type" not in headers
    assert "Max-Age=0" in headers["Set-Cookie"]
    # The cookie itself is dead, not just forgotten by the browser.
    assert request(locked.url, "GET", "/api/sessions", headers=with_cookie)[0] == 401
    stream = SseClient(locked.url, f"/api/sessions/{session_id}/events", headers=with_cookie, timeout=10)
    try:
        assert stream.status == 401
    finally:
        stream.close()


def test_the_cookie_is_secure_behind_a_local_tls_proxy(locked):
    status, _, headers, _ = login(locked, headers={"X-Forwarded-Proto": "https"})
    assert status == 200 and "Secure" in headers["Set-Cookie"]


def test_pages_redirect_to_the_login_and_the_login_refuses_other_origins(locked):
    session_id, _ = locked.known
    status, _, headers = request(locked.url, "GET", f"/s/{session_id}?x=1")
    assert status == 303 and headers["Location"] == f"/login?next=%2Fs%2F{session_id}%3Fx%3D1"
    status, body, _, cookie = login(locked, headers={"Origin": "http://127.0.0.1:1"})
    assert status == 403 and body["error"]["code"] == "cross_origin" and cookie is None
    status, data, headers = request(locked.url, "POST", "/api/login", f"password={PASSWORD}",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    as_json_error(status, data, headers, 415, "unsupported_media_type")


def test_failed_logins_are_limited_per_client_address(server_factory):
    server = server_factory(env={"HERMES_WEB_PASSWORD": PASSWORD, "HERMES_WEB_LOGIN_ATTEMPTS": "3",
                                 "HERMES_WEB_LOGIN_WINDOW_S": "3"})
    for _ in range(3):
        assert login(server, "wrong guess")[0] == 401
    status, body, headers, cookie = login(server)  # even the right password waits now
    assert status == 429 and body["error"]["code"] == "too_many_attempts" and cookie is None
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 3 and body["error"]["retry_after"] == retry_after
    # Another address is not held back by this one's guesses.
    status, _, _, cookie = login(server, source="127.0.0.2")
    assert status == 200 and cookie
    time.sleep(retry_after + 0.2)
    status, _, _, cookie = login(server)
    assert status == 200 and cookie


def test_a_new_password_takes_effect_at_once_and_logs_every_browser_out(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    auth.set_password(data_dir, "the first password")
    server = server_factory(data_dir=data_dir)
    status, _, _, cookie = login(server, "the first password")
    assert status == 200
    assert request(server.url, "GET", "/api/sessions", headers={"Cookie": cookie})[0] == 200
    auth.set_password(data_dir, "the second password")
    assert request(server.url, "GET", "/api/sessions", headers={"Cookie": cookie})[0] == 401
    assert login(server, "the first password")[0] == 401
    assert login(server, "the second password")[0] == 200


def test_without_a_password_on_loopback_no_login_is_asked(server):
    assert server.api("GET", "/api/sessions")[0] == 200
    status, state, _ = server.api("GET", "/api/auth")
    assert state == {"password_required": False, "auth_by_proxy": False, "credential": None}
    status, _, headers = request(server.url, "GET", "/login")
    assert status == 303 and headers["Location"] == "/"
    status, body, _, _ = login(server)
    assert status == 409 and body["error"]["code"] == "login_not_required"


def serve(data_dir, *args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "hermes_web", "serve", "--data-dir", str(data_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_bound_beyond_loopback_without_a_password_the_server_refuses_to_start(tmp_path, host):
    env = {key: value for key, value in os.environ.items() if key != "HERMES_WEB_PASSWORD"}
    done = subprocess.run([sys.executable, "-m", "hermes_web", "serve", "--host", host, "--port", str(free_port()),
                           "--data-dir", str(tmp_path / "var")], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "hermes-web set-password" in lines[0] and "HERMES_WEB_PASSWORD" in lines[0]
    assert "Traceback" not in done.stderr


def test_bound_beyond_loopback_with_a_password_it_serves_and_asks_for_it(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    auth.set_password(data_dir, PASSWORD)
    server = server_factory(data_dir=data_dir, args=["--host", "0.0.0.0"])
    assert request(server.url, "GET", "/api/sessions")[0] == 401
    # Any address literal names this server now (a phone types the LAN address).
    status, data, _ = request(server.url, "GET", "/api/sessions", headers={"Host": f"10.1.2.3:{server.port}"})
    assert status == 401
    status, data, headers = request(server.url, "GET", "/api/sessions", headers={"Host": "rebind.example"})
    as_json_error(status, data, headers, 400, "host_not_allowed")


def test_the_proxy_opt_out_asks_for_nothing_and_says_so_loudly(server_factory):
    server = server_factory(args=["--host", "0.0.0.0", "--auth-by-proxy"], env={"HERMES_WEB_PASSWORD": PASSWORD})
    assert server.api("GET", "/api/sessions")[0] == 200
    status, state, _ = server.api("GET", "/api/auth")
    assert state["password_required"] is False and state["auth_by_proxy"] is True
    deadline = time.monotonic() + 10
    while "AUTHENTICATION IS OFF" not in server.log_path.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert PASSWORD not in server.log_path.read_text()


def test_logout_everywhere_ends_every_login_at_once(server_factory):
    server = server_factory(env={"HERMES_WEB_PASSWORD": PASSWORD})
    cookies = [login(server)[3] for _ in range(2)]
    status, data, headers = request(server.url, "POST", "/api/logout", {"everywhere": "yes"},
                                    headers={"Cookie": cookies[0]})
    as_json_error(status, data, headers, 400, "invalid_everywhere")
    status, _, _ = request(server.url, "POST", "/api/logout", {"everywhere": True}, headers={"Cookie": cookies[0]})
    assert status == 204
    for cookie in cookies:
        assert request(server.url, "GET", "/api/sessions", headers={"Cookie": cookie})[0] == 401
    fresh = login(server)[3]
    assert request(server.url, "GET", "/api/sessions", headers={"Cookie": fresh})[0] == 200
