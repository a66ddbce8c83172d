"""Compaction and retention (PROTOCOL 1.3): fold finished runs into the transcript, then
archive or delete their journals; prune old archives.

The order of durable steps is what makes every crash point safe (docs/compaction.md):

1. the whole new transcript (old lines + the folded runs) is written to a temp file,
   fsynced, renamed over ``transcripts/<sid>.jsonl`` and the directory fsynced;
2. only then each journal (and its ``.torn`` file) is gzipped to a temp file in
   ``archive/<sid>/``, fsynced and renamed into place, and the archive directory fsynced;
3. only then the journals are unlinked and the journal directory fsynced.

A run is in the transcript or in its journal at every instant, and a run already in the
transcript (by ``run_id``) is never added again, so re-running after a crash at any step
finishes the job: nothing lost, nothing duplicated. Stray temp files are removed.
"""

import fcntl
import os
import secrets
import sys
import time
import zlib

from hermes_web.compaction.plan import (
    CLOSING,
    COMPACTED,
    DEAD,
    LIVE,
    TERMINAL,
    UNREADABLE,
    Options,
    Report,
    RunObservation,
    format_bytes,
    format_duration,
    plan_session,
)
from hermes_web.compaction.retention import ARCHIVE_SUFFIX, TEMP_PREFIX, prune_archives
from hermes_web.core.codec import encode_line
from hermes_web.core.fsutil import (
    FILE_MODE,
    atomic_write,
    ensure_dir,
    fsync_dir,
    remove_if_empty,
    unlink_quietly,
    write_all,
)
from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.read.fold import RunFold
from hermes_web.store.datadir import JOURNAL_SUFFIX, DataDir
from hermes_web.store.files.journal import TORN_SUFFIX, journal_state, read_entries, recover, writer_alive_at
from hermes_web.store.files.logs import session_lock
from hermes_web.store.transcripts import parse_transcript

LOCK_NAME = "compaction.lock"
COPY_CHUNK_BYTES = 1024 * 1024
GZIP_LEVEL = 6


class CompactionBusy(Exception):
    """Another compaction holds the lock."""


class CompactionLock:
    """The exclusive ``flock`` on ``<data dir>/compaction.lock``: one compaction at a time."""

    def __init__(self, data_dir: DataDir, wait: bool = False):
        self.path = data_dir.root / LOCK_NAME
        self.wait = wait
        self._fd = None

    def __enter__(self) -> "CompactionLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CompactionBusy(str(self.path)) from None
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self._fd)  # releases the lock
        self._fd = None


# ---------------------------------------------------------------- entry points


def compact(data_dir: DataDir, options: Options, out=None, now=None, report: Report = None) -> int:
    """One pass over ``data_dir``; prints what it does to ``out``, counts it in ``report``;
    returns the exit code."""
    report = report or Report()
    out = out or sys.stdout
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    try:
        os.listdir(data_dir.root)
    except OSError as error:
        say(f"error: data dir {data_dir.root} is not readable: {error.strerror or error}")
        return 1
    if options.dry_run:
        # A dry run takes no lock: creating the lock file would already be a change.
        return _pass(data_dir, options, say, now, report)
    try:
        with CompactionLock(data_dir, wait=options.wait):
            return _pass(data_dir, options, say, now, report)
    except CompactionBusy:
        report.busy = True
        say("another compaction is running; nothing done (use --wait to wait for it)")
        return 0
    except OSError as error:
        say(f"error: cannot take the compaction lock in {data_dir.root}: {error.strerror or error}")
        return 1


def _pass(data_dir: DataDir, options: Options, say, now, report: Report) -> int:
    now = time.time() if now is None else now
    verb = "would compact" if options.dry_run else "compacting"
    say(f"{verb} {data_dir.root} ({options.mode}, runs ended more than "
        f"{format_duration(options.older_than)} ago{', dry run' if options.dry_run else ''})")
    if options.session_id is not None:
        if not os.path.exists(data_dir.session_path(options.session_id)):
            say(f"error: no session {options.session_id}")
            return 1
        session_ids = [options.session_id]
    else:
        session_ids = sorted(data_dir.session_ids())
    for session_id in session_ids:
        try:
            compact_session(data_dir, session_id, options, report, say, now)
        except OSError as error:
            report.errors += 1
            say(f"error: session {session_id}: {error}")
    if options.keep_archives is not None:
        try:
            prune_archives(data_dir, options, report, say, now)
        except OSError as error:
            report.errors += 1
            say(f"error: pruning archives: {error}")
    say(_summary(report, options))
    return 1 if report.errors or report.damaged else 0


