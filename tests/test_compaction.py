"""Compaction on a real data dir: idempotence, dry run, locking, retention, crash safety.

Journals are written with the real ``JournalWriter``; views are built with the real
``SessionViews``, the same code the server answers ``GET /api/sessions/<sid>`` with.
"""

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hermes_web.compaction import files as compaction
from hermes_web.compaction.files import CompactionLock, compact
from hermes_web.compaction.plan import Options
from hermes_web.core.ids import new_run_id
from hermes_web.read.views import SessionViews
from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.journal import JournalWriter, recover
from hermes_web.store.files.logs import FileLogStore
from hermes_web.store.files.metadata import SessionStore
from hermes_web.store.files.transcripts import TranscriptStore

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3600.0
CRASH_EXIT = 86


def write_run(data_dir: DataDir, session_id: str, text: str, ended_ago: float = 2 * HOUR,
              terminal: str = "run.completed", torn_tail: bytes = b"", deltas: int = 6) -> str:
    """A journal with a user turn, reasoning, a tool call, text and (optionally) an end."""
    run_id = new_run_id()
    now = time.time()
    start = now - ended_ago - 5
    started = {
        "type": "run.started", "ts": start, "run_id": run_id, "session_id": session_id,
        "user": {"id": f"{run_id}-user", "text": text, "attachments": []},
        "agent": {"name": "demo", "model": "demo"},
    }
    path = data_dir.journal_path(session_id, run_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    writer = JournalWriter.create(path, started, Durability("terminal"))
    writer.append({"type": "reasoning.delta", "ts": start + 0.1, "text": "thinking about “" + text + "”"})
    writer.append({"type": "tool.started", "ts": start + 0.2, "call_id": "call_1", "name": "word_count",
                   "args": {"text": text}})
    writer.append({"type": "tool.finished", "ts": start + 0.3, "call_id": "call_1",
                   "result": {"words": len(text.split())}, "is_error": False, "duration_ms": 3})
    for index in range(deltas):
        writer.append({"type": "text.delta", "ts": start + 0.4 + index / 100, "text": f"part {index} of {text} "})
    writer.append({"type": "usage", "ts": start + 1, "input_tokens": 12, "output_tokens": 34})
    if terminal is not None:
        writer.append({"type": terminal, "ts": now - ended_ago}, durable=True)
    if torn_tail:
        os.write(writer._fd, torn_tail)
    writer.close()
    return run_id


def make_session(data_dir: DataDir, title: str = "chat") -> str:
    session_id = f"s{len(data_dir.session_ids()) + 1:03d}"
    SessionStore(data_dir).create(session_id, title)
    return session_id


def build_workload(root: Path):
    """2 sessions x 3 runs. Session 1's second run was torn and recovered (a ``.torn``
    file beside it); session 2's last run has a dead writer and a torn tail."""
    data_dir = DataDir(root).create()
    first = make_session(data_dir, "first")
    second = make_session(data_dir, "second")
    runs = {first: [], second: []}
    runs[first].append(write_run(data_dir, first, "hello there"))
    torn = write_run(data_dir, first, "torn one", terminal=None, torn_tail=b'{"type":"text.delta","te')
    assert recover(data_dir.journal_path(first, torn)) == "recovered"
    runs[first].append(torn)
    runs[first].append(write_run(data_dir, first, "third ✓", terminal="run.failed"))
    runs[second].append(write_run(data_dir, second, "second session"))
    runs[second].append(write_run(data_dir, second, "cancel me", terminal="run.cancelled"))
    dead = write_run(data_dir, second, "writer died", terminal=None, torn_tail=b'{"type":"usa')
    runs[second].append(dead)
    return data_dir, runs, dead


def views_of(data_dir: DataDir, dead_run: str = None) -> dict:
    """Every session's view as JSON text; a dead run's end time and offsets (written by
    whichever reader recovered it) are masked."""
    views = SessionViews(FileLogStore(data_dir, Durability("terminal")), TranscriptStore(data_dir), SessionStore(data_dir))
    out = {}
    for session_id in sorted(data_dir.session_ids()):
        view = views.view(session_id)
        for message in view["messages"]:
            if message["run_id"] == dead_run and message["role"] == "assistant":
                message["finished_at"] = message["cursor"] = "masked"
        if dead_run and str(view["cursor"]).startswith(dead_run):
            view["cursor"] = "masked"
        out[session_id] = json.dumps(view, ensure_ascii=False, separators=(",", ":"))
    return out


def views_of_a_copy(data_dir: DataDir, dead_run: str) -> dict:
    """The views a reader would see, computed on a copy so the dead run stays unrecovered here."""
    copy_root = data_dir.root.with_name(data_dir.root.name + "-copy")
    shutil.copytree(data_dir.root, copy_root)
    try:
        return views_of(DataDir(copy_root), dead_run)
    finally:
        shutil.rmtree(copy_root)


def transcript_messages(data_dir: DataDir, session_id: str) -> list:
    path = data_dir.transcript_path(session_id)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def tree(root: Path) -> dict:
    """Every file under ``root``: relative path -> (bytes, mtime_ns)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return files


def run_compaction(data_dir: DataDir, **options):
    out = io.StringIO()
    code = compact(data_dir, Options(**options), out=out)
    return code, out.getvalue()


def cli(*args, timeout=60):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "hermes_web", "compact", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- behaviour


def test_compaction_folds_every_finished_run_once_and_keeps_the_views(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    before = views_of_a_copy(data_dir, dead)
    code, output = run_compaction(data_dir, older_than=0)
    assert code == 0, output
    assert views_of(data_dir, dead) == before
    for session_id, run_ids in runs.items():
        messages = transcript_messages(data_dir, session_id)
        assert [m["run_id"] for m in messages] == [r for r in run_ids for _ in (0, 1)]
        assert [m["role"] for m in messages] == ["user", "assistant"] * 3
        assert not data_dir.journals_dir(session_id).exists()
    assert transcript_messages(data_dir, "s002")[-1]["status"] == "interrupted"
    assert "recovered " + dead in output
    assert "done: 2 session(s) with work, 6 run(s) compacted, 0 leftover journal(s) retired, 0 skipped" in output


def test_archives_hold_the_exact_journal_bytes(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    first = runs["s001"]
    originals = {run_id: data_dir.journal_path("s001", run_id).read_bytes() for run_id in first}
    torn_bytes = data_dir.journal_path("s001", first[1]).with_suffix(".jsonl.torn").read_bytes()
    code, output = run_compaction(data_dir, older_than=0)
    assert code == 0, output
    archive_dir = data_dir.archive_dir("s001")
    assert sorted(p.name for p in archive_dir.iterdir()) == sorted(
        [f"{r}.jsonl.gz" for r in first] + [f"{first[1]}.jsonl.torn.gz"])
    for run_id, data in originals.items():
        assert gzip.decompress((archive_dir / f"{run_id}.jsonl.gz").read_bytes()) == data
    assert gzip.decompress((archive_dir / f"{first[1]}.jsonl.torn.gz").read_bytes()) == torn_bytes
    assert oct(archive_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((archive_dir / f"{first[0]}.jsonl.gz").stat().st_mode & 0o777) == "0o600"


def test_delete_mode_leaves_no_journal_and_no_archive(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    before = views_of_a_copy(data_dir, dead)
    code, output = run_compaction(data_dir, older_than=0, mode="delete")
    assert code == 0, output
    assert views_of(data_dir, dead) == before
    # Only the sessions' lock files (compaction takes the lock the server takes) remain.
    assert [path for path in data_dir.journals_root.iterdir() if not path.name.endswith(".start-lock")] == []
    assert list(data_dir.archive_root.iterdir()) == []


def test_second_pass_changes_nothing(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    assert run_compaction(data_dir, older_than=0)[0] == 0
    after_first = tree(data_dir.root)
    code, output = run_compaction(data_dir, older_than=0)
    assert code == 0
    assert tree(data_dir.root) == after_first
    assert "done: 0 session(s) with work, 0 run(s) compacted" in output


def test_dry_run_changes_nothing_and_prints_the_plan(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    old_archive = data_dir.archive_dir("s001") / "old.jsonl.gz"
    old_archive.parent.mkdir(mode=0o700)
    old_archive.write_bytes(b"x")
    os.utime(old_archive, (time.time() - 40 * 86400,) * 2)
    before = tree(data_dir.root)
    result = cli("--data-dir", str(data_dir.root), "--older-than", "0", "--keep-archives", "30d", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tree(data_dir.root) == before
    assert not (data_dir.root / "compaction.lock").exists()
    for run_id in runs["s001"]:
        assert f"would compact {run_id}" in result.stdout
    assert f"would recover and compact {dead}" in result.stdout
    assert "would prune archive archive/s001/old.jsonl.gz" in result.stdout
    assert "dry run, would have: 2 session(s) with work, 6 run(s) compacted" in result.stdout


def test_only_runs_that_ended_long_enough_ago_are_folded_in_run_order(tmp_path):
    data_dir = DataDir(tmp_path / "var").create()
    session_id = make_session(data_dir)
    old = write_run(data_dir, session_id, "old", ended_ago=3 * HOUR)
    recent = write_run(data_dir, session_id, "recent", ended_ago=60)
    older_again = write_run(data_dir, session_id, "old again", ended_ago=2 * HOUR)  # clock skew
    before = views_of(data_dir)
    result = cli("--data-dir", str(data_dir.root))
    assert result.returncode == 0, result.stderr
    assert views_of(data_dir) == before
    assert [m["run_id"] for m in transcript_messages(data_dir, session_id)] == [old, old]
    assert data_dir.run_ids(session_id) == [recent, older_again]
    assert f"skip {recent}: ended 1m ago, younger than 1h" in result.stdout
    assert f"skip {older_again}: after {recent}, kept in run order" in result.stdout


def test_a_locked_journal_is_never_touched(tmp_path):
    data_dir = DataDir(tmp_path / "var").create()
    session_id = make_session(data_dir)
    done = write_run(data_dir, session_id, "done")
    live_id = new_run_id()
    started = {"type": "run.started", "ts": time.time(), "run_id": live_id, "session_id": session_id,
               "user": {"id": "u", "text": "live", "attachments": []}, "agent": {"name": "demo", "model": "demo"}}
    writer = JournalWriter.create(data_dir.journal_path(session_id, live_id), started, Durability("terminal"))
    try:
        writer.append({"type": "text.delta", "ts": time.time(), "text": "streaming"})
        live_bytes = data_dir.journal_path(session_id, live_id).read_bytes()
        code, output = run_compaction(data_dir, older_than=0)
        assert code == 0
        assert f"skip {live_id}: running (a live writer holds its lock)" in output
        assert data_dir.journal_path(session_id, live_id).read_bytes() == live_bytes
        assert [m["run_id"] for m in transcript_messages(data_dir, session_id)] == [done, done]
        writer.append({"type": "run.completed", "ts": time.time()}, durable=True)
    finally:
        writer.close()
    before = views_of(data_dir)
    assert run_compaction(data_dir, older_than=0)[0] == 0
    assert views_of(data_dir) == before
    assert [m["run_id"] for m in transcript_messages(data_dir, session_id)] == [done, done, live_id, live_id]


def test_a_second_compaction_exits_cleanly_or_waits(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    with CompactionLock(data_dir):
        before = tree(data_dir.root)
        result = cli("--data-dir", str(data_dir.root), "--older-than", "0")
        assert result.returncode == 0
        assert "another compaction is running" in result.stdout
        assert tree(data_dir.root) == before
        waiting = subprocess.Popen(
            [sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(data_dir.root), "--older-than", "0",
             "--wait"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(1.0)  # it is blocked on the lock, not finished
        assert data_dir.journals_dir("s001").exists()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "6 run(s) compacted" in out
    assert not data_dir.journals_dir("s001").exists()


def test_two_compactions_at_once_fold_each_run_once(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    before = views_of_a_copy(data_dir, dead)
    command = [sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(data_dir.root), "--older-than", "0"]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    # Whether they overlapped or not, the runs were folded exactly once between them.
    compacted = [int(re.search(r"(\d+) run\(s\) compacted", out).group(1)) for out in outputs
                 if "another compaction is running" not in out]
    assert sum(compacted) == 6 and compacted[0] in (0, 6)
    assert views_of(data_dir, dead) == before
    for session_id, run_ids in runs.items():
        assert [m["run_id"] for m in transcript_messages(data_dir, session_id)] == [r for r in run_ids for _ in (0, 1)]


def test_retention_prunes_only_old_archives(tmp_path):
    data_dir = DataDir(tmp_path / "var").create()
    session_id = make_session(data_dir)
    run_id = write_run(data_dir, session_id, "keep me")
    archive_dir = data_dir.archive_dir(session_id)
    archive_dir.mkdir(mode=0o700)
    stale = archive_dir / "00000000000000001-aaaaaa.jsonl.gz"
    stale.write_bytes(b"0" * 2048)
    os.utime(stale, (time.time() - 31 * 86400,) * 2)
    result = cli("--data-dir", str(data_dir.root), "--keep-archives", "30d")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert (archive_dir / f"{run_id}.jsonl.gz").exists()
    assert "pruned archive archive/" + session_id + "/00000000000000001-aaaaaa.jsonl.gz" in result.stdout
    assert "1 archive(s) pruned (2.0 KB)" in result.stdout


def test_leftovers_of_an_interrupted_pass_are_finished_and_cleaned(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    session_id, run_ids = "s001", runs["s001"]
    before = views_of(data_dir, dead)
    # A pass that wrote the transcript, then died: journals and half-written temp files remain.
    lines = []
    for run_id in run_ids[:2]:
        lines += [compaction.encode_message(m) for m in _fold(data_dir, session_id, run_id)]
    data_dir.transcript_path(session_id).write_bytes(b"".join(lines))
    (data_dir.transcripts_dir / f".tmp-{session_id}.jsonl-deadbeef").write_bytes(b'{"half')
    data_dir.archive_dir(session_id).mkdir(mode=0o700)
    (data_dir.archive_dir(session_id) / f".tmp-{run_ids[0]}.jsonl.gz-deadbeef").write_bytes(b"\x1f\x8b")
    assert views_of(data_dir, dead) == before
    code, output = run_compaction(data_dir, older_than=0)
    assert code == 0, output
    assert f"retired the journal of {run_ids[0]} (already in the transcript)" in output
    assert "2 stale temp file(s) removed" in output
    assert views_of(data_dir, dead) == before
    assert [m["run_id"] for m in transcript_messages(data_dir, session_id)] == [r for r in run_ids for _ in (0, 1)]
    assert not [p for p in data_dir.root.rglob(".tmp-*")]


def _fold(data_dir, session_id, run_id):
    from hermes_web.read.fold import RunFold
    from hermes_web.store.files.journal import read_entries

    run = RunFold()
    for record, end_offset in read_entries(data_dir.journal_path(session_id, run_id)):
        run.apply(record, end_offset)
    return run.messages()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--older-than", "soon"], 2, "not a duration"),
        (["--session", "../etc"], 2, "invalid session id"),
        (["--session", "nosuchsession"], 1, "error: no session nosuchsession"),
    ],
)
def test_command_line_failures_exit_non_zero(tmp_path, args, code, message):
    DataDir(tmp_path / "var").create()
    result = cli("--data-dir", str(tmp_path / "var"), *args)
    assert result.returncode == code
    assert message in result.stdout + result.stderr


def test_an_unreadable_data_dir_is_a_failure(tmp_path):
    result = cli("--data-dir", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "is not readable" in result.stdout


def test_cron_wrapper_runs_the_command(tmp_path):
    data_dir, runs, dead = build_workload(tmp_path / "var")
    result = subprocess.run([str(ROOT / "scripts" / "compact"), "--data-dir", str(data_dir.root), "--older-than", "0",
                             "--delete"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "6 run(s) compacted" in result.stdout


# ---------------------------------------------------------------- crash injection

FAULT_POINTS = ("write", "fsync", "rename", "replace", "unlink", "ftruncate", "rmdir", "link")


def _compact_crashing_at(root: Path, crash_at: int, mode: str) -> int:
    """Compact in a child process that dies (``os._exit``) at its ``crash_at``-th
    file-system step; a write at that step is torn halfway. Returns the exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            calls = [0]

            def faulty(name, real):
                def call(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == crash_at:
                        if name == "write":
                            real(args[0], bytes(args[1])[: len(args[1]) // 2])
                        os._exit(CRASH_EXIT)
                    return real(*args, **kwargs)
                return call

            for name in FAULT_POINTS:
                setattr(os, name, faulty(name, getattr(os, name)))
            code = compact(DataDir(root), Options(older_than=0, mode=mode), out=io.StringIO())
            os._exit(code)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _check_every_run_once(data_dir: DataDir, runs: dict, allow_journals: bool) -> None:
    for session_id, run_ids in runs.items():
        in_transcript = [m["run_id"] for m in transcript_messages(data_dir, session_id)]
        for run_id in run_ids:
            copies = in_transcript.count(run_id) // 2
            assert copies <= 1, f"{run_id} is twice in the transcript"
            journal = data_dir.journal_path(session_id, run_id).exists()
            if allow_journals:
                assert copies == 1 or journal, f"{run_id} is lost"
            else:
                assert copies == 1 and not journal
        assert in_transcript == [r for r in run_ids if r in in_transcript for _ in (0, 1)], "transcript out of order"


@pytest.mark.parametrize("mode", ["archive", "delete"])
def test_a_crash_at_any_step_loses_and_duplicates_nothing(tmp_path, mode):
    template = tmp_path / "template"
    data_dir, runs, dead = build_workload(template)
    originals = {(s, r): data_dir.journal_path(s, r).read_bytes() for s in runs for r in runs[s] if r != dead}
    recovered_copy = tmp_path / "recovered"
    shutil.copytree(template, recovered_copy)
    expected = views_of(DataDir(recovered_copy), dead)
    shutil.rmtree(recovered_copy)
    crash_at = 0
    while True:
        crash_at += 1
        assert crash_at < 400, "compaction never finished"
        root = tmp_path / f"n{crash_at}"
        shutil.copytree(template, root)
        data_dir = DataDir(root)
        code = _compact_crashing_at(root, crash_at, mode)
        assert code in (0, CRASH_EXIT), f"step {crash_at}: exit {code}"
        # What a reader (the server) sees right after the crash.
        _check_every_run_once(data_dir, runs, allow_journals=True)
        assert views_of(data_dir, dead) == expected, f"view changed by a crash at step {crash_at}"
        # The next pass finishes the job.
        again, output = run_compaction(data_dir, older_than=0, mode=mode)
        assert again == 0, f"step {crash_at}: {output}"
        _check_every_run_once(data_dir, runs, allow_journals=False)
        assert views_of(data_dir, dead) == expected, f"step {crash_at}: view changed after the next pass"
        assert not list(root.rglob(".tmp-*")), f"step {crash_at}: temp files left"
        left = [path for path in data_dir.journals_root.iterdir() if not path.name.endswith(".start-lock")]
        assert not left, f"step {crash_at}: journals left"
        if mode == "archive":
            for (session_id, run_id), data in originals.items():
                archived = data_dir.archive_dir(session_id) / f"{run_id}.jsonl.gz"
                assert gzip.decompress(archived.read_bytes()) == data, f"step {crash_at}: archive of {run_id}"
        else:
            assert not list(data_dir.archive_root.iterdir())
        shutil.rmtree(root)
        if code == 0:
            break
    # Every file-system step of the pass was a crash point at least once.
    assert crash_at > 20
