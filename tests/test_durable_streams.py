"""Durable Streams beyond what the official suite checks: generic streams keep the data dir's
rules (durable across restarts and kill -9, torn tails cut, damaged lines skipped, secrets
masked at rest, private modes, names that never leave streams/, bodies over the limit
refused whole), the guard applies, and every run reads as a stream with its journal's
offsets, live, finished and compacted."""

import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from tests.support import ROOT, ServerProcess, SseClient, request
from tests.test_full_disk import fill, small_disk  # noqa: F401 - a fixture

SECRET = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"
ZERO = "0000000000000000_"


def offset(position: int) -> str:
    return ZERO + str(position).rjust(16, "0")


def call(server, method, name, body=b"", headers=None):
    return request(server.url, method, f"/ds/streams/{name}", body if body is not None else None, headers or {})


def stream_dir(server, name: str):
    return server.data_dir / "streams" / name.replace("/", "%2F")


def sse_until(server, path, key: str, timeout: float = 30.0) -> list:
    """The SSE frames of ``path`` up to the first control event carrying ``key``."""
    client = SseClient(server.url, path, timeout=timeout)
    frames = []
    try:
        assert client.status == 200
        for frame in client.frames():
            frames.append(frame)
            if frame.get("event") == "control" and json.loads(frame["data"]).get(key):
                return frames
    finally:
        client.close()
    raise AssertionError(f"the stream ended before a control event with {key}: {frames[-3:]}")


def read_all(server, name, start="-1"):
    status, data, headers = request(server.url, "GET", f"/ds/streams/{name}?offset={start}")
    assert status == 200, data
    return data, headers


@pytest.fixture
def text_stream(server):
    status, _, headers = call(server, "PUT", "notes/today", b"first ", {"Content-Type": "text/plain"})
    assert status == 201
    return "notes/today"


def test_streams_survive_a_restart_with_their_offsets_producers_and_sequence(server_factory, tmp_path):
    server = server_factory()
    call(server, "PUT", "log", b"", {"Content-Type": "text/plain"})
    producer = {"Content-Type": "text/plain", "Producer-Id": "p", "Producer-Epoch": "0"}
    for seq, word in enumerate(["alpha ", "beta "]):
        status, _, _ = call(server, "POST", "log", word.encode(), {**producer, "Producer-Seq": str(seq)})
        assert status == 200
    status, _, headers = call(server, "POST", "log", b"gamma", {"Content-Type": "text/plain", "Stream-Seq": "b"})
    assert status == 204
    tail = headers["Stream-Next-Offset"]
    server.stop()

    again = server_factory(data_dir=server.data_dir)
    data, headers = read_all(again, "log")
    assert data == b"alpha beta gamma" and headers["Stream-Next-Offset"] == tail
    # The producer's retry is recognised after the restart: answered, not written twice.
    status, _, _ = call(again, "POST", "log", b"beta ", {**producer, "Producer-Seq": "1"})
    assert status == 204
    status, _, _ = call(again, "POST", "log", b"x", {"Content-Type": "text/plain", "Stream-Seq": "a"})
    assert status == 409
    assert read_all(again, "log")[0] == b"alpha beta gamma"
    # The log reads with grep: one JSON line per append.
    lines = (stream_dir(again, "log") / "log.jsonl").read_text().splitlines()
    assert [json.loads(line).get("text") for line in lines] == ["alpha ", "beta ", "gamma"]


def test_kill_9_loses_nothing_acknowledged_and_a_torn_tail_is_cut(server_factory):
    server = server_factory(env={"HERMES_WEB_FSYNC": "record"})
    call(server, "PUT", "events", b"", {"Content-Type": "application/json"})
    for number in range(20):
        assert call(server, "POST", "events", json.dumps({"n": number}).encode(),
                    {"Content-Type": "application/json"})[0] == 204
    tail = read_all(server, "events")[1]["Stream-Next-Offset"]
    server.kill9()
    log_path = stream_dir(server, "events") / "log.jsonl"
    with open(log_path, "ab") as log:
        log.write(b'{"json":[{"n":20')  # an append the crash tore: never acknowledged

    again = server_factory(data_dir=server.data_dir)
    data, headers = read_all(again, "events")
    assert json.loads(data) == [{"n": number} for number in range(20)]
    assert headers["Stream-Next-Offset"] == tail
    assert log_path.read_bytes().endswith(b"\n")
    assert call(again, "POST", "events", b'{"n":20}', {"Content-Type": "application/json"})[0] == 204
    assert json.loads(read_all(again, "events")[0])[-1] == {"n": 20}


