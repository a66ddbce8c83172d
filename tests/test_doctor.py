"""``hermes-web doctor [--fix]``: run as a command against data dirs a real server wrote,
then broken by hand the ways a person or a disk breaks them; and against the shared Redis."""

import json
import os
import stat
import subprocess
import sys
import time

from hermes_web.core.codec import encode_record
from hermes_web.core.config import Config
from hermes_web.core.ids import new_run_id
from hermes_web.store.durability import Durability
from hermes_web.store.redis import open_stores
from hermes_web.store.redis.client import KEYS
from tests.support import ROOT, request
from tests.test_approvals_api import start_and_wait_for
from tests.test_uploads import upload_one

HOURS_AGO = time.time() - 2 * 3600


def doctor(data_dir, *args, env=None):
    """``python -m hermes_web doctor ARGS``: ``(returncode, finding lines, summary line)``."""
    result = subprocess.run([sys.executable, "-m", "hermes_web", "doctor", "--data-dir", str(data_dir), *args],
                            cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines and lines[-1].startswith("summary\t"), result.stdout + result.stderr
    return result.returncode, [line.split("\t") for line in lines[:-1]], lines[-1]


def kinds(findings) -> list:
    return sorted((fields[0], fields[1]) for fields in findings)


def write_private(path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def journal_bytes(session_id: str, run_id: str, text: str = "copied by hand") -> bytes:
    records = [
        {"type": "run.started", "ts": 1.0, "run_id": run_id, "session_id": session_id,
         "user": {"id": f"{run_id}-user", "text": text, "attachments": []}, "agent": {"name": "demo", "model": "demo"}},
        {"type": "text.delta", "ts": 1.1, "text": "an answer"},
        {"type": "run.completed", "ts": 1.2},
    ]
    return b"".join(encode_record(record) for record in records)


def test_a_clean_data_dir_after_real_runs_passes_and_usage_errors_exit_2(server, tmp_path):
    session_id = server.create_session()
    attachment = upload_one(server, session_id, "notes.txt", b"some notes\n")
    server.run_to_end(session_id, "read this", attachments=[attachment["id"]])
    server.run_to_end(session_id, "and again")
    for path in server.data_dir.rglob("*"):  # nothing is young: the grace periods do not hide anything
        os.utime(path, (HOURS_AGO, HOURS_AGO), follow_symlinks=False)

    code, findings, summary = doctor(server.data_dir)
    assert (code, findings) == (0, []), findings
    assert summary == f"summary\t{server.data_dir}\tno findings"
    assert doctor(server.data_dir, "--fix")[:2] == (0, [])

    usage = subprocess.run([sys.executable, "-m", "hermes_web", "doctor", "--bogus"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "--bogus" in usage.stderr
    missing = subprocess.run([sys.executable, "-m", "hermes_web", "doctor", "--data-dir", str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "no data dir" in missing.stderr and missing.stdout == ""


def test_a_journal_copied_by_hand_under_another_session_is_indexed_by_fix(server):
    session_id = server.create_session()
    server.run_to_end(session_id, "a real run")
    run_id = new_run_id()  # made before run ids named their session
    journal_path = server.journal_path(session_id, run_id)
    write_private(journal_path, journal_bytes(session_id, run_id))
    assert server.api("GET", f"/api/runs/{run_id}")[0] == 404  # invisible to lookups

    code, findings, summary = doctor(server.data_dir)
    subject = f"journals/{session_id}/{run_id}.jsonl"
    assert code == 1
    assert kinds(findings) == [("unindexed-run", subject)]
    assert "unindexed-run 1; 1 fixable with --fix" in summary

    code, findings, summary = doctor(server.data_dir, "--fix")
    assert code == 0 and findings[0][3] == f"fixed: index/runs/{run_id} -> {session_id}"
    assert summary.endswith("1 fixed, 0 left")
    status, body, _ = server.api("GET", f"/api/runs/{run_id}")
    assert (status, body["session_id"], body["status"]) == (200, session_id, "completed")
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert run_id in [message["run_id"] for message in view["messages"]]
    assert doctor(server.data_dir)[:2] == (0, [])


def test_stale_active_markers_are_dropped(server):
    session_id = server.create_session()
    run_id, _ = server.run_to_end(session_id, "hello")
    active = server.data_dir / "index" / "active"
    deadline = time.monotonic() + 10
    while os.path.lexists(active / run_id) and time.monotonic() < deadline:
        time.sleep(0.01)  # the writer drops its marker as it closes, just after the terminal record
    os.symlink(session_id, active / run_id)  # the run has ended
    gone = new_run_id(session_id)
    os.symlink(session_id, active / gone)  # no such run, and not being created: it is old
    os.utime(active / gone, (HOURS_AGO, HOURS_AGO), follow_symlinks=False)
    young = new_run_id(session_id)
    os.symlink(session_id, active / young)  # may be a run being created: left alone

    code, findings, _ = doctor(server.data_dir)
    assert code == 1
    assert kinds(findings) == sorted([("stale-marker", f"index/active/{run_id}"),
                                      ("stale-marker", f"index/active/{gone}")])
    code, findings, _ = doctor(server.data_dir, "--fix")
    assert code == 0 and all(fields[3] == "fixed: removed" for fields in findings)
    assert sorted(os.listdir(active)) == [young]
    assert doctor(server.data_dir)[:2] == (0, [])


def test_torn_tails_and_damaged_lines_are_reported_and_never_changed(server):
    session_id = server.create_session()
    torn_run, _ = server.run_to_end(session_id, "one")
    damaged_run, _ = server.run_to_end(session_id, "two")
    torn_path = server.journal_path(session_id, torn_run)
    with open(torn_path, "ab") as handle:
        handle.write(b'{"type":"text.delta","te')
    damaged_path = server.journal_path(session_id, damaged_run)
    lines = damaged_path.read_bytes().splitlines(keepends=True)
    damaged_offset = len(b"".join(lines[:2]))
    damaged_path.write_bytes(b"".join(lines[:2]) + b"\x00\xffnot json\n" + b"".join(lines[2:]))
    before = {path: path.read_bytes() for path in (torn_path, damaged_path)}

    for args in ((), ("--fix",)):
        code, findings, summary = doctor(server.data_dir, *args)
        assert code == 1
        assert kinds(findings) == sorted([("torn-tail", f"journals/{session_id}/{torn_run}.jsonl"),
                                          ("damaged-line", f"journals/{session_id}/{damaged_run}.jsonl")])
        by_kind = {fields[0]: fields for fields in findings}
        assert by_kind["torn-tail"][2].startswith("24 byte(s) after the last newline")
        assert f"1 line(s) that do not decode to a record, the first at byte {damaged_offset}" \
            in by_kind["damaged-line"][2]
        assert all(len(fields) == 3 for fields in findings)  # nothing to fix
    assert {path: path.read_bytes() for path in before} == before


def test_undecodable_transcripts_and_metadata_are_reported(server):
    broken = server.create_session()
    listed = server.create_session()
    run_id, _ = server.run_to_end(listed, "hello")
    write_private(server.data_dir / "sessions" / f"{broken}.json", b'{"id": "' + broken.encode() + b'", "tit')
    message = {"id": f"{run_id}-x", "role": "user", "run_id": "01700000000000000-aaaaaa", "text": "old"}
    write_private(server.data_dir / "transcripts" / f"{listed}.jsonl", encode_record(message) + b"garbage\n{\"cut")

    code, findings, _ = doctor(server.data_dir)
    assert code == 1
    assert kinds(findings) == sorted([("damaged-metadata", f"sessions/{broken}.json"),
                                      ("damaged-transcript", f"transcripts/{listed}.jsonl"),
                                      # the transcript's run is one its id does not locate
                                      ("unindexed-run", f"transcripts/{listed}.jsonl#01700000000000000-aaaaaa")])
    detail = {fields[0]: fields[2] for fields in findings}
    assert detail["damaged-transcript"].startswith(
        "2 line(s) that do not decode to a message; its last line has no newline")
    assert "not valid JSON" in detail["damaged-metadata"]


def test_uploads_no_message_references_are_reported(server):
    session_id = server.create_session()
    sent = upload_one(server, session_id, "sent.txt", b"sent\n")
    kept = upload_one(server, session_id, "kept.txt", b"never sent\n")
    fresh = upload_one(server, session_id, "fresh.txt", b"just uploaded\n")
    server.run_to_end(session_id, "here", attachments=[sent["id"]])
    meta_dir = server.data_dir / "uploads" / session_id / "meta"
    for attachment in (sent, kept):
        os.utime(meta_dir / f"{attachment['id']}.json", (HOURS_AGO, HOURS_AGO))

    code, findings, _ = doctor(server.data_dir)
    assert code == 1
    assert kinds(findings) == [("unreferenced-upload", f"uploads/{session_id}/meta/{kept['id']}.json")]
    assert "'kept.txt', 11 bytes" in findings[0][2] and fresh["id"] not in findings[0][1]
    assert doctor(server.data_dir, "--fix")[0] == 1  # reported only: never deleted
    assert (meta_dir / f"{kept['id']}.json").exists()


def test_loose_modes_are_reported_and_tightened(server):
    session_id = server.create_session()
    server.run_to_end(session_id, "hello")
    metadata_path = server.data_dir / "sessions" / f"{session_id}.json"
    journals_dir = server.data_dir / "journals" / session_id
    os.chmod(metadata_path, 0o644)
    os.chmod(journals_dir, 0o755)

    code, findings, _ = doctor(server.data_dir)
    assert code == 1
    assert kinds(findings) == sorted([("loose-mode", f"sessions/{session_id}.json"),
                                      ("loose-mode", f"journals/{session_id}")])
    assert {fields[2] for fields in findings} == {"file mode 0644, at most 0600", "directory mode 0755, at most 0700"}
    code, findings, _ = doctor(server.data_dir, "--fix")
    assert code == 0 and sorted(fields[3] for fields in findings) == ["fixed: mode 0600", "fixed: mode 0700"]
    assert stat.S_IMODE(os.stat(metadata_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journals_dir).st_mode) == 0o700
    assert doctor(server.data_dir)[:2] == (0, [])


def test_a_live_run_is_never_touched(server):
    session_id = server.create_session()
    run_id, _, client = start_and_wait_for(server, session_id, "/approval ls", "approval.requested")
    client.close()
    journal_path = server.journal_path(session_id, run_id)
    marker = server.data_dir / "index" / "active" / run_id
    assert doctor(server.data_dir, "--fix")[:2] == (0, [])  # live and unfinished: nothing to say
    os.chmod(journal_path, 0o644)
    before = journal_path.read_bytes()

    code, findings, _ = doctor(server.data_dir, "--fix")
    assert code == 1
    assert findings == [["loose-mode", f"journals/{session_id}/{run_id}.jsonl", "file mode 0644, at most 0600",
                         "not fixed: the journal of a live run is left alone"]]
    assert stat.S_IMODE(os.stat(journal_path).st_mode) == 0o644
    assert os.readlink(marker) == session_id and journal_path.read_bytes() == before
    assert server.api("GET", f"/api/runs/{run_id}")[1]["status"] == "running"

    assert server.api("POST", f"/api/runs/{run_id}/cancel", {})[0] == 200
    server.wait_run_finished(run_id)
    code, findings, _ = doctor(server.data_dir, "--fix")
    assert (code, [fields[3] for fields in findings]) == (0, ["fixed: mode 0600"])
    assert not os.path.lexists(marker)


def test_the_shared_store_indexes_markers_and_decoding(redis_server, tmp_path):
    redis_server.flush()
    data_dir = tmp_path / "var"
    env = {"HERMES_WEB_STORE": redis_server.url}
    stores = open_stores(Config(data_dir=data_dir, store_url=redis_server.url), Durability("terminal"))
    try:
        session_id = stores.metadata.create("s1")["id"]
        broken = stores.metadata.create("s2")["id"]
        runs = []
        for run_id in (new_run_id(session_id), new_run_id()):  # the second's id does not name its session
            first_record = json.loads(journal_bytes(session_id, run_id).split(b"\n")[0])
            writer = stores.logs.create(session_id, run_id, first_record)
            writer.append({"type": "run.completed", "ts": 2.0}, durable=True)
            writer.close()
            runs.append(run_id)
        assert doctor(data_dir, env=env)[:2] == (0, [])

        old_style = runs[1]
        redis_server.command("HDEL", KEYS.run_sessions, old_style)
        redis_server.command("HSET", KEYS.unfinished, runs[0], session_id)
        redis_server.command("SET", KEYS.session(broken), "{not json")
        redis_server.command("XADD", KEYS.log(runs[0]), "999999-0", "l", "garbage")

        code, findings, summary = doctor(data_dir, env=env)
        assert code == 1, findings
        assert kinds(findings) == sorted([("unindexed-run", old_style), ("stale-marker", KEYS.unfinished),
                                          ("damaged-metadata", KEYS.session(broken)),
                                          ("damaged-line", KEYS.log(runs[0]))])
        assert summary.startswith(f"summary\t{data_dir} and the shared store\t4 finding(s)")

        code, findings, summary = doctor(data_dir, "--fix", env=env)
        fixed = {fields[0]: fields[3] for fields in findings if len(fields) == 4}
        assert fixed == {"unindexed-run": f"fixed: {KEYS.run_sessions} {old_style} -> {session_id}",
                         "stale-marker": "fixed: removed"}
        assert summary.endswith("2 fixed, 2 left") and code == 1
        assert stores.logs.locate(old_style) == session_id
        assert not stores.logs.client.hexists(KEYS.unfinished, runs[0])
        assert kinds(doctor(data_dir, env=env)[1]) == sorted([("damaged-metadata", KEYS.session(broken)),
                                                              ("damaged-line", KEYS.log(runs[0]))])
    finally:
        stores.logs.stop()


def test_durable_streams_are_checked_and_stray_folders_removed(server):
    for name in ("good", "torn"):
        status, _, _ = request(server.url, "PUT", f"/ds/streams/{name}", b"ok", {"Content-Type": "text/plain"})
        assert status == 201
    streams = server.data_dir / "streams"
    with open(streams / "torn" / "log.jsonl", "ab") as log:
        log.write(b'{"text":"half')
    (streams / "broken").mkdir(mode=0o700)
    write_private(streams / "broken" / "stream.json", b"{not json")
    stray = streams / ".new-0123456789ab"
    stray.mkdir(mode=0o700)
    old = time.time() - 120
    os.utime(stray, (old, old))
    code, findings, _ = doctor(server.data_dir, "--fix")
    assert code == 1
    assert kinds(findings) == [("damaged-stream", "streams/broken/stream.json"),
                               ("stray-stream-folder", "streams/.new-0123456789ab"),
                               ("torn-tail", "streams/torn/log.jsonl")]
    assert not stray.exists()
    assert (streams / "torn" / "log.jsonl").read_bytes().endswith(b'"half')  # the server cuts it, not the doctor