def _summary(report: Report, options: Options) -> str:
    prefix = "dry run, would have:" if options.dry_run else "done:"
    parts = [
        f"{report.sessions} session(s) with work",
        f"{report.compacted} run(s) compacted",
        f"{report.finished} leftover journal(s) retired",
        f"{report.skipped} skipped",
    ]
    if not options.dry_run:
        parts.append(
            f"{format_bytes(report.bytes_freed)} freed (journals {format_bytes(report.bytes_removed)} removed, "
            f"archives {format_bytes(report.bytes_archived)} written, "
            f"transcripts +{format_bytes(report.transcript_growth)})"
        )
    if options.keep_archives is not None:
        parts.append(f"{report.archives_pruned} archive(s) pruned ({format_bytes(report.bytes_pruned)})")
    if report.temp_files_removed:
        parts.append(f"{report.temp_files_removed} stale temp file(s) removed")
    if report.damaged:
        parts.append(f"{report.damaged} damaged run(s) left (--salvage folds what decodes)")
    parts.append(f"{report.errors} error(s)")
    return f"{prefix} " + ", ".join(parts)


# ---------------------------------------------------------------- one session


def compact_session(data_dir: DataDir, session_id: str, options: Options, report: Report, say, now: float) -> None:
    """Fold the session's finished prefix of runs and retire their journals."""
    journals_dir = data_dir.journals_dir(session_id)
    transcript_path = data_dir.transcript_path(session_id)
    archive_dir = data_dir.archive_dir(session_id)
    if not options.dry_run:
        # Under the compaction lock only this process writes these names: what is there
        # was left by a pass that died mid-step.
        report.temp_files_removed += _remove_temp_files(data_dir.transcripts_dir, f"{TEMP_PREFIX}{transcript_path.name}-")
        report.temp_files_removed += _remove_temp_files(archive_dir, TEMP_PREFIX)
    old_transcript = _read_bytes(transcript_path)
    transcript = parse_transcript(old_transcript)
    if transcript.damaged:
        report.damaged += 1
        say(f"error: session {session_id}: transcript {transcript_path} has {transcript.damaged} damaged line(s); "
            "session left alone (its view skips them)")
        return
    compacted = set(transcript.by_run)
    observations = [_observe(data_dir, session_id, run_id, compacted) for run_id in data_dir.run_ids(session_id)]
    plan = plan_session(session_id, observations, now, options.older_than)
    orphans = _orphan_torn_run_ids(journals_dir, compacted | set(plan.retire))
    if not (plan.fold or plan.finish or plan.skipped or orphans):
        if not options.dry_run:
            remove_if_empty(journals_dir)  # a pass that died just before removing it
        return
    report.sessions += 1
    say(f"session {session_id}:")
    for run_id, reason in plan.skipped:
        say(f"  skip {run_id}: {reason}")
    report.skipped += len(plan.skipped)
    if options.dry_run:
        for run_id in plan.fold:
            say(f"  would {'recover and ' if run_id in plan.recover else ''}compact {run_id}")
        for run_id in plan.finish:
            say(f"  would {options.mode} the journal of {run_id} (already in the transcript)")
        report.compacted += len(plan.fold)
        report.finished += len(plan.finish)
        return

    folded_lines, folded, salvaged = _fold_runs(data_dir, session_id, plan, report, say, options.salvage)
    # The session lock (the server's, across processes) keeps a deletion from running in
    # between: a deleted chat's transcript is never written back.
    with session_lock(data_dir, session_id):
        if not os.path.exists(data_dir.session_path(session_id)):
            say(f"  session {session_id} was deleted meanwhile; left alone")
            data_dir.start_lock_path(session_id).unlink(missing_ok=True)
            return
        if _read_bytes(transcript_path) != old_transcript:
            say(f"  session {session_id} changed meanwhile; left for the next pass")
            return
        if folded_lines:
            ensure_dir(data_dir.transcripts_dir)
            atomic_write(transcript_path, old_transcript + b"".join(folded_lines))
            report.transcript_growth += sum(len(line) for line in folded_lines)
        report.compacted += len(folded)
        for run_id in folded:
            say(f"  compacted {run_id}{' (salvaged: its damaged lines stay in the archive)' if run_id in salvaged else ''}")
        retire = sorted(set(plan.finish) | set(folded) | orphans)
        removed, archived = _retire_journals(data_dir, session_id, retire, options.mode, keep=salvaged)
    report.bytes_removed += removed
    report.bytes_archived += archived
    report.finished += len(plan.finish)
    for run_id in plan.finish:
        say(f"  retired the journal of {run_id} (already in the transcript)")
    if retire:
        say(f"  {'archived' if options.mode == 'archive' else 'deleted'} {len(retire)} journal(s), "
            f"{format_bytes(removed)}")
    remove_if_empty(journals_dir)


def _observe(data_dir: DataDir, session_id: str, run_id: str, compacted: set) -> RunObservation:
    if run_id in compacted:
        return RunObservation(run_id, COMPACTED)
    path = data_dir.journal_path(session_id, run_id)
    try:
        _, last = journal_state(path)
        terminal = last is not None and last.get("type") in TERMINAL_TYPES
        locked = writer_alive_at(path)
    except OSError as error:
        return RunObservation(run_id, UNREADABLE, detail=error.strerror or str(error))
    if terminal:
        ended_at = last.get("ts") if isinstance(last.get("ts"), (int, float)) else 0.0
        return RunObservation(run_id, CLOSING if locked else TERMINAL, ended_at=ended_at)
    return RunObservation(run_id, LIVE if locked else DEAD)