def test_a_damaged_line_is_skipped_and_every_offset_stays_valid(server_factory):
    server = server_factory()
    call(server, "PUT", "d", b"", {"Content-Type": "text/plain"})
    ends = []
    for word in ("one ", "two ", "three"):
        ends.append(call(server, "POST", "d", word.encode(), {"Content-Type": "text/plain"})[2]["Stream-Next-Offset"])
    server.stop()
    log_path = stream_dir(server, "d") / "log.jsonl"
    lines = log_path.read_bytes().split(b"\n")
    lines[1] = b"#" * len(lines[1])  # the same length: later offsets are unchanged
    log_path.write_bytes(b"\n".join(lines))

    again = server_factory(data_dir=server.data_dir)
    assert read_all(again, "d")[0] == b"one three"
    assert read_all(again, "d", ends[0])[0] == b"three"
    assert read_all(again, "d", ends[1])[0] == b"three"
    assert read_all(again, "d", ends[2])[0] == b""


def test_secrets_are_masked_on_disk_and_in_every_read(server, text_stream):
    call(server, "POST", text_stream, f"my token is {SECRET} ok".encode(), {"Content-Type": "text/plain"})
    call(server, "PUT", "j", json.dumps({"key": SECRET}).encode(), {"Content-Type": "application/json"})
    on_disk = b"".join(path.read_bytes() for path in (server.data_dir / "streams").rglob("log.jsonl"))
    assert SECRET.encode() not in on_disk and SECRET[:12].encode() not in on_disk
    text, _ = read_all(server, text_stream)
    assert SECRET not in text.decode() and b"REDACTED" in text
    values, _ = read_all(server, "j")
    assert SECRET not in values.decode() and "REDACTED" in json.loads(values)[0]["key"]
    received = "".join(frame.get("data", "") for frame in
                       sse_until(server, f"/ds/streams/{text_stream}?offset=-1&live=sse", "upToDate"))
    assert SECRET not in received and "REDACTED" in received


