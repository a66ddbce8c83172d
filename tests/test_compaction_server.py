"""Compaction against a real running server: the view, run endpoints and streams."""

import json
import os
import subprocess
import sys
import time

from tests.support import ROOT, SseClient, request


def compact(server, *args):
    result = subprocess.run(
        [sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(server.data_dir), *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def settled_view_bytes(server, session_id, timeout=10.0) -> bytes:
    """The view once the server has recorded the last run's end in the session metadata
    (``updated_at`` is bumped just after the terminal record is written)."""
    deadline = time.monotonic() + timeout
    while True:
        body = view_bytes(server, session_id)
        view = json.loads(body)
        if view["active_run"] is None and view["updated_at"] >= view["messages"][-1]["finished_at"]:
            return body
        assert time.monotonic() < deadline, "session metadata never caught up with the last run"
        time.sleep(0.02)


def view_bytes(server, session_id) -> bytes:
    status, body, _ = request(server.url, "GET", f"/api/sessions/{session_id}")
    assert status == 200
    return body


def records_until_terminal(client, limit=2000):
    records = []
    for frame_id, event, data in client.records():
        records.append((frame_id, event, data))
        if event in ("run.completed", "run.failed", "run.cancelled", "run.interrupted"):
            return records
        assert len(records) < limit
    raise AssertionError(f"stream ended without a terminal record after {len(records)} records")


def test_view_is_byte_identical_and_compacted_runs_answer_410(server):
    session_id = server.create_session()
    run_ids = []
    for text in ("first question", "second question with more words", "third"):
        run_id = server.start_run(session_id, text)["run_id"]
        server.wait_run_finished(run_id)
        run_ids.append(run_id)
    before = settled_view_bytes(server, session_id)
    output = compact(server, "--older-than", "0")
    assert "3 run(s) compacted" in output
    assert view_bytes(server, session_id) == before
    assert not (server.data_dir / "journals" / session_id).exists()
    assert (server.data_dir / "archive" / session_id / f"{run_ids[0]}.jsonl.gz").exists()
    view = json.loads(before)
    assert view["cursor"] == view["messages"][-1]["cursor"]

    status, body, _ = server.api("GET", f"/api/runs/{run_ids[1]}")
    assert status == 200
    assert (body["session_id"], body["status"]) == (session_id, "completed")
    for path in (f"/api/runs/{run_ids[1]}/events", f"/api/runs/{run_ids[1]}/journal?offset=0"):
        status, body, headers = server.api("GET", path)
        assert status == 410, path
        assert headers["Content-Type"].startswith("application/json")
        assert body["error"]["code"] == "run_compacted"
        assert body["error"]["session_id"] == session_id

    # The session stream resumes from the view's cursor (a compacted run) with later runs.
    client = SseClient(server.url, f"/api/sessions/{session_id}/events", last_event_id=view["cursor"], timeout=30)
    try:
        assert client.status == 200
        later = server.start_run(session_id, "after compaction")["run_id"]
        records = records_until_terminal(client)
    finally:
        client.close()
    assert records[0][2]["type"] == "run.started" and records[0][2]["run_id"] == later
    assert {frame_id.split(":")[0] for frame_id, _, _ in records} == {later}
    assert records[-1][1] == "run.completed"
    server.wait_run_finished(later)

    # Idempotent against the live server too: nothing twice, the view unchanged.
    before = settled_view_bytes(server, session_id)
    output = compact(server, "--older-than", "0", "--delete")
    assert "1 run(s) compacted" in output
    assert view_bytes(server, session_id) == before
    assert "0 run(s) compacted" in compact(server, "--older-than", "0")
    assert view_bytes(server, session_id) == before
    transcript = (server.data_dir / "transcripts" / f"{session_id}.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["run_id"] for line in transcript] == [r for r in run_ids + [later] for _ in (0, 1)]


def test_compaction_racing_a_live_run_leaves_it_alone(server_factory, tmp_path):
    fast = server_factory(data_dir=tmp_path / "var")
    session_id = fast.create_session()
    finished = []
    for text in ("one", "two"):
        run_id = fast.start_run(session_id, text)["run_id"]
        fast.wait_run_finished(run_id)
        finished.append(run_id)
    early_view = json.loads(settled_view_bytes(fast, session_id))
    fast.stop()
    # The same data dir, now with a demo agent slow enough to compact in the middle of a run.
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "25"}, data_dir=tmp_path / "var")
    live = server.start_run(session_id, "a slow live run")["run_id"]
    live_journal = server.journal_path(session_id, live)
    run_stream = SseClient(server.url, f"/api/runs/{live}/events", timeout=30)
    # A session stream that is already past the runs about to be compacted.
    open_stream = SseClient(server.url, f"/api/sessions/{session_id}/events",
                            last_event_id=early_view["messages"][1]["cursor"], timeout=30)
    session_stream = None
    try:
        replayed = records_until_terminal(open_stream)
        assert {frame_id.split(":")[0] for frame_id, _, _ in replayed} == {finished[1]}
        first = next(run_stream.records())
        assert first[1] == "run.started"
        output = compact(server, "--older-than", "0")
        # A session stream whose cursor names a run compacted just now.
        session_stream = SseClient(server.url, f"/api/sessions/{session_id}/events",
                                   last_event_id=early_view["messages"][1]["cursor"], timeout=30)
        assert session_stream.status == 200
        assert f"skip {live}: running (a live writer holds its lock)" in output
        assert "2 run(s) compacted" in output
        assert live_journal.exists()
        status, body, _ = server.api("GET", f"/api/runs/{live}")
        assert (status, body["status"]) == (200, "running")
        view = json.loads(view_bytes(server, session_id))
        assert view["messages"][:4] == early_view["messages"]
        assert view["active_run"] == {"id": live}

        rest = records_until_terminal(run_stream)
        offsets = [int(frame_id.split(":")[1]) for frame_id, _, _ in [first] + rest]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        assert rest[-1][1] == "run.completed"
        assert offsets[-1] == live_journal.stat().st_size

        journal_records = [json.loads(line) for line in live_journal.read_bytes().splitlines()]
        for stream in (open_stream, session_stream):
            continued = records_until_terminal(stream)
            assert {frame_id.split(":")[0] for frame_id, _, _ in continued} == {live}
            assert [data for _, _, data in continued] == journal_records
    finally:
        run_stream.close()
        open_stream.close()
        if session_stream is not None:
            session_stream.close()

    server.wait_run_finished(live)
    before = settled_view_bytes(server, session_id)
    output = compact(server, "--older-than", "0")
    assert "1 run(s) compacted" in output
    assert not live_journal.exists()
    assert view_bytes(server, session_id) == before
