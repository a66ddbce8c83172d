"""Optional TLS (``--certfile``/``--keyfile``): a secure context for phones, Secure cookies, and
handshakes held to the header deadline. The certificate is made by openssl for 127.0.0.1."""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, SseClient, free_port, request
from tests.test_login import PASSWORD, login_over

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_server(server_factory, certificate):
    cert, key = certificate
    client = ssl.create_default_context(cafile=str(cert))
    return server_factory(args=["--certfile", str(cert), "--keyfile", str(key)], tls=client,
                          env={"HERMES_WEB_PASSWORD": PASSWORD, "HERMES_WEB_HEADER_TIMEOUT_S": "1"})


def test_the_server_speaks_https_and_its_login_cookie_is_secure(tls_server):
    assert tls_server.url.startswith("https://")
    status, _, _ = request(tls_server.url, "GET", "/api/sessions", tls=tls_server.tls)
    assert status == 401
    status, _, headers, cookie = login_over(tls_server)
    assert status == 200
    assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert request(tls_server.url, "GET", "/api/sessions", headers={"Cookie": cookie}, tls=tls_server.tls)[0] == 200
    session_id = tls_server.api("POST", "/api/sessions", {}, headers={"Cookie": cookie})[1]["id"]
    stream = SseClient(tls_server.url, f"/api/sessions/{session_id}/events", headers={"Cookie": cookie},
                       tls=tls_server.tls, timeout=10)
    try:
        assert stream.status == 200
    finally:
        stream.close()
    # A page served over TLS is the only origin that may change things.
    status, _, _ = request(tls_server.url, "POST", "/api/sessions", {}, tls=tls_server.tls,
                           headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{tls_server.port}"})
    assert status == 403


def test_plain_http_and_silent_clients_on_the_tls_port_are_closed_quietly(tls_server):
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as plain:
        plain.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = plain.recv(100)  # a TLS alert, or nothing: never plain HTTP, never a hang
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP/")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as silent:
        assert silent.recv(100) == b""  # no ClientHello within the header deadline: closed
    assert time.monotonic() - started < 5
    assert request(tls_server.url, "GET", "/login", tls=tls_server.tls)[0] == 200
    log = tls_server.log_path.read_text()
    assert "TLS handshake failed" in log and "Traceback" not in log


def test_an_unusable_certificate_stops_the_start_with_one_line(tmp_path, certificate):
    cert, _ = certificate
    done = subprocess.run([sys.executable, "-m", "hermes_web", "serve", "--port", str(free_port()),
                           "--data-dir", str(tmp_path / "var"), "--certfile", str(cert),
                           "--keyfile", str(tmp_path / "missing.pem")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and "missing.pem" in done.stderr and "Traceback" not in done.stderr
