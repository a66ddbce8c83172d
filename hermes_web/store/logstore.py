"""The log-store interface: where run journals live, behind one narrow contract.

Everything above this layer (runs, streams, views, the web layer, compaction) speaks of runs
and byte offsets, never of paths, file descriptors, locks or inodes. The local files
(:mod:`hermes_web.store.files.logs`) are the reference implementation; every store keeps the same
cursors (PROTOCOL 1.5): each record is stored under the offset at which its JSONL line would
end, so exporting a run from any store reproduces its journal byte for byte.

The contract, which ``tests/test_logstore_contract.py`` holds every implementation to:

- ``create`` makes a run's log whose first record is ``run.started``, durable before it
  returns, owned by the returned :class:`RunWriter` until it is closed.
- ``RunWriter.append`` adds one record and returns the new committed offset; ``durable``
  records (terminal ones) are on stable storage when it returns. Readers of the log are
  woken after every append.
- ``RunLog.read(after)`` returns complete records after a valid cursor, never a torn tail;
  ``is_cursor`` is PROTOCOL 1.2's validity test; ``tail`` is ``(committed, last record)``.
- A run whose owner died is finished (``run.interrupted``) by the first reader that notices,
  exactly once: :meth:`RunLog.settle` is that one place.
- ``request_cancel`` asks the owner of a run, wherever it runs, to cancel it. A store that
  can reach other processes' runs (Redis) delivers the request to the owner's
  ``RunWriter.on_cancel`` and answers True; the file store answers False (a run written by
  another process cannot be asked to stop, and the API says 409 ``run_active_elsewhere``).
- A store that cannot be reached raises :class:`StoreUnavailable` (the API answers 503
  ``store_unavailable``); it recovers by itself once the store answers again.
"""

import time
from typing import Iterator, Optional, Protocol

from hermes_web.core.records import TERMINAL_TYPES, is_terminal  # noqa: F401 - part of the interface

# The most one read of a run log returns (the caller reads again from the last offset).
READ_CHUNK_BYTES = 256 * 1024
# A tailer of a run owned by another process checks this often that the owner still lives.
REMOTE_LIVENESS_SECONDS = 1.0
# A run whose owner is gone but which cannot be finished (recovery failing) is rechecked
# this often, so a reader never spins.
OWNER_GONE_RECHECK_SECONDS = 0.05


def wait_settled(log, beacon, seen, timeout: float) -> bool:
    """``RunLog.wait`` for a log whose ``settle()`` says how long a wait may last: wake on
    the run's beacon past generation ``seen``, or after that pause. A run whose owner is
    gone only pauses (what remains to read is already stored) and counts as woken."""
    pause = log.settle()
    if pause == OWNER_GONE_RECHECK_SECONDS:
        time.sleep(min(timeout, pause))
        return True
    return beacon.wait_past(seen, min(timeout, pause))


class LogNotFound(LookupError):
    """No log of that run exists (never created, deleted, or compacted away)."""


class LogExists(Exception):
    """A log of that run id already exists."""


class StoreUnavailable(Exception):
    """The store cannot be reached right now (a remote store's connection is down)."""


class StoreFull(Exception):
    """The store has no room for the record (a full disk, a quota). A terminal record
    still fits: each store keeps room for them (``RunWriter.append(durable=True)`` uses it
    before giving up), so a run that cannot continue still ends saying why."""


class OwnershipLost(Exception):
    """A writer's run was ended by another server (its owner was taken for dead: a lease
    that lapsed) or removed; nothing more can be appended."""


class RunWriter(Protocol):
    """The single owner of one run's log."""

    run_id: str
    session_id: str
    offset: int  # the committed end: where the next record will start
    # Set by the run's manager: called with ``by`` (from another thread) when a cancel
    # request for this run arrives from another server. Never called by the file store.
    on_cancel = None

    def append(self, record: dict, durable: bool = False) -> int:
        """Append one record; return the new committed offset."""

    def close(self) -> None:
        """Sync and give up ownership."""


class RunLog(Protocol):
    """A reader's handle on one run's log. Cheap to open; close it when done."""

    run_id: str
    session_id: str
    identity: object  # changes when the log is replaced (a cache key)

    def stamp(self):
        """An opaque value that changes whenever the log's content changes."""

    def read(self, after: int, max_bytes: int = ...) -> list:
        """``[(line, end_offset), ...]``: complete lines after cursor ``after`` (no ``\\n``)."""

    def tail(self) -> tuple:
        """``(committed, last_record_or_None)``, after settling a dead owner's run."""

    def is_cursor(self, offset: int) -> bool:
        """PROTOCOL 1.2: 0, or the end of a complete line of this log."""

    def owner_alive(self) -> bool:
        """True while some server process owns (writes) the run."""

    def recover(self) -> str:
        """Finish the run now if its owner died: ``"recovered"`` (``run.interrupted`` was
        appended), ``"terminal"`` (already finished), ``"locked"`` (its owner lives) or
        ``"failed"`` (the store could not be written)."""

    def settle(self) -> float:
        """Finish the run if its owner died; return how long a tailer may sleep before
        calling again (long for a local owner, short for a remote one)."""

    def wait(self, after: int, timeout: float) -> bool:
        """Wait until records after ``after`` may be readable (or the run can no longer
        grow); False on timeout. Never misses an append made after the last ``read``."""

    def mark(self):
        """An opaque token of what a ``read`` starting now will see."""

    def adopt(self, mark) -> None:
        """Continue as if this handle had made the read that took ``mark`` (viewers at one
        offset share one read)."""

    def close(self) -> None:
        ...


class LogStore(Protocol):
    """Where run logs live (files by default; another store for several servers)."""

    def create(self, session_id: str, run_id: str, first_record: dict) -> RunWriter:
        ...

    def runs(self, session_id: str) -> list:
        """Run ids with a log in this session, in start order."""

    def locate(self, run_id: str) -> Optional[str]:
        """The session id of ``run_id`` in O(1), or None for an id this store never made.
        (The run may since have been compacted: ``open`` then raises LogNotFound.)"""

    def open(self, run_id: str, session_id: str = None) -> RunLog:
        """A reader of the run's log; LogNotFound when there is none."""

    def unfinished(self) -> Iterator:
        """``(session_id, run_id)`` of every run that has not ended, without a scan."""

    def recover_unfinished(self) -> int:
        """Settle every unfinished run whose owner died; the number finished."""

    def session_lock(self, session_id: str):
        """A context manager, exclusive across server processes, held while a run of the
        session starts, while the session is deleted and while compaction rewrites it."""

    def delete_session(self, session_id: str, run_ids=()) -> None:
        """Remove the session's logs and index entries (``run_ids``: its compacted runs)."""

    def request_cancel(self, run_id: str, by: str) -> bool:
        """Ask the live owner of ``run_id`` (another process) to cancel it; True when the
        request was passed on (the owner then writes ``run.cancelled``), False when this
        store cannot reach the owner."""
