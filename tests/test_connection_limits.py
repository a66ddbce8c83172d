"""Connection limits (PROTOCOL 2.5, Limits): slow and idle clients, clients that stop reading,
and clients that hold too much, against a real server. Every wait is bounded."""

import json
import os
import select
import socket
import time

import pytest

from hermes_web.core.ids import new_run_id
from tests.support import SseClient, journal_lines, request

SECOND_CLIENT = "127.0.0.2"  # all of 127/8 reaches the loopback server: another client address


def connect(server, source=None, timeout=10.0, receive_buffer=None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if source:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_all(sock, limit=1 << 26) -> bytes:
    chunks, total = [], 0
    try:
        while total < limit and (chunk := sock.recv(65536)):
            chunks.append(chunk)
            total += len(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def parse(response: bytes):
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), body


def wait_until(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def open_files(server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def open_file_names(server) -> list:
    directory = f"/proc/{server.process.pid}/fd"
    names = []
    for fd in os.listdir(directory):
        try:
            names.append(os.readlink(f"{directory}/{fd}"))
        except OSError:
            pass
    return sorted(names)


def test_headers_must_arrive_within_the_deadline(server_factory):
    server = server_factory(env={"HERMES_WEB_HEADER_TIMEOUT_S": "1"})
    partial = connect(server)
    silent = connect(server)
    started = time.monotonic()
    partial.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    status, headers, body = parse(read_all(partial))
    assert status == 408 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "header_timeout"
    assert read_all(silent) == b""  # nothing asked, nothing answered: just closed
    assert time.monotonic() - started < 5
    partial.close()
    silent.close()
    # Trickling one byte at a time does not stretch the deadline.
    trickle = connect(server)
    started = time.monotonic()
    for byte in b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n" * 10:
        trickle.sendall(bytes([byte]))
        if select.select([trickle], [], [], 0.1)[0]:
            break  # the server answered
    assert parse(read_all(trickle))[0] == 408
    assert time.monotonic() - started < 5
    trickle.close()
    assert request(server.url, "GET", "/api/sessions")[0] == 200


def test_an_idle_kept_alive_connection_is_closed(server_factory):
    server = server_factory(env={"HERMES_WEB_KEEPALIVE_TIMEOUT_S": "1"})
    sock = connect(server)
    ask = b"GET /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for _ in range(2):  # kept alive while in use
        sock.sendall(ask)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        length = int(parse(head)[1]["Content-Length"])
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
        assert json.loads(body)[0]["name"] == "demo"
        time.sleep(0.3)
    started = time.monotonic()
    assert read_all(sock) == b""
    assert 0.4 < time.monotonic() - started < 4
    sock.close()


@pytest.fixture
def big_run(server_factory):
    """A server with a finished run whose journal is 16 MiB (far more than socket buffers hold)."""
    server = server_factory(env={"HERMES_WEB_WRITE_TIMEOUT_S": "1", "HERMES_WEB_MAX_STREAMS_PER_CLIENT": "1"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "template")["run_id"]
    server.wait_run_finished(run_id)
    lines = [line for line, _ in journal_lines(server.journal_path(session_id, run_id))]
    big_id = new_run_id(session_id)
    started = json.loads(lines[0])
    started["run_id"] = big_id
    delta = json.dumps({"type": "text.delta", "ts": started["ts"], "text": "x" * 65_000}).encode() + b"\n"
    path = server.journal_path(session_id, big_id)
    with open(path, "wb") as journal:
        journal.write(json.dumps(started).encode() + b"\n" + delta * 256 + lines[-1])
    os.chmod(path, 0o600)
    return server, big_id, path.stat().st_size


def test_a_stream_whose_client_stops_reading_is_dropped_and_its_resources_return(big_run):
    server, run_id, size = big_run
    request(server.url, "GET", "/api/sessions")
    baseline = open_files(server)
    stalled = connect(server, receive_buffer=4096)
    stalled.sendall(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert stalled.recv(12).startswith(b"HTTP/1.1 200")  # admitted; from now on it reads nothing
    # This address's one stream slot is held...
    second = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=10)
    assert second.status == 429 and second.headers["Retry-After"]
    assert json.loads(second.response.read())["error"]["code"] == "too_many_streams"
    second.close()

    # ...until the write deadline drops the stalled stream: the slot comes back.
    def slot_back():
        probe = SseClient(server.url, f"/api/runs/{run_id}/events?cursor={run_id}:{size}", timeout=10)
        probe.close()
        return probe.status == 204

    wait_until(slot_back, 15, "the stalled stream was never dropped")
    wait_until(lambda: open_files(server) <= baseline, 10,
               f"the dropped stream's journal or socket stayed open: {open_file_names(server)}")
    received = read_all(stalled)
    assert len(received) < size and b"run.completed" not in received  # cut short, not finished
    stalled.close()
    log = server.log_path.read_text()
    assert "stopped reading" in log and "Traceback" not in log


def test_a_slow_reader_that_keeps_reading_gets_everything(big_run):
    server, run_id, size = big_run
    stream = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=30)
    try:
        got = 0
        for _ in range(20):  # slower than the sender, but never stalled for the deadline
            got += len(stream.response.read(65536))
            time.sleep(0.05)
        events = [event for _, event, _ in stream.records()]
        assert events[-1] == "run.completed"
    finally:
        stream.close()


def test_streams_are_capped_per_client_address(server_factory):
    # A stream learns that its client left when a write fails: heartbeats every second here.
    server = server_factory(env={"HERMES_WEB_MAX_STREAMS_PER_CLIENT": "3", "HERMES_WEB_HEARTBEAT_S": "1"})
    session_id = server.create_session()
    path = f"/api/sessions/{session_id}/events"
    streams = [SseClient(server.url, path, timeout=10) for _ in range(3)]
    try:
        assert [stream.status for stream in streams] == [200, 200, 200]
        refused = SseClient(server.url, path, timeout=10)
        assert refused.status == 429 and refused.headers["Content-Type"] == "application/json"
        assert int(refused.headers["Retry-After"]) > 0
        assert json.loads(refused.response.read())["error"]["code"] == "too_many_streams"
        refused.close()
        # API requests from the same address go on; another address has its own share.
        assert request(server.url, "GET", "/api/sessions")[0] == 200
        other = connect(server, source=SECOND_CLIENT)
        other.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert other.recv(12) == b"HTTP/1.1 200"
        other.close()
        streams.pop().close()

        def admitted():
            stream = SseClient(server.url, path, timeout=10)
            if stream.status == 200:
                streams.append(stream)
                return True
            stream.close()
            return False

        wait_until(admitted, 10, "a closed stream's slot never came back")
    finally:
        for stream in streams:
            stream.close()


def test_connections_are_capped_per_client_and_a_flood_does_not_lock_others_out(server_factory):
    server = server_factory(env={"HERMES_WEB_MAX_CONNECTIONS_PER_CLIENT": "20", "HERMES_WEB_HEADER_TIMEOUT_S": "30"})
    flood = []
    try:
        for number in range(120):  # slow headers, and connections that say nothing at all
            sock = connect(server, source=SECOND_CLIENT, timeout=5)
            if number % 2:
                sock.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            flood.append(sock)
        # Everyone else is served as usual, streams included.
        for _ in range(20):
            assert request(server.url, "GET", "/api/sessions", timeout=5)[0] == 200
        stream = SseClient(server.url, f"/api/sessions/{server.create_session()}/events", timeout=5)
        assert stream.status == 200
        stream.close()
        # The flood's connections past its share were answered and closed at once.
        refused = [parse(read_all(sock)) for sock in flood[40:60]]
        assert all(status == 429 for status, _, _ in refused)
        assert json.loads(refused[0][2])["error"]["code"] == "too_many_connections"
    finally:
        for sock in flood:
            sock.close()

    def served_again():
        sock = connect(server, source=SECOND_CLIENT, timeout=5)
        try:
            sock.sendall(b"GET /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return parse(read_all(sock))[0] == 200
        finally:
            sock.close()

    wait_until(served_again, 10, "closed connections never gave their slots back")


def test_the_total_connection_cap_keeps_room_for_the_api(server_factory):
    # 16 connections in all: streams may hold 14 of them, the API always has the rest.
    server = server_factory(env={"HERMES_WEB_MAX_CONNECTIONS": "16", "HERMES_WEB_MAX_STREAMS_PER_CLIENT": "100"})
    session_id = server.create_session()
    streams = []
    try:
        for _ in range(14):
            stream = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=10)
            assert stream.status == 200
            streams.append(stream)
        full = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=10)
        assert full.status == 503 and json.loads(full.response.read())["error"]["code"] == "server_busy"
        full.close()
        assert server.start_run(session_id, "still possible")["run_id"]
        extra = [connect(server, source=SECOND_CLIENT) for _ in range(2)]
        over = connect(server, source=SECOND_CLIENT)
        over.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, body = parse(read_all(over))
        assert status == 503 and json.loads(body)["error"]["code"] == "too_many_connections"
        for sock in (*extra, over):
            sock.close()
    finally:
        for stream in streams:
            stream.close()


def test_a_request_body_that_stops_arriving_gets_408(server_factory):
    server = server_factory(env={"HERMES_WEB_WRITE_TIMEOUT_S": "1"})
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"title\": ")
    status, headers, body = parse(read_all(sock))
    assert status == 408 and json.loads(body)["error"]["code"] == "body_timeout"
    assert time.monotonic() - started < 5
    sock.close()
    assert "Traceback" not in server.log_path.read_text()


def raw_request(server, data: bytes) -> tuple:
    """Send raw bytes on a fresh connection; ``(status, body, headers)`` of the answer."""
    sock = connect(server)
    try:
        sock.sendall(data)
        status, headers, body = parse(read_all(sock))
    finally:
        sock.close()
    return status, body, headers


def json_error(status, body, headers, expected_status, code):
    assert status == expected_status, (status, body[:300])
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


def test_an_overlong_request_line_is_a_json_414(server):
    status, body, headers = raw_request(server, b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    json_error(status, body, headers, 414, "request_line_too_long")


def test_malformed_requests_get_json_400s(server):
    for data in (b"NONSENSE\r\n\r\n", b"GET / HTTP/7.0\r\nHost: 127.0.0.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -4\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n"):
        status, body, headers = raw_request(server, data)
        json_error(status, body, headers, 400, "malformed_request")
    status, body, headers = raw_request(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        + b"X-Big: " + b"b" * 60_000 + b"\r\n" + b"X-Big2: " + b"b" * 60_000 + b"\r\n\r\n")
    json_error(status, body, headers, 431, "headers_too_large")
