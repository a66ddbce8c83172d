"""Compaction planning: which runs to fold, finish or keep. Pure: no clock, no disk.

Each store's executor (``files.py``, ``redis.py``) observes each journal, hands the observations to
:func:`plan_session`, and carries the plan out. Keeping the decisions here makes the rules
table-testable: only a prefix of a session's runs is folded, so the transcript stays in
run order, and nothing a live writer owns is ever touched.
"""

import dataclasses
import re

# What compaction saw of a run's journal.
TERMINAL = "terminal"  # ended with a terminal record, no writer holds its lock
CLOSING = "closing"  # ended, but its writer still holds the lock (closing the file)
LIVE = "live"  # no terminal record and a live writer holds the lock
DEAD = "dead"  # no terminal record and nobody holds the lock: its writer died
COMPACTED = "compacted"  # already in the transcript; only the journal is left to retire
UNREADABLE = "unreadable"  # could not be read

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"45s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1w"``; ``"0"`` is zero."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 1h, 2d; 0 for all)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """A short human form: ``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - loop always returns


@dataclasses.dataclass(frozen=True)
class RunObservation:
    """One journal as compaction found it."""

    run_id: str
    state: str
    ended_at: float = None  # terminal record's ``ts`` (TERMINAL and CLOSING)
    detail: str = ""  # why it is UNREADABLE


@dataclasses.dataclass(frozen=True)
class SessionPlan:
    """What to do with one session's journals."""

    session_id: str
    fold: tuple = ()  # run ids to fold into the transcript, in run order
    recover: tuple = ()  # those of ``fold`` whose writer died: recover them first
    finish: tuple = ()  # already in the transcript: only archive or delete the journal
    skipped: tuple = ()  # (run_id, reason) pairs, in run order

    @property
    def retire(self) -> tuple:
        """Every run whose journal leaves the journal directory, in run order."""
        return tuple(sorted(self.finish + self.fold))


def plan_session(session_id: str, runs, now: float, older_than: float) -> SessionPlan:
    """Decide for ``runs`` (observations in start order) at time ``now``.

    Folds the longest prefix of runs that are finished, unlocked and ended at least
    ``older_than`` seconds ago (a dead writer's run is recovered and folded at once:
    nobody can be following it live). The first run that must stay stops the prefix;
    every later run stays too, so a later run never reaches the transcript before an
    earlier one. Runs already in the transcript are always finished off.
    """
    fold, recover, finish, skipped = [], [], [], []
    blocked_by = None
    for run in runs:
        if run.state == COMPACTED:
            finish.append(run.run_id)
            continue
        if blocked_by is not None:
            skipped.append((run.run_id, f"after {blocked_by}, kept in run order"))
            continue
        reason = _reason_to_keep(run, now, older_than)
        if reason is not None:
            skipped.append((run.run_id, reason))
            blocked_by = run.run_id
            continue
        fold.append(run.run_id)
        if run.state == DEAD:
            recover.append(run.run_id)
    return SessionPlan(session_id, tuple(fold), tuple(recover), tuple(finish), tuple(skipped))


def _reason_to_keep(run: RunObservation, now: float, older_than: float):
    if run.state == LIVE:
        return "running (a live writer holds its lock)"
    if run.state == CLOSING:
        return "finished, but its writer still holds the lock"
    if run.state == UNREADABLE:
        return f"unreadable: {run.detail}"
    if run.state == TERMINAL:
        age = now - (run.ended_at or 0.0)
        if age < older_than:
            return f"ended {format_duration(age)} ago, younger than {format_duration(older_than)}"
        return None
    if run.state == DEAD:
        return None
    raise ValueError(f"unknown run state {run.state!r}")


def plan_pruning(archives, now: float, keep: float) -> list:
    """Archive paths to prune: those of ``(path, mtime)`` last modified more than ``keep`` ago."""
    return [path for path, mtime in archives if now - mtime > keep]


@dataclasses.dataclass(frozen=True)
class Options:
    """One compaction pass, as the command line describes it."""

    session_id: str = None  # None: every session
    older_than: float = 3600.0  # seconds since a run's terminal record
    mode: str = "archive"  # or "delete"
    keep_archives: float = None  # seconds; None keeps archives forever
    dry_run: bool = False
    wait: bool = False
    # Fold runs with damaged lines too (what decodes), keeping their journals in archive/.
    salvage: bool = False


@dataclasses.dataclass
class Report:
    """What a pass did; printed as human lines as it goes."""

    sessions: int = 0
    compacted: int = 0
    finished: int = 0
    skipped: int = 0
    bytes_removed: int = 0
    bytes_archived: int = 0
    transcript_growth: int = 0
    archives_pruned: int = 0
    bytes_pruned: int = 0
    temp_files_removed: int = 0
    damaged: int = 0
    errors: int = 0
    # Another pass held the lock: this one did nothing, and leaves no report.
    busy: bool = False

    @property
    def bytes_freed(self) -> int:
        return self.bytes_removed + self.bytes_pruned - self.bytes_archived - self.transcript_growth
