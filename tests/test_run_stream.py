"""The run stream over a real server socket: resume at every offset, live drop and resume,
slow and fast viewers, invalid cursors (PROTOCOL 1.2, 2.2)."""

import http.client
import json
import random
import socket
import time
import urllib.parse

import pytest

from tests.support import ServerProcess, SseClient, assert_sse_headers, expected_frames, journal_lines, request

STREAM_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("runstream") / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "1"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def finished_run(fast_server):
    session_id = fast_server.create_session()
    run_id = fast_server.start_run(session_id, "resume me anywhere please")["run_id"]
    assert fast_server.wait_run_finished(run_id)["status"] == "completed"
    return session_id, run_id


def record_frames(client):
    return [(frame["id"], frame["event"], frame["data"]) for frame in client.frames() if "id" in frame]


def boundaries(path):
    return [0] + [end for _, end in journal_lines(path)]


def test_stream_headers_and_first_retry_frame(fast_server, finished_run):
    session_id, run_id = finished_run
    client = SseClient(fast_server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        assert_sse_headers(client)
        frames = list(client.frames())
    finally:
        client.close()
    assert frames[0] == {"retry": "2000"}
    path = fast_server.journal_path(session_id, run_id)
    assert [(f["id"], f["event"], f["data"]) for f in frames[1:]] == expected_frames(path, run_id)
    assert frames[-1]["event"] == "run.completed"


@pytest.mark.parametrize("mode", ["last_event_id", "cursor", "bare_offset"])
def test_resume_at_every_offset_of_a_finished_run_delivers_exactly_the_rest(fast_server, finished_run, mode):
    session_id, run_id = finished_run
    path = fast_server.journal_path(session_id, run_id)
    offsets = boundaries(path)
    assert len(offsets) > 200
    for offset in offsets:
        cursor = f"{run_id}:{offset}"
        if mode == "last_event_id":
            client = SseClient(fast_server.url, f"/api/runs/{run_id}/events", last_event_id=cursor, timeout=STREAM_TIMEOUT)
        elif mode == "cursor":
            client = SseClient(fast_server.url, f"/api/runs/{run_id}/events?cursor={cursor}", timeout=STREAM_TIMEOUT)
        else:
            client = SseClient(fast_server.url, f"/api/runs/{run_id}/events?cursor={offset}", timeout=STREAM_TIMEOUT)
        try:
            if offset == offsets[-1]:
                assert client.status == 204, offset  # past the terminal record: EventSource stops
                assert client.response.read() == b""
                continue
            assert client.status == 200, offset
            frames = list(client.frames())
        finally:
            client.close()
        assert frames[0] == {"retry": "2000"}
        assert [(f["id"], f["event"], f["data"]) for f in frames[1:]] == expected_frames(path, run_id, offset), offset


def test_last_event_id_wins_over_the_cursor_parameter(fast_server, finished_run):
    session_id, run_id = finished_run
    path = fast_server.journal_path(session_id, run_id)
    offsets = boundaries(path)
    client = SseClient(fast_server.url, f"/api/runs/{run_id}/events?cursor={run_id}:{offsets[1]}",
                       last_event_id=f"{run_id}:{offsets[-3]}", timeout=STREAM_TIMEOUT)
    try:
        assert record_frames(client) == expected_frames(path, run_id, offsets[-3])
    finally:
        client.close()


def assert_json_error(status, body, headers, expected_status, code=None):
    assert status == expected_status, body
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code


def invalid_cursors(run_id, other_run_id, offsets, size):
    mid_line = offsets[3] + 5
    return [
        "garbage",
        "-1",
        f"{run_id}:-1",
        f"{run_id}:{mid_line}",
        str(mid_line),
        f"{run_id}:{size + 1}",
        f"{run_id}:{size + 1000}",
        str(size + 1),
        f"{other_run_id}:0",
        f"{other_run_id}:{offsets[1]}",
        f"{run_id}:",
        f"{run_id}:1:2",
        f"{run_id}:0x10",
        f"{run_id}:01",
        "../../etc/passwd:0",
        f"{run_id}:{'9' * 18}",
        f"{run_id}:{'9' * 40}",
        "9" * 40,
        f"{run_id}:1e3",
    ]


def test_invalid_cursors_get_a_json_400_on_the_run_stream(fast_server, finished_run):
    session_id, run_id = finished_run
    other_run_id = fast_server.start_run(fast_server.create_session(), "another run")["run_id"]
    fast_server.wait_run_finished(other_run_id)
    path = fast_server.journal_path(session_id, run_id)
    offsets = boundaries(path)
    for cursor in invalid_cursors(run_id, other_run_id, offsets, path.stat().st_size):
        quoted = urllib.parse.quote(cursor, safe="")
        status, body, headers = request(fast_server.url, "GET", f"/api/runs/{run_id}/events?cursor={quoted}")
        assert_json_error(status, body, headers, 400, "invalid_cursor")
        status, body, headers = request(fast_server.url, "GET", f"/api/runs/{run_id}/events",
                                        headers={"Last-Event-ID": cursor})
        assert_json_error(status, body, headers, 400, "invalid_cursor")


def test_invalid_offsets_get_a_json_400_on_the_raw_journal(fast_server, finished_run):
    session_id, run_id = finished_run
    path = fast_server.journal_path(session_id, run_id)
    offsets = boundaries(path)
    for offset in ["garbage", "-1", str(offsets[3] + 5), str(path.stat().st_size + 1), "1e3", "0x10", "9" * 18,
                   "9" * 40, "", "%201", "%00", "1%0A"]:
        status, body, headers = request(fast_server.url, "GET", f"/api/runs/{run_id}/journal?offset={offset}")
        assert_json_error(status, body, headers, 400)
    # Valid offsets: exactly the complete lines after them, and where to continue.
    data = path.read_bytes()
    for offset in offsets:
        status, body, headers = request(fast_server.url, "GET", f"/api/runs/{run_id}/journal?offset={offset}")
        assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
        assert body == data[offset:]
        assert headers["X-Next-Offset"] == str(len(data))


def test_a_client_dropping_at_random_points_of_live_runs_gets_every_record_once_in_order(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "4"})
    rng = random.Random(20261124)
    trials = 0
    for _ in range(6):
        session_id = server.create_session()
        run_id = server.start_run(session_id, "drop and resume " * rng.randint(1, 4))["run_id"]
        received = []
        last_id = None
        finished = False
        live_drops = 0
        while not finished:
            client = SseClient(server.url, f"/api/runs/{run_id}/events", last_event_id=last_id, timeout=STREAM_TIMEOUT)
            assert client.status == 200
            budget = rng.randint(0, 6)
            try:
                for frame in client.frames():
                    if "id" not in frame:
                        continue
                    received.append((frame["id"], frame["event"], frame["data"]))
                    last_id = frame["id"]
                    if frame["event"] == "run.completed":
                        finished = True
                        break
                    budget -= 1
                    if budget < 0:
                        if rng.random() < 0.5:
                            client.response.readline()  # drop in the middle of the next frame
                        break
            finally:
                client.close()
            trials += 1
            if not finished:
                live_drops += 1
        path = server.journal_path(session_id, run_id)
        assert received == expected_frames(path, run_id)
        assert live_drops >= 20
    assert trials >= 200
    print(f"drop/resume: {trials} connections over 6 live runs, every record exactly once")


