"""Deleting a session while something else works on it: a run starting, compaction, an
upload. No resurrected data, no orphan files, no 500s, no leaked descriptors."""

import concurrent.futures
import os
import subprocess
import sys
import time

from tests.support import ROOT, request
from tests.test_uploads import upload

ROUNDS = 30


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def leftovers(data_dir, session_id) -> list:
    """Files of a deleted session that should be gone."""
    paths = [data_dir / "journals" / session_id, data_dir / "uploads" / session_id,
             data_dir / "transcripts" / f"{session_id}.jsonl", data_dir / "archive" / session_id,
             data_dir / "sessions" / f"{session_id}.json"]
    left = [str(path) for path in paths if path.exists()]
    for marker in (data_dir / "index" / "active").iterdir():
        if os.readlink(marker) == session_id:
            left.append(str(marker))
    return left


def settle(server, timeout=30.0):
    """Wait until no run of the server is active."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(item["active_run"] is None for item in server.api("GET", "/api/sessions")[1]):
            return
        time.sleep(0.05)
    raise TimeoutError("runs still active")


def test_delete_racing_a_run_start_leaves_nothing_and_answers_cleanly(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "2"})
    baseline = open_descriptors(server.process.pid)
    statuses = []
    sessions = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(ROUNDS):
            session_id = server.create_session()
            sessions.append(session_id)
            start = pool.submit(server.api, "POST", f"/api/sessions/{session_id}/runs", {"text": "race me"})
            delete = pool.submit(request, server.url, "DELETE", f"/api/sessions/{session_id}")
            statuses.append((start.result()[0], delete.result()[0]))
    for started, deleted in statuses:
        assert started in (202, 404), statuses
        assert deleted in (204, 404), statuses
    settle(server)
    for session_id in sessions:
        assert leftovers(server.data_dir, session_id) == []
        assert server.api("GET", f"/api/sessions/{session_id}")[0] == 404
    time.sleep(0.5)
    assert open_descriptors(server.process.pid) <= baseline + 4


def test_delete_racing_compaction_never_writes_the_deleted_chat_back(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(data_dir=data_dir)
    sessions = []
    for index in range(12):
        session_id = server.create_session()
        for turn in range(2):
            run_id = server.start_run(session_id, f"turn {turn}")["run_id"]
            server.wait_run_finished(run_id)
        sessions.append(session_id)
    compaction = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, io\n"
         "from hermes_web.compaction.files import compact\nfrom hermes_web.compaction.plan import Options\n"
         "from hermes_web.store.datadir import DataDir\n"
         "for _ in range(20):\n"
         "    compact(DataDir(sys.argv[1]), Options(older_than=0, mode='archive', wait=True), out=io.StringIO())\n",
         str(data_dir)], cwd=ROOT)
    try:
        for session_id in sessions:
            status, _, _ = request(server.url, "DELETE", f"/api/sessions/{session_id}")
            assert status == 204
            time.sleep(0.02)
    finally:
        assert compaction.wait(120) == 0
    for session_id in sessions:
        assert leftovers(data_dir, session_id) == [], session_id


def test_delete_racing_an_upload_leaves_no_orphan_files(server):
    sessions = []
    statuses = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(ROUNDS):
            session_id = server.create_session()
            sessions.append(session_id)
            sent = pool.submit(upload, server, session_id, [("notes.txt", b"x" * 200_000)])
            deleted = pool.submit(request, server.url, "DELETE", f"/api/sessions/{session_id}")
            statuses.append((sent.result()[0], deleted.result()[0]))
    for uploaded, deleted in statuses:
        assert uploaded in (201, 404), statuses
        assert deleted in (204, 404), statuses
    for session_id in sessions:
        assert leftovers(server.data_dir, session_id) == [], session_id
