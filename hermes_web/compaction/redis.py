"""Compaction on the Redis store: the file store's plan (``compaction_plan.plan_session``),
carried out with one Redis transaction per session.

Per session, under the session lock (so no run starts and no delete runs meanwhile): each
run with a log is observed (finished, closing, live, or dead: no lease and no terminal
record), the pure plan picks the prefix to fold, dead runs get ``run.interrupted`` (the
same atomic script readers use), and then one MULTI appends the folded messages to the
transcript, bumps its version and removes the runs' streams: a run is in the transcript or
in its log at every instant, never both and never neither. A run already in the
transcript is never added again, so a pass that died anywhere is finished by the next.

``--archive`` (the default) keeps each removed run's journal, gzipped, in the session's
archive hash in Redis (``--keep-archives`` prunes them); ``--delete`` keeps nothing. A run
with damaged lines (PROTOCOL 1.4) stops the prefix unless ``--salvage``, which folds what
decodes and keeps its journal in the archive, also under ``--delete``.
"""

import gzip
import sys
import time

import redis

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
from hermes_web.core.codec import decode_record, encode_line
from hermes_web.read.fold import RunFold
from hermes_web.store.durability import Durability
from hermes_web.store.logstore import LogNotFound, StoreUnavailable, is_terminal
from hermes_web.store.redis.client import KEYS
from hermes_web.store.redis.notifier import message

COMPACTION_LOCK_SECONDS = 3600
READ_BYTES = 4 * 1024 * 1024


def run_from_cli(config, options: Options, out=None, report: Report = None) -> int:
    """``hermes-web compact`` with ``HERMES_WEB_STORE`` set: the exit code."""
    from hermes_web.store.redis import open_stores

    stores = open_stores(config, Durability(config.fsync_policy, config.fsync_interval))
    try:
        return compact(stores, options, out, report=report)
    except StoreUnavailable as error:
        print(f"error: {error}", file=out or sys.stdout, flush=True)
        return 1


def compact(stores, options: Options, out=None, now=None, report: Report = None) -> int:
    """One pass over the store; prints what it does to ``out``, counts it in ``report``;
    returns the exit code."""
    out = out or sys.stdout
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    client = stores.logs.client
    lock = client.lock(KEYS.compaction_lock, timeout=COMPACTION_LOCK_SECONDS, sleep=0.1, thread_local=False)
    try:
        if not options.dry_run and not lock.acquire(blocking=options.wait):
            if report is not None:
                report.busy = True
            say("another compaction is running; nothing done (use --wait to wait for it)")
            return 0
    except redis.RedisError as error:
        raise StoreUnavailable(f"the shared store (Redis) cannot be reached: {type(error).__name__}") from None
    try:
        return _pass(stores, options, say, time.time() if now is None else now, report or Report())
    finally:
        if not options.dry_run:
            try:
                lock.release()
            except redis.RedisError:
                pass  # expired or unreachable: it lapses by itself


def _pass(stores, options: Options, say, now: float, report: Report) -> int:
    say(f"{'would compact' if options.dry_run else 'compacting'} the shared store ({options.mode}, runs ended more "
        f"than {format_duration(options.older_than)} ago{', dry run' if options.dry_run else ''})")
    if options.session_id is not None:
        if not stores.metadata.exists(options.session_id):
            say(f"error: no session {options.session_id}")
            return 1
        session_ids = [options.session_id]
    else:
        session_ids = sorted(meta["id"] for meta in stores.metadata.list())
    for session_id in session_ids:
        try:
            if options.dry_run:
                compact_session(stores, session_id, options, report, say, now)
            else:
                with stores.logs.session_lock(session_id):
                    compact_session(stores, session_id, options, report, say, now)
        except (StoreUnavailable, LogNotFound, OSError) as error:
            report.errors += 1
            say(f"error: session {session_id}: {error}")
    if options.keep_archives is not None and not options.dry_run:
        report.archives_pruned = _prune_archives(stores.logs.client, now - options.keep_archives)
    say(f"{'dry run, would have:' if options.dry_run else 'done:'} {report.sessions} session(s) with work, "
        f"{report.compacted} run(s) compacted, {report.finished} leftover log(s) retired, {report.skipped} skipped, "
        f"{format_bytes(report.bytes_removed)} of logs removed, {format_bytes(report.bytes_archived)} archived, "
        f"{report.archives_pruned} archive(s) pruned, {report.damaged} damaged run(s) left, {report.errors} error(s)")
    return 1 if report.errors or report.damaged else 0