def raw_stream_frames(base_url, path, receive_buffer, pause, timeout=STREAM_TIMEOUT):
    """Read a stream through a socket with a tiny receive buffer, pausing after each frame."""
    parsed = urllib.parse.urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    sock.connect((parsed.hostname, parsed.port))
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    connection.sock = sock
    try:
        connection.request("GET", path, headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        assert response.status == 200
        frames = []
        frame = {}
        while True:
            raw = response.readline()
            if not raw:
                return frames
            line = raw.decode().rstrip("\n")
            if line:
                field, _, value = line.partition(": ")
                frame[field] = value
                continue
            if "id" in frame:
                frames.append((frame["id"], frame["event"], frame["data"]))
                time.sleep(pause)
            frame = {}
    finally:
        connection.close()


def test_a_slow_and_a_fast_viewer_both_receive_the_complete_stream(server_factory):
    import threading

    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "2"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "one fast and one slow reader " * 30)["run_id"]
    results = {}

    def slow():
        results["slow"] = raw_stream_frames(server.url, f"/api/runs/{run_id}/events", receive_buffer=256, pause=0.004)

    reader = threading.Thread(target=slow)
    reader.start()
    fast = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        results["fast"] = record_frames(fast)
        fast_done = time.monotonic()
    finally:
        fast.close()
    reader.join(STREAM_TIMEOUT)
    slow_done = time.monotonic()
    assert not reader.is_alive()
    expected = expected_frames(server.journal_path(session_id, run_id), run_id)
    assert results["fast"] == expected
    assert results["slow"] == expected
    assert expected[-1][1] == "run.completed"
    # The slow reader really was slower: it finished well after the fast one.
    assert slow_done - fast_done > 0.1
