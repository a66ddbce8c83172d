"""A full disk (a real tmpfs of a few MiB under the data dir): a run that cannot append
ends failed saying the disk is full, nothing acknowledged is lost, reads keep answering,
writes get a clear 507, and everything works again once space is freed."""

import errno
import json
import os
import subprocess
import time

import pytest

from hermes_web.core.ids import new_run_id
from tests.support import ServerProcess, journal_lines

FS_BYTES = 8 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES},mode=0700", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path) -> int:
    """Write zeros to ``path`` until the file system is full; stop at the first short write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    total = 0
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                written = os.write(fd, chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                return total
            total += written
            if written < len(chunk):
                return total
    finally:
        os.close(fd)


def test_a_full_disk_fails_the_run_clearly_and_the_server_recovers_when_space_is_freed(small_disk):
    server = ServerProcess(small_disk / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "20"}).start()
    try:
        session_id = server.create_session()
        run_id = server.start_run(session_id, "write until the disk is full")["run_id"]
        path = server.journal_path(session_id, run_id)
        deadline = time.monotonic() + 20
        while path.read_bytes().count(b"\n") < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        acknowledged = path.read_bytes()
        filler = small_disk / "filler"
        assert fill(filler) > 0
        status = server.wait_run_finished(run_id, timeout=30)["status"]
        assert status == "failed"
        data = path.read_bytes()
        assert data.startswith(acknowledged[: acknowledged.rfind(b"\n") + 1])  # nothing written was lost
        records = [json.loads(line) for line, _ in journal_lines(path)]
        assert data.endswith(b"\n") and records[-1]["type"] == "run.failed"
        assert records[-1]["error"]["type"] == "DiskFull" and "disk" in records[-1]["error"]["message"]
        assert [record["type"] for record in records].count("run.failed") == 1
        # The room kept for the terminal record went to it; whatever fills disks takes the rest.
        fill(filler)
        # Reads answer; writes say the disk is full.
        view = server.api("GET", f"/api/sessions/{session_id}")[1]
        assert view["messages"][-1]["status"] == "failed" and "disk" in view["messages"][-1]["error"]["message"]
        assert server.api("GET", "/api/sessions")[0] == 200
        assert server.api("GET", f"/api/runs/{run_id}")[0] == 200
        status, body, _ = server.api("POST", "/api/sessions", {})
        assert status == 507 and body["error"]["code"] == "disk_full"
        status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "again"})
        assert status == 507 and body["error"]["code"] == "disk_full"
        # A dead run met while the disk is full: the view answers with what is on disk.
        other = session_id
        dead = new_run_id(other)
        dead_path = path.with_name(f"{dead}.jsonl")
        line = (b'{"type":"run.started","ts":1.0,"run_id":"%s","session_id":"%s","user":{"id":"u","text":"x",'
                b'"attachments":[]},"agent":{"name":"demo","model":"demo"}}\n') % (dead.encode(), other.encode())
        filler.unlink()
        dead_path.write_bytes(line)
        fill(filler)
        status, view, _ = server.api("GET", f"/api/sessions/{other}")
        assert status == 200 and view["messages"][-1]["run_id"] == dead
        # Space is freed: everything works again, and room for terminal records is kept.
        filler.unlink()
        status, view, _ = server.api("GET", f"/api/sessions/{other}")
        assert status == 200 and view["messages"][-1]["status"] == "interrupted"
        next_run = server.start_run(session_id, "after the cleanup")["run_id"]
        assert server.wait_run_finished(next_run, timeout=60)["status"] == "completed"
        assert (small_disk / "var" / "index" / "reserve").stat().st_size >= 1024 * 1024
        assert server.api("POST", "/api/sessions", {})[0] == 201
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text()