def test_files_are_private_and_names_never_leave_the_streams_folder(server):
    for name in ("../../escape", "a/../../b", "%2e%2e/x", ".hidden", "x" * 200):
        status, data, _ = call(server, "PUT", name, b"", {"Content-Type": "text/plain"})
        assert status in (201, 400, 404), (name, status, data)
    streams = server.data_dir / "streams"
    assert not (server.data_dir.parent / "escape").exists() and not (server.data_dir / "b").exists()
    for path in [streams, *streams.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        assert path.resolve().is_relative_to(streams.resolve())
    status, _, _ = call(server, "PUT", "y" * 300, b"", {"Content-Type": "text/plain"})
    assert status == 400


def test_an_oversized_append_is_refused_whole(server_factory):
    server = server_factory(env={"HERMES_WEB_MAX_APPEND_MB": "0.01"})
    call(server, "PUT", "big", b"small", {"Content-Type": "application/octet-stream"})
    status, data, _ = call(server, "POST", "big", b"x" * 20000, {"Content-Type": "application/octet-stream"})
    assert status == 413 and json.loads(data)["error"]["code"] == "body_too_large"
    assert read_all(server, "big")[0] == b"small"


def test_the_guard_applies_to_streams(server_factory):
    server = server_factory(env={"HERMES_WEB_PASSWORD": "correct horse battery"})
    status, data, _ = call(server, "PUT", "s", b"", {"Content-Type": "text/plain"})
    assert status == 401 and json.loads(data)["error"]["code"] == "unauthorized"
    status, _, _ = request(server.url, "GET", "/ds/streams/s?offset=-1")
    assert status == 401
    status, _, _ = request(server.url, "GET", "/ds/runs/r?offset=-1")
    assert status == 401
    open_server = server_factory(data_dir=server.data_dir.parent / "open")
    status, data, _ = call(open_server, "PUT", "s", b"", {"Content-Type": "text/plain",
                                                          "Origin": "https://attacker.example"})
    assert status == 403 and not (open_server.data_dir / "streams" / "s").exists()
    status, _, _ = call(open_server, "PUT", "s", b"", {"Content-Type": "text/plain", "Host": "rebound.example"})
    assert status == 400


# -- runs as streams ----------------------------------------------------------------------


def run_stream(server, run_id, query):
    status, data, headers = request(server.url, "GET", f"/ds/runs/{run_id}?{query}")
    return status, data, headers


def test_a_finished_run_reads_as_its_journal_from_every_offset(server):
    session_id = server.create_session()
    run_id, _ = server.run_to_end(session_id, "read me as a durable stream")
    journal = server.journal_path(session_id, run_id).read_bytes().splitlines()
    records = [json.loads(line) for line in server.journal_path(session_id, run_id).read_bytes().splitlines()]
    status, data, headers = run_stream(server, run_id, "offset=-1")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(data) == records
    end = os.path.getsize(server.journal_path(session_id, run_id))
    assert headers["Stream-Next-Offset"] == offset(end)
    assert headers["Stream-Up-To-Date"] == "true" and headers["Stream-Closed"] == "true"
    # From every record boundary: exactly the records after it (PROTOCOL 1.2 cursors).
    position = 0
    for index, line in enumerate(journal):
        status, data, headers = run_stream(server, run_id, f"offset={offset(position)}")
        assert status == 200 and json.loads(data) == records[index:], index
        position += len(line) + 1
    status, _, _ = run_stream(server, run_id, f"offset={offset(1)}")
    assert status == 400  # not a record boundary
    status, _, _ = run_stream(server, run_id, f"offset={offset(end + 1)}")
    assert status == 400
    # At the end of a finished run a long-poll answers at once: closed.
    status, _, headers = run_stream(server, run_id, f"offset={offset(end)}&live=long-poll")
    assert status == 204 and headers["Stream-Closed"] == "true"
    status, _, headers = request(server.url, "HEAD", f"/ds/runs/{run_id}")
    assert status == 200 and headers["Stream-Next-Offset"] == offset(end) and headers["Stream-Closed"] == "true"
    assert request(server.url, "POST", f"/ds/runs/{run_id}", {"x": 1})[0] == 405
    assert request(server.url, "GET", "/ds/runs/no-such-run?offset=-1")[0] == 404


def test_a_live_run_streams_over_sse_and_long_poll_with_the_journal_bytes(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "30"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "a slow answer to follow live " * 3)["run_id"]
    frames = sse_until(server, f"/ds/runs/{run_id}?offset=-1&live=sse", "streamClosed")
    values = [value for frame in frames if frame.get("event") == "data" for value in json.loads(frame["data"])]
    path = server.journal_path(session_id, run_id)
    assert values == [json.loads(line) for line in path.read_bytes().splitlines()]
    # Long-poll from the start of a second run: each answer continues where the last ended.
    run_id = server.start_run(session_id, "and once more by long-poll")["run_id"]
    position, polled = offset(0), []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, data, headers = run_stream(server, run_id, f"offset={position}&live=long-poll")
        if status == 200:
            polled.extend(json.loads(data))
        position = headers["Stream-Next-Offset"]
        if headers.get("Stream-Closed") == "true":
            break
    path = server.journal_path(session_id, run_id)
    assert polled == [json.loads(line) for line in path.read_bytes().splitlines()]


def test_a_compacted_run_still_reads_from_its_archive(server):
    session_id = server.create_session()
    run_id, _ = server.run_to_end(session_id, "compact me")
    path = server.journal_path(session_id, run_id)
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    before = run_stream(server, run_id, "offset=-1")
    subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(server.data_dir),
                    "--older-than", "0"], cwd=ROOT, check=True, capture_output=True)
    assert not path.exists()
    status, data, headers = run_stream(server, run_id, "offset=-1")
    assert status == 200 and json.loads(data) == records
    assert headers["Stream-Next-Offset"] == before[2]["Stream-Next-Offset"] and headers["Stream-Closed"] == "true"


