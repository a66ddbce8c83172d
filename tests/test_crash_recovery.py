"""Crash recovery (PROTOCOL 1.3): kill -9 mid-run, torn tails written by hand, recovery at
start-up and when a reader meets a dead run, tailers across processes."""

import json
import time

from hermes_web.core.codec import encode_record
from hermes_web.core.ids import new_run_id
from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.store.files.journal import read_entries
from tests.support import SseClient, journal_lines

STREAM_TIMEOUT = 30.0


def wait_for(condition, timeout=10.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {message}")


def count_type(path, kind):
    return sum(1 for line, _ in journal_lines(path) if json.loads(line)["type"] == kind)


def assert_ends_interrupted_once(path):
    """Every line parses, exactly one terminal record, it is the last line, no torn tail."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]
    terminals = [index for index, record in enumerate(records) if record["type"] in TERMINAL_TYPES]
    assert terminals == [len(records) - 1]
    assert records[-1]["type"] == "run.interrupted"
    assert records[0]["type"] == "run.started"
    return records


def test_kill9_mid_run_then_restart_interrupts_the_run_and_keeps_its_partial_text(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "20"}, data_dir=data_dir)
    session_id = server.create_session()
    run_id = server.start_run(session_id, "kill me halfway")["run_id"]
    path = server.journal_path(session_id, run_id)
    tailer = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    received = []
    for frame in tailer.frames():
        if "id" in frame:
            received.append((frame["id"], frame["event"], frame["data"]))
            if frame["event"] == "text.delta" and sum(1 for f in received if f[1] == "text.delta") >= 5:
                break
    server.kill9()
    tailer.close()
    before_restart = path.read_bytes()
    assert not any(json.loads(line)["type"] in TERMINAL_TYPES for line in before_restart.splitlines())

    restarted = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "20"}, data_dir=data_dir)
    records = assert_ends_interrupted_once(path)
    assert path.read_bytes().startswith(before_restart)  # nothing written was lost
    for journal in (data_dir / "journals").rglob("*.jsonl"):
        for line in journal.read_bytes().splitlines():
            json.loads(line)
    status, view, _ = restarted.api("GET", f"/api/sessions/{session_id}")
    assert status == 200 and view["active_run"] is None
    assistant = view["messages"][-1]
    partial = "".join(record["text"] for record in records if record["type"] == "text.delta")
    assert assistant["status"] == "interrupted" and assistant["reason"]
    assert assistant["text"] == partial and len(partial) > 0
    assert restarted.api("GET", f"/api/runs/{run_id}")[1]["status"] == "interrupted"
    # The tailer resumes from its last id on the restarted server and gets the rest.
    client = SseClient(restarted.url, f"/api/runs/{run_id}/events", last_event_id=received[-1][0],
                       timeout=STREAM_TIMEOUT)
    try:
        rest = [(frame["id"], frame["event"], frame["data"]) for frame in client.frames() if "id" in frame]
    finally:
        client.close()
    everything = received + rest
    expected = []
    for line, end in journal_lines(path):
        expected.append((f"{run_id}:{end}", json.loads(line)["type"], line[:-1].decode()))
    assert everything == expected
    assert rest[-1][1] == "run.interrupted"
    # A new run in the same session is accepted: the dead one is no longer active.
    next_run = restarted.start_run(session_id, "after the crash")["run_id"]
    restarted.api("POST", f"/api/runs/{next_run}/cancel")


def write_dead_journal(data_dir, session_id, torn=b'{"type":"text.delta","ts":3.0,"text":"half a li'):
    """A journal whose writer died mid-line: run.started, two deltas, half a line, no lock."""
    run_id = new_run_id(session_id)
    journals = data_dir / "journals" / session_id
    journals.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = journals / f"{run_id}.jsonl"
    records = [
        {"type": "run.started", "ts": 1.0, "run_id": run_id, "session_id": session_id,
         "user": {"id": f"{run_id}-user", "text": "by hand", "attachments": []},
         "agent": {"name": "demo", "model": "demo"}},
        {"type": "text.delta", "ts": 2.0, "text": "kept "},
        {"type": "text.delta", "ts": 2.5, "text": "text"},
    ]
    good = b"".join(encode_record(record) for record in records)
    path.write_bytes(good + torn)
    path.chmod(0o600)
    return run_id, path, good


def assert_recovered_by_hand(path, good, torn):
    data = path.read_bytes()
    assert data.startswith(good)
    assert json.loads(data[len(good):])["type"] == "run.interrupted"
    assert data.count(b"\n") == 4
    assert path.with_name(path.name + ".torn").read_bytes() == torn


def test_a_torn_tail_is_cut_at_start_up_and_kept_aside(tmp_path, server_factory):
    data_dir = tmp_path / "var"
    first = server_factory(data_dir=data_dir)
    session_id = first.create_session()
    first.stop()
    torn = b'{"type":"text.delta","ts":3.0,"text":"half a li'
    run_id, path, good = write_dead_journal(data_dir, session_id, torn)
    server = server_factory(data_dir=data_dir)
    assert_recovered_by_hand(path, good, torn)
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert view["messages"][-1]["status"] == "interrupted"
    assert view["messages"][-1]["text"] == "kept text"
    assert view["cursor"] == f"{run_id}:{path.stat().st_size}"


def test_a_reader_meeting_a_dead_journal_recovers_it(server):
    session_id = server.create_session()
    torn = b'{"type":"tool.started","ts":3.0,"call_id":"c'
    # The session view meets it.
    run_id, path, good = write_dead_journal(server.data_dir, session_id, torn)
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert status == 200
    assert view["messages"][-1]["status"] == "interrupted" and view["messages"][-1]["text"] == "kept text"
    assert view["active_run"] is None
    assert_recovered_by_hand(path, good, torn)
    # The run stream meets another one: it ends with run.interrupted instead of hanging.
    other_session = server.create_session()
    run_id, path, good = write_dead_journal(server.data_dir, other_session, torn)
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        events = [frame["event"] for frame in client.frames() if "id" in frame]
    finally:
        client.close()
    assert events == ["run.started", "text.delta", "text.delta", "run.interrupted"]
    assert_recovered_by_hand(path, good, torn)
    # The session stream, and the run API, meet a third.
    third_session = server.create_session()
    run_id, path, good = write_dead_journal(server.data_dir, third_session, torn)
    client = SseClient(server.url, f"/api/sessions/{third_session}/events", timeout=STREAM_TIMEOUT)
    try:
        events = []
        for frame in client.frames():
            if "id" in frame:
                events.append(frame["event"])
                if frame["event"] == "run.interrupted":
                    break
    finally:
        client.close()
    assert events == ["run.started", "text.delta", "text.delta", "run.interrupted"]
    assert_recovered_by_hand(path, good, torn)
    assert server.api("GET", f"/api/runs/{run_id}")[1]["status"] == "interrupted"


def test_a_tailer_on_another_server_sees_the_writer_die_and_gets_run_interrupted(server_factory, tmp_path):
    data_dir = tmp_path / "shared"
    writer = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "20"}, data_dir=data_dir)
    reader = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "20"}, data_dir=data_dir)
    session_id = writer.create_session()
    run_id = writer.start_run(session_id, "die while watched")["run_id"]
    client = SseClient(reader.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        received = []
        killed_at = None
        for frame in client.frames():
            if "id" not in frame:
                continue
            received.append((frame["id"], frame["event"], frame["data"]))
            if len(received) == 10:
                writer.kill9()
                killed_at = time.monotonic()
            if frame["event"] == "run.interrupted":
                interrupted_after = time.monotonic() - killed_at
                break
    finally:
        client.close()
    path = writer.journal_path(session_id, run_id)
    assert_ends_interrupted_once(path)
    expected = [(f"{run_id}:{end}", json.loads(line)["type"], line[:-1].decode()) for line, end in journal_lines(path)]
    assert received == expected
    assert interrupted_after < 5.0
    print(f"remote writer killed: run.interrupted reached the tailer after {interrupted_after * 1000:.0f} ms")
    status, view, _ = reader.api("GET", f"/api/sessions/{session_id}")
    assert view["messages"][-1]["status"] == "interrupted"
    assert view["messages"][-1]["text"] == "".join(
        record["text"] for record, _ in read_entries(path) if record["type"] == "text.delta")
