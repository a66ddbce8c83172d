"""Compaction throughput (delete and archive mode) against copying the same bytes.

Builds a data dir of RUNS finished runs (about 50 MB of journals, written with the real
``JournalWriter``), then compacts a fresh copy of it in each mode and reports runs/s and
MB/s of journal consumed. The baseline copies the very same journal files with
``shutil.copyfileobj`` in the same run; the ratio is compaction MB/s over copy MB/s.
Compaction does strictly more per byte (read, parse, fold, write the transcript, fsync,
gzip in archive mode), so the ratio says what that work costs, not whether it is fast.
"""

import io
import os
import shutil
import time

from common import print_table, temp_dir, verdict

from hermes_web.compaction.files import compact
from hermes_web.compaction.plan import Options
from hermes_web.core.ids import new_run_id
from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.journal import JournalWriter
from hermes_web.store.files.metadata import SessionStore

SESSIONS = 10
RUNS_PER_SESSION = 20
DELTAS_PER_RUN = 1120
DELTA_TEXT = (
    "Here is the next part of a long answer about journals, cursors and compaction; it "
    "quotes the user's question, lists three options and explains the trade-offs of each. "
)
GOAL_SECONDS = 60.0


def build(root) -> int:
    """The data dir; returns the total journal bytes."""
    data_dir = DataDir(root).create()
    sessions = SessionStore(data_dir)
    durability = Durability("terminal")
    ended = time.time() - 7200
    total = 0
    for session_index in range(SESSIONS):
        session_id = f"bench{session_index:03d}"
        sessions.create(session_id, "bench")
        data_dir.journals_dir(session_id).mkdir(mode=0o700)
        for _ in range(RUNS_PER_SESSION):
            run_id = new_run_id()
            started = {
                "type": "run.started", "ts": ended - 60, "run_id": run_id, "session_id": session_id,
                "user": {"id": f"{run_id}-user", "text": "tell me about compaction", "attachments": []},
                "agent": {"name": "demo", "model": "demo"},
            }
            writer = JournalWriter.create(data_dir.journal_path(session_id, run_id), started, durability)
            writer.append({"type": "tool.started", "ts": ended - 50, "call_id": "c1", "name": "clock", "args": {}})
            writer.append({"type": "tool.finished", "ts": ended - 49, "call_id": "c1", "result": {"utc": "now"},
                           "is_error": False, "duration_ms": 1})
            for index in range(DELTAS_PER_RUN):
                writer.append({"type": "text.delta", "ts": ended - 40 + index / 1000, "text": DELTA_TEXT})
            writer.append({"type": "run.completed", "ts": ended}, durable=True)
            total += writer.offset
            writer.close()
    return total


def journal_paths(root):
    return sorted(path for path in (root / "journals").rglob("*.jsonl"))


def copy_baseline(source_root, target_dir) -> float:
    target_dir.mkdir()
    os.sync()
    started = time.perf_counter()
    for index, path in enumerate(journal_paths(source_root)):
        with open(path, "rb") as source, open(target_dir / f"{index}.jsonl", "wb") as target:
            shutil.copyfileobj(source, target)
    return time.perf_counter() - started


def compact_copy(template, root, mode: str) -> float:
    shutil.copytree(template, root)
    os.sync()  # the copy's dirty pages must not be flushed by compaction's fsyncs
    out = io.StringIO()
    started = time.perf_counter()
    code = compact(DataDir(root), Options(older_than=3600, mode=mode), out=out)
    elapsed = time.perf_counter() - started
    assert code == 0, out.getvalue()
    assert not list((root / "journals").iterdir()), "journals left behind"
    return elapsed


def main() -> int:
    bench_started = time.perf_counter()
    runs = SESSIONS * RUNS_PER_SESSION
    with temp_dir("compaction") as scratch:
        template = scratch / "template"
        started = time.perf_counter()
        total = build(template)
        built = time.perf_counter() - started
        megabytes = total / 1e6
        print(f"built {runs} finished runs, {megabytes:.1f} MB of journals, in {built:.1f}s")
        rows = []
        copy_seconds = copy_baseline(template, scratch / "copy")
        rows.append(("copyfileobj (baseline)", f"{copy_seconds:.2f}", f"{runs / copy_seconds:.0f}",
                     f"{megabytes / copy_seconds:.0f}", "1.00"))
        for mode in ("delete", "archive"):
            seconds = compact_copy(template, scratch / mode, mode)
            archived = sum(p.stat().st_size for p in (scratch / mode / "archive").rglob("*.gz"))
            transcript = sum(p.stat().st_size for p in (scratch / mode / "transcripts").glob("*.jsonl"))
            rows.append((f"compact --{mode}", f"{seconds:.2f}", f"{runs / seconds:.0f}", f"{megabytes / seconds:.0f}",
                         f"{copy_seconds / seconds:.2f}"))
            print(f"{mode}: transcripts {transcript / 1e6:.2f} MB, archives {archived / 1e6:.2f} MB")
        print_table("compaction of the same journals (ratio: compaction MB/s / copy MB/s)",
                    ("what", "seconds", "runs/s", "MB/s", "ratio"), rows)
    elapsed = time.perf_counter() - bench_started
    passed = verdict(f"benchmark finishes in under {GOAL_SECONDS:.0f}s (took {elapsed:.1f}s)", elapsed < GOAL_SECONDS)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