def test_a_damaged_journal_line_reads_as_a_damaged_record(server):
    session_id = server.create_session()
    run_id, _ = server.run_to_end(session_id, "damage me")
    server.stop()
    path = server.journal_path(session_id, run_id)
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"{" * len(lines[2])
    path.write_bytes(b"\n".join(lines))
    server.start()
    status, data, _ = run_stream(server, run_id, "offset=-1")
    assert status == 200
    assert json.loads(data)[2] == {"type": "record.damaged", "bytes": len(lines[2]) + 1}


def test_a_full_disk_refuses_appends_with_507_and_keeps_what_was_acknowledged(small_disk):
    server = ServerProcess(small_disk / "var").start()
    try:
        call(server, "PUT", "f", b"kept ", {"Content-Type": "text/plain"})
        assert call(server, "POST", "f", b"also kept", {"Content-Type": "text/plain"})[0] == 204
        filler = small_disk / "filler"
        fill(filler)
        status, data, _ = call(server, "POST", "f", b"x" * 65536, {"Content-Type": "text/plain"})
        assert status == 507 and json.loads(data)["error"]["code"] == "disk_full"
        assert read_all(server, "f")[0] == b"kept also kept"
        status, _, _ = call(server, "PUT", "g", b"y" * 65536, {"Content-Type": "text/plain"})
        assert status == 507
        assert not [path for path in (server.data_dir / "streams").iterdir() if path.name != "f"]
        filler.unlink()
        assert call(server, "POST", "f", b" and more", {"Content-Type": "text/plain"})[0] == 204
        assert read_all(server, "f")[0] == b"kept also kept and more"
    finally:
        server.stop()


# -- several servers on one Redis -----------------------------------------------------------


def test_with_redis_every_server_serves_the_same_streams(server_factory, redis_server, tmp_path):
    redis_server.flush()
    env = {"HERMES_WEB_STORE": redis_server.url}
    first = server_factory(env=env, data_dir=tmp_path / "a")
    second = server_factory(env=env, data_dir=tmp_path / "b")
    assert call(first, "PUT", "shared", b"", {"Content-Type": "application/json"})[0] == 201
    assert call(second, "PUT", "shared", b"", {"Content-Type": "application/json"})[0] == 200
    # A live reader on one server hears appends made through the other.
    received = []
    reader = threading.Thread(target=lambda: received.extend(
        sse_until(second, "/ds/streams/shared?offset=-1&live=sse", "streamClosed")))
    reader.start()
    # Appends through both servers at once: each is written once, none lost.
    def write(server, label):
        for number in range(25):
            status, _, _ = call(server, "POST", "shared", json.dumps({"by": label, "n": number}).encode(),
                                {"Content-Type": "application/json"})
            assert status == 204
    writers = [threading.Thread(target=write, args=(server, label)) for server, label in ((first, "a"), (second, "b"))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    # A producer's retry through the other server is recognised.
    producer = {"Content-Type": "application/json", "Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0"}
    assert call(first, "POST", "shared", b'{"once": true}', producer)[0] == 200
    assert call(second, "POST", "shared", b'{"once": true}', producer)[0] == 204
    assert call(first, "POST", "shared", b"", {"Stream-Closed": "true"})[0] == 204
    reader.join(30)
    values = json.loads(read_all(first, "shared")[0])
    assert sorted((value["by"], value["n"]) for value in values[:-1]) == sorted(
        (label, number) for label in "ab" for number in range(25))
    assert values[-1] == {"once": True}
    live = [value for frame in received if frame.get("event") == "data" for value in json.loads(frame["data"])]
    assert live == values
    assert json.loads(received[-1]["data"])["streamClosed"] is True


def test_one_process_serves_a_stream_of_a_data_dir(server_factory, tmp_path):
    first = server_factory()
    assert call(first, "PUT", "owned", b"a", {"Content-Type": "text/plain"})[0] == 201
    second = server_factory(data_dir=first.data_dir)
    status, data, headers = call(second, "POST", "owned", b"b", {"Content-Type": "text/plain"})
    assert status == 503 and json.loads(data)["error"]["code"] == "stream_held" and headers["Retry-After"]
    assert read_all(first, "owned")[0] == b"a"
    first.stop()
    assert call(second, "POST", "owned", b"b", {"Content-Type": "text/plain"})[0] == 204
    assert read_all(second, "owned")[0] == b"ab"