def compact_session(stores, session_id: str, options: Options, report: Report, say, now: float) -> None:
    """Fold the session's finished prefix of runs into its transcript; remove their logs."""
    logs = stores.logs
    if not stores.metadata.exists(session_id):
        return  # deleted meanwhile
    transcript = stores.transcripts.read(session_id)
    if transcript.damaged:
        report.damaged += 1
        say(f"error: session {session_id}: its transcript has {transcript.damaged} damaged line(s); session left alone")
        return
    compacted = set(transcript.by_run)
    observations = [_observe(logs, session_id, run_id, compacted) for run_id in logs.runs(session_id)]
    plan = plan_session(session_id, observations, now, options.older_than)
    if not (plan.fold or plan.finish or plan.skipped):
        return
    report.sessions += 1
    say(f"session {session_id}:")
    for run_id, reason in plan.skipped:
        say(f"  skip {run_id}: {reason}")
    report.skipped += len(plan.skipped)
    if options.dry_run:
        for run_id in plan.fold:
            say(f"  would {'recover and ' if run_id in plan.recover else ''}compact {run_id}")
        report.compacted += len(plan.fold)
        return
    lines, journals, folded, salvaged = [], {}, [], set()
    for run_id in plan.fold:
        if run_id in plan.recover:
            if logs.interrupt(session_id, run_id) == "locked":
                report.skipped += 1
                say(f"  skip {run_id}: a writer took its lease")
                break
            say(f"  recovered {run_id} (its writer died)")
        fold, journal = _read_run(logs, session_id, run_id)
        if not fold.finished:
            report.errors += 1
            say(f"error: {run_id}: its log is not a finished run; it and later runs stay")
            break
        if fold.damaged:
            if not options.salvage:
                report.damaged += 1
                say(f"error: {run_id}: {fold.damaged} damaged line(s); it and later runs stay "
                    "(--salvage folds what decodes and keeps the journal in the archive)")
                break
            salvaged.add(run_id)
        lines.extend(encode_line(message) for message in fold.messages())
        journals[run_id] = journal
        folded.append(run_id)
    for run_id in plan.finish:
        journals.setdefault(run_id, b"")  # already folded: only the log is left to remove
    # A salvaged run's damaged lines stay in its archive, also under --delete.
    archives = {run_id: gzip.compress(journal) for run_id, journal in journals.items()
                if journal and (options.mode == "archive" or run_id in salvaged)}
    _commit(logs, session_id, lines, list(journals), archives, now)
    report.compacted += len(folded)
    report.finished += len(plan.finish)
    report.bytes_removed += sum(len(journal) for journal in journals.values())
    report.bytes_archived += sum(len(archive) for archive in archives.values())
    for run_id in folded:
        say(f"  compacted {run_id}{' (salvaged: its damaged lines stay in the archive)' if run_id in salvaged else ''}")
    for run_id in plan.finish:
        say(f"  retired the log of {run_id} (already in the transcript)")


def _read_run(logs, session_id: str, run_id: str):
    """``(fold, journal_bytes)`` of one run's whole log."""
    fold = RunFold()
    journal = []
    with logs.open(run_id, session_id) as run_log:
        offset = 0
        while True:
            chunk = run_log.read(offset, READ_BYTES)
            if not chunk:
                return fold, b"".join(journal)
            for line, offset in chunk:
                journal.append(line + b"\n")
                fold.apply(decode_record(line), offset)


def _observe(logs, session_id: str, run_id: str, compacted: set) -> RunObservation:
    if run_id in compacted:
        return RunObservation(run_id, COMPACTED)
    try:
        with logs.open(run_id, session_id) as run_log:
            _, last = run_log.raw_tail()
            alive = logs.owner_alive(run_id)
    except LogNotFound:
        return RunObservation(run_id, UNREADABLE, detail="its log vanished")
    if is_terminal(last):
        ended_at = last.get("ts") if isinstance(last.get("ts"), (int, float)) else 0.0
        return RunObservation(run_id, CLOSING if alive else TERMINAL, ended_at=ended_at)
    return RunObservation(run_id, LIVE if alive else DEAD)


def _commit(logs, session_id: str, lines: list, run_ids: list, archives: dict, now: float) -> None:
    """The one transaction: the transcript grows, the runs' logs go (archived when asked)."""
    pipeline = logs.client.pipeline(transaction=True)
    if lines:
        pipeline.append(KEYS.transcript(session_id), b"".join(lines))
        pipeline.incr(KEYS.transcript_version(session_id))
    for run_id in run_ids:
        if run_id in archives:
            pipeline.hset(KEYS.archive(session_id), run_id, archives[run_id])
            pipeline.zadd(KEYS.archived, {f"{session_id}/{run_id}": now})
        pipeline.delete(KEYS.run(run_id), KEYS.log(run_id), KEYS.lease(run_id), KEYS.cancel(run_id))
        pipeline.zrem(KEYS.session_runs(session_id), run_id)
        pipeline.hdel(KEYS.unfinished, run_id)
    pipeline.publish(KEYS.channel, message("s", "-", session_id))
    try:
        pipeline.execute()
    except redis.RedisError as error:
        raise StoreUnavailable(f"the shared store (Redis) cannot be reached: {type(error).__name__}") from None


def _prune_archives(client, cutoff: float) -> int:
    members = [member.decode() for member in client.zrangebyscore(KEYS.archived, "-inf", cutoff)]
    pipeline = client.pipeline(transaction=True)
    for member in members:
        session_id, _, run_id = member.partition("/")
        pipeline.hdel(KEYS.archive(session_id), run_id)
    if members:
        pipeline.zrem(KEYS.archived, *members)
    pipeline.execute()
    return len(members)
