"""The runs API: start (202), one active run per session (409), cancel (prompt, idempotent,
partial output kept), the run resource, and the demo agent's pacing."""

import concurrent.futures
import json
import threading
import time

from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.runs.agents.demo import _TOOL_PAUSES
from hermes_web.store.files.journal import read_entries
from tests.support import SseClient, journal_lines

STREAM_TIMEOUT = 30.0


def test_start_answers_202_with_the_run_id_and_its_start_cursor_after_run_started_is_written(server):
    session_id = server.create_session()
    status, body, headers = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "go", "attachments": []})
    assert status == 202 and headers["Content-Type"] == "application/json"
    assert set(body) == {"run_id", "cursor"}
    assert body["cursor"] == f"{body['run_id']}:0"
    first_line = journal_lines(server.journal_path(session_id, body["run_id"]))[0][0]
    started = json.loads(first_line)
    assert started["type"] == "run.started" and started["run_id"] == body["run_id"]
    assert started["session_id"] == session_id and started["user"]["text"] == "go"
    server.wait_run_finished(body["run_id"])


def test_a_second_run_while_one_is_active_gets_409_naming_the_active_run(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "50"})
    session_id = server.create_session()
    active = server.start_run(session_id, "long one")["run_id"]
    status, body, headers = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "again"})
    assert status == 409 and headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == "run_active" and body["error"]["run_id"] == active
    assert active in body["error"]["message"]
    sessions = server.api("GET", "/api/sessions")[1]
    assert sessions[0]["id"] == session_id and sessions[0]["active_run"] == {"id": active}
    # Another session is not blocked.
    other = server.create_session()
    other_run = server.start_run(other, "parallel")["run_id"]
    for run_id in (active, other_run):
        assert server.api("POST", f"/api/runs/{run_id}/cancel")[0] == 200


def test_cancel_stops_the_run_promptly_keeps_partial_output_and_is_idempotent(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "40"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "cancel me soon")["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        frames = client.frames()
        for frame in frames:
            if frame.get("event") == "reasoning.delta":
                break
        sent = time.monotonic()
        status, body, _ = server.api("POST", f"/api/runs/{run_id}/cancel")
        answered = time.monotonic() - sent
        terminal = None
        for frame in frames:
            if frame.get("event") in TERMINAL_TYPES:
                terminal = frame
                break
        stopped = time.monotonic() - sent
        assert list(frames) == []  # nothing after the terminal record
    finally:
        client.close()
    assert terminal["event"] == "run.cancelled"
    assert json.loads(terminal["data"])["by"] == "user"
    assert stopped < 1.0, stopped
    assert status == 200 and body["status"] == "cancelled" and answered < 1.0
    path = server.journal_path(session_id, run_id)
    assert body["committed"] == path.stat().st_size
    records = [record for record, _ in read_entries(path)]
    assert [record["type"] for record in records].count("run.cancelled") == 1
    assert records[-1]["type"] == "run.cancelled"
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assistant = view["messages"][-1]
    assert assistant["status"] == "cancelled"
    assert assistant["reasoning"] == "".join(r["text"] for r in records if r["type"] == "reasoning.delta") != ""
    assert assistant["text"] == "".join(r["text"] for r in records if r["type"] == "text.delta")
    before = path.read_bytes()
    for _ in range(2):
        status, again, _ = server.api("POST", f"/api/runs/{run_id}/cancel")
        assert status == 200 and again == body
    assert path.read_bytes() == before
    print(f"cancel: answered in {answered * 1000:.0f} ms, run.cancelled frame after {stopped * 1000:.0f} ms")


def test_cancel_of_a_finished_run_changes_nothing(server):
    session_id = server.create_session()
    run_id = server.start_run(session_id, "finish first")["run_id"]
    server.wait_run_finished(run_id)
    path = server.journal_path(session_id, run_id)
    before = path.read_bytes()
    status, body, _ = server.api("POST", f"/api/runs/{run_id}/cancel")
    assert status == 200 and body["status"] == "completed"
    assert path.read_bytes() == before


def test_run_resource_reports_session_status_and_committed_offset(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "10"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "describe me")["run_id"]
    path = server.journal_path(session_id, run_id)
    status, running, headers = server.api("GET", f"/api/runs/{run_id}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(running) == {"id", "session_id", "status", "committed"}
    assert (running["id"], running["session_id"], running["status"]) == (run_id, session_id, "running")
    data = path.read_bytes()
    assert running["committed"] <= len(data) and data[running["committed"] - 1:running["committed"]] == b"\n"
    finished = server.wait_run_finished(run_id)
    assert finished == {"id": run_id, "session_id": session_id, "status": "completed",
                        "committed": path.stat().st_size}


def test_a_demo_run_at_the_default_delay_lasts_10_to_20_seconds(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "1"})
    default_delay = 0.040
    session_id = server.create_session()
    durations = []
    for text in ("hi", "a typical question about durable streams and what happens on reload",
                 "a very long pasted message " * 200):
        run_id = server.start_run(session_id, text)["run_id"]
        server.wait_run_finished(run_id)
        kinds = [record["type"] for record, _ in read_entries(server.journal_path(session_id, run_id))]
        deltas = kinds.count("text.delta") + kinds.count("reasoning.delta")
        pauses = deltas + _TOOL_PAUSES * kinds.count("tool.started")
        durations.append(pauses * default_delay)
    print("demo run at 40 ms: " + ", ".join(f"{seconds:.1f} s" for seconds in durations))
    assert all(10.0 <= seconds <= 20.0 for seconds in durations), durations


def test_one_active_run_per_session_across_two_server_processes(server_factory):
    first = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "40"})
    second = server_factory(data_dir=first.data_dir, env={"HERMES_WEB_DEMO_DELAY_MS": "40"})
    session_id = first.create_session()
    barrier = threading.Barrier(12)

    def start(server):
        barrier.wait()
        return server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "only one of us"})

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(start, [first, second] * 6))
    started = [body["run_id"] for status, body, _ in answers if status == 202]
    assert len(started) == 1, answers
    conflicts = [body for status, body, _ in answers if status == 409]
    assert len(conflicts) == 11
    assert {body["run_id"] for body in conflicts} == set(started)
    assert len(list((first.data_dir / "journals" / session_id).glob("*.jsonl"))) == 1