def _fold_runs(data_dir: DataDir, session_id: str, plan, report: Report, say, salvage: bool):
    """``(transcript_lines, folded_run_ids, salvaged_run_ids)`` for the plan's prefix; stops
    at the first run that cannot be folded, so the prefix rule holds. A run with damaged
    lines stops it too, unless ``salvage``."""
    lines, folded, salvaged = [], [], set()
    for run_id in plan.fold:
        path = data_dir.journal_path(session_id, run_id)
        if run_id in plan.recover:
            outcome = recover(path)
            if outcome in ("locked", "missing"):
                report.skipped += 1
                say(f"  skip {run_id}: {'a writer took its lock' if outcome == 'locked' else 'journal vanished'}")
                break
            say(f"  recovered {run_id} (its writer died)")
        try:
            run = RunFold(run_id, session_id)
            for record, end_offset in read_entries(path):
                run.apply(record, end_offset)
        except (OSError, ValueError) as error:
            report.errors += 1
            say(f"error: {run_id}: cannot fold its journal ({error}); it and later runs stay")
            break
        if not run.finished or (run.run_id is not None and run.run_id != run_id):
            report.errors += 1
            say(f"error: {run_id}: journal is not a finished run of that id; it and later runs stay")
            break
        if run.damaged:
            if not salvage:
                report.damaged += 1
                say(f"error: {run_id}: {run.damaged} damaged line(s); it and later runs stay "
                    "(--salvage folds what decodes and keeps the journal in archive/)")
                break
            salvaged.add(run_id)
        lines.extend(encode_message(message) for message in run.messages())
        folded.append(run_id)
    return lines, folded, salvaged


def encode_message(message: dict) -> bytes:
    """One transcript line: the journal's JSON encoding (compact, UTF-8), no size cap."""
    return encode_line(message)


def _orphan_torn_run_ids(journals_dir, compacted: set) -> set:
    """Runs whose ``.torn`` file outlived their journal (a pass died between the two)."""
    suffix = JOURNAL_SUFFIX + TORN_SUFFIX
    try:
        names = os.listdir(journals_dir)
    except FileNotFoundError:
        return set()
    orphans = set()
    for name in names:
        run_id = name[: -len(suffix)]
        if name.endswith(suffix) and run_id in compacted and not os.path.exists(journals_dir / f"{run_id}{JOURNAL_SUFFIX}"):
            orphans.add(run_id)
    return orphans


# ---------------------------------------------------------------- retiring journals


def _retire_journals(data_dir: DataDir, session_id: str, run_ids, mode: str, keep=frozenset()):
    """Archive (or just delete) the journals and ``.torn`` files of ``run_ids``, which are
    all durably in the transcript; those of ``keep`` are archived in either mode. Returns
    ``(bytes_removed, bytes_archived)``."""
    journals_dir = data_dir.journals_dir(session_id)
    paths = []
    for run_id in run_ids:
        journal_path = data_dir.journal_path(session_id, run_id)
        # The .torn file goes first: a journal never disappears before its torn tail.
        paths.append(journal_path.with_name(journal_path.name + TORN_SUFFIX))
        paths.append(journal_path)
    paths = [path for path in paths if path.exists()]
    if not paths:
        return 0, 0
    archived = 0
    kept = {f"{run_id}{JOURNAL_SUFFIX}" for run_id in keep} | {f"{run_id}{JOURNAL_SUFFIX}{TORN_SUFFIX}" for run_id in keep}
    to_archive = [path for path in paths if mode == "archive" or path.name in kept]
    if to_archive:
        archive_dir = ensure_dir(data_dir.archive_dir(session_id))
        for path in to_archive:
            archived += _gzip_into(path, archive_dir / (path.name + ARCHIVE_SUFFIX))
        fsync_dir(archive_dir)
    removed = 0
    for path in paths:
        try:
            removed += os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            pass
    fsync_dir(journals_dir)
    return removed, archived


def _gzip_into(source_path, archive_path) -> int:
    """Gzip ``source_path`` to ``archive_path`` durably (temp, fsync, rename); its size."""
    temp_path = archive_path.with_name(f"{TEMP_PREFIX}{archive_path.name}-{secrets.token_hex(4)}")
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip container
    source = os.open(source_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            size = 0
            while True:
                chunk = os.read(source, COPY_CHUNK_BYTES)
                data = compressor.compress(chunk) if chunk else compressor.flush()
                size += write_all(target, data)
                if not chunk:
                    break
            os.fsync(target)
        finally:
            os.close(target)
    except BaseException:
        unlink_quietly(temp_path)
        raise
    finally:
        os.close(source)
    os.rename(temp_path, archive_path)
    return size


# ---------------------------------------------------------------- small file helpers


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return b""


def _remove_temp_files(directory, prefix: str) -> int:
    try:
        names = [name for name in os.listdir(directory) if name.startswith(prefix)]
    except FileNotFoundError:
        return 0
    for name in names:
        unlink_quietly(directory / name)
    return len(names)
