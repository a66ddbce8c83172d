"""Unreadable files (permissions): a clear error for the session they belong to, and
everything else served. The server runs without root's override of file modes, so a mode
of 000 means for it what it means for any user."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT, ServerProcess, SseClient

AS_ORDINARY_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


@pytest.fixture
def server(tmp_path):
    if AS_ORDINARY_USER and not shutil.which("setpriv"):
        pytest.skip("setpriv is needed to drop root's override of file modes")
    server = ServerProcess(tmp_path / "var", command=[*AS_ORDINARY_USER, sys.executable, "-m", "hermes_web"]).start()
    yield server
    server.stop()


def finished_run(server, session_id, text="readable or not"):
    run_id = server.start_run(session_id, text)["run_id"]
    server.wait_run_finished(run_id)
    return run_id


def assert_storage_error(server, path):
    status, body, headers = server.api("GET", path)
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == "storage_error" and "permission denied" in body["error"]["message"]
    assert str(server.data_dir) not in body["error"]["message"]  # no path on the wire


def test_an_unreadable_journal_gives_its_session_a_clear_error_and_nothing_else(server):
    broken = server.create_session()
    run_id = finished_run(server, broken)
    healthy = server.create_session()
    healthy_run = finished_run(server, healthy)
    server.journal_path(broken, run_id).chmod(0)
    assert_storage_error(server, f"/api/sessions/{broken}")
    assert_storage_error(server, f"/api/runs/{run_id}")
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=10)
    try:
        assert client.status == 503
    finally:
        client.close()
    assert server.api("GET", "/api/sessions")[0] == 200
    assert server.api("GET", f"/api/sessions/{healthy}")[1]["messages"][-1]["status"] == "completed"
    assert server.api("GET", f"/api/runs/{healthy_run}")[1]["status"] == "completed"
    finished_run(server, healthy, "still answering")
    server.journal_path(broken, run_id).chmod(0o600)
    assert server.api("GET", f"/api/sessions/{broken}")[0] == 200


def test_unreadable_metadata_and_transcript_stay_in_their_session(server):
    metadata_broken = server.create_session()
    transcript_broken = server.create_session()
    finished_run(server, transcript_broken)
    healthy = server.create_session()
    compact = subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(server.data_dir),
                              "--older-than", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert compact.returncode == 0, compact.stdout
    (server.data_dir / "sessions" / f"{metadata_broken}.json").chmod(0)
    (server.data_dir / "transcripts" / f"{transcript_broken}.jsonl").chmod(0)
    status, listed, _ = server.api("GET", "/api/sessions")
    assert status == 200
    by_id = {item["id"]: item for item in listed}
    assert by_id[metadata_broken]["damaged"] is True and "damaged" not in by_id[healthy]
    assert_storage_error(server, f"/api/sessions/{transcript_broken}")
    assert server.api("GET", f"/api/sessions/{healthy}")[0] == 200
    assert server.api("POST", "/api/sessions", {})[0] == 201


def test_a_run_that_cannot_start_is_ended_not_left_running(tmp_path):
    """The journal exists before the agent's history is read: when that read fails, the run
    still ends with a terminal record that says why (no run "running" forever)."""
    from hermes_web.core.records import TERMINAL_TYPES
    from tests.fake_openai import FakeOpenAI
    from tests.support import journal_lines

    if AS_ORDINARY_USER and not shutil.which("setpriv"):
        pytest.skip("setpriv is needed to drop root's override of file modes")
    provider = FakeOpenAI().start()
    server = ServerProcess(tmp_path / "var", command=[*AS_ORDINARY_USER, sys.executable, "-m", "hermes_web"],
                           env={"HERMES_WEB_OPENAI_BASE_URL": provider.url}).start()
    try:
        session_id = server.create_session()
        earlier = finished_run(server, session_id)
        server.journal_path(session_id, earlier).chmod(0)
        status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "go", "agent": "openai"})
        assert status == 503 and body["error"]["code"] == "storage_error"
        server.journal_path(session_id, earlier).chmod(0o600)
        latest = sorted(path for path in (server.data_dir / "journals" / session_id).iterdir() if path.suffix == ".jsonl")[-1]
        assert latest.stem != earlier
        records = [line for line, _ in journal_lines(latest)]
        last = json.loads(records[-1])
        assert last["type"] in TERMINAL_TYPES and last["type"] == "run.failed" and "could not start" in last["error"]["message"]
        listed = {item["id"]: item for item in server.api("GET", "/api/sessions")[1]}
        assert listed[session_id]["active_run"] is None
        assert finished_run(server, session_id, "and the next one works")
    finally:
        server.stop()
        provider.stop()
