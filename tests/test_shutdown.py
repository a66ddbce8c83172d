"""Ctrl-C (SIGINT) and SIGTERM end every running run with a terminal record, then exit 0."""

import json
import signal
import time

import pytest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_the_server_ends_running_runs_with_one_terminal_record(server_factory, sig):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "40"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "a long answer, please")["run_id"]
    path = server.journal_path(session_id, run_id)
    deadline = time.monotonic() + 10
    while b'"text.delta"' not in path.read_bytes() and b'"reasoning.delta"' not in path.read_bytes():
        assert time.monotonic() < deadline, "the run never started streaming"
        time.sleep(0.02)

    assert server.stop(sig=sig, timeout=10) == 0

    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    terminal = [record for record in records if record["type"].startswith("run.") and record["type"] != "run.started"]
    assert terminal == [records[-1]]
    assert records[-1]["type"] == "run.interrupted"
    assert records[-1]["reason"] == "server shutdown"
    assert records[0]["type"] == "run.started"


def test_a_stopped_server_restarts_on_the_same_data_dir_with_nothing_to_recover(server_factory, tmp_path):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "40"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "stop me")["run_id"]
    time.sleep(0.3)
    server.stop(sig=signal.SIGINT)
    before = server.journal_path(session_id, run_id).read_bytes()

    again = server_factory(data_dir=server.data_dir)
    status, view, _ = again.api("GET", f"/api/sessions/{session_id}")
    assert status == 200
    assert view["active_run"] is None
    assert view["messages"][-1]["status"] == "interrupted"
    assert view["messages"][-1]["reason"] == "server shutdown"
    assert server.journal_path(session_id, run_id).read_bytes() == before
