"""The file log store: one JSONL journal per run under ``journals/<session_id>/`` (PROTOCOL 1).

The reference implementation of :mod:`hermes_web.store.logstore`. Ownership is an exclusive
``flock`` held by the writer for the run's lifetime; liveness of another process's run is
that lock; wake-ups come from the writer itself (same process) or the watcher (another).

Two small indexes keep every cost proportional to the work asked for:

- a run id carries its session id (``ids.new_run_id``), so locating a run is parsing it;
  runs made before ids carried it are found through ``index/runs/<run_id>``, a symlink
  whose target is the session id, written once when an older data dir is first opened;
- ``index/active/<run_id>`` (a symlink to the session id) exists from just before a run's
  journal is created until its terminal record is written, so start-up recovery visits
  only the runs that never ended. Recovery itself removes markers that outlived their run.
"""

import contextlib
import errno
import fcntl
import gzip
import os
import shutil
import threading
import time
import weakref

from hermes_web.core.fsutil import FILE_MODE, atomic_write, ensure_dir, fsync_dir, unlink_quietly
from hermes_web.core.ids import is_valid_id, session_of_run
from hermes_web.store.files.journal import (
    JournalExists,
    JournalWriter,
    is_line_boundary,
    read_lines,
    read_tail,
    recover,
    writer_alive,
)
from hermes_web.store.files.transcripts import transcript_run_ids
from hermes_web.store.logstore import (
    OWNER_GONE_RECHECK_SECONDS,
    READ_CHUNK_BYTES,
    REMOTE_LIVENESS_SECONDS,
    LogExists,
    LogNotFound,
    StoreFull,
    is_terminal,
    wait_settled,
)
from hermes_web.store.wakeup import CONTENT, ENTRIES, Beacons, Watcher

INDEX_VERSION = "1"
# A directory listing is reused while the directory's mtime is unchanged, but only once
# the mtime is this old: timestamps are coarse (a clock tick), so a create within the same
# tick as the listing would otherwise leave the mtime, and the stale listing, in place.
LISTING_SETTLE_NS = 100_000_000
# Room kept on the journals' file system for terminal records: released when an append
# finds the disk full, so the run still ends saying why; made again once there is space.
RESERVE_BYTES = 1024 * 1024
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Start-up recovery looks at journals changed since the previous start-up, less this much
# (clock steps, a previous start that wrote its stamp while a journal was being written).
RECOVERY_SLACK_NS = 2 * 1_000_000_000


class FileLogStore:
    """Journals on the local file system (PROTOCOL 1.1-1.3)."""

    def __init__(self, data_dir, durability, beacons: Beacons = None, watcher: Watcher = None):
        self.data_dir = data_dir
        self.durability = durability
        self.beacons = beacons or Beacons()
        self.watcher = watcher or Watcher()
        self._writers = {}  # run_id -> FileRunWriter of this process
        self._lock = threading.Lock()
        self._listings = {}  # session_id -> (mtime_ns, run_ids)
        self._journal_targets = weakref.WeakValueDictionary()  # run_id -> _JournalChanged
        self.index_root = data_dir.root / "index"
        self.runs_index = self.index_root / "runs"
        self.active_index = self.index_root / "active"
        self.reserve_path = self.index_root / "reserve"
        self._reserved = False

    # ------------------------------------------------------------ set-up

    def open_index(self) -> "FileLogStore":
        """Create the index directories; index an older data dir's journals once."""
        ensure_dir(self.runs_index)
        ensure_dir(self.active_index)
        version_path = self.index_root / "VERSION"
        if not version_path.exists():
            self._index_existing()
            atomic_write(version_path, (INDEX_VERSION + "\n").encode())
        self.ensure_reserve()
        return self

    # ------------------------------------------------------------ room for terminal records

    def ensure_reserve(self) -> bool:
        """Keep RESERVE_BYTES allocated for terminal records; False while there is no room."""
        if self._reserved:
            return True
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size < RESERVE_BYTES:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            self._reserved = True
        except OSError:
            os.close(fd)
            fd = None
            unlink_quietly(self.reserve_path)  # a part of it would only be taken from the runs
        finally:
            if fd is not None:
                os.close(fd)
        return self._reserved

    def release_reserve(self) -> None:
        """Give the reserved room back to the file system (a terminal record needs it)."""
        self._reserved = False
        unlink_quietly(self.reserve_path)

    def _index_existing(self) -> None:
        """One pass over a data dir written before the indexes existed."""
        for session_id in _valid_names(self.data_dir.journals_root):
            for run_id in self.runs(session_id):
                if session_of_run(run_id) != session_id:
                    _symlink(session_id, self.runs_index / run_id)
                try:
                    with self._open_path(session_id, run_id) as log:
                        _, last = log.raw_tail()
                except (OSError, LogNotFound):
                    continue
                if not is_terminal(last):
                    _symlink(session_id, self.active_index / run_id)
            for unborn in (self.data_dir.journals_dir(session_id)).glob(".*.jsonl.new"):
                run_id = unborn.name[1:-len(".jsonl.new")]
                if is_valid_id(run_id):
                    _symlink(session_id, self.active_index / run_id)
        for session_id in (name[:-6] for name in _names(self.data_dir.transcripts_dir) if name.endswith(".jsonl")):
            if not is_valid_id(session_id):
                continue
            for run_id in transcript_run_ids(self.data_dir.transcript_path(session_id)):
                if is_valid_id(run_id) and session_of_run(run_id) != session_id:
                    _symlink(session_id, self.runs_index / run_id)
        fsync_dir(self.runs_index)
        fsync_dir(self.active_index)

    # ------------------------------------------------------------ lookups

    def locate(self, run_id: str):
        session_id = session_of_run(run_id)
        if session_id is not None:
            return session_id
        try:
            target = os.readlink(self.runs_index / run_id)
        except OSError:
            return None
        return target if is_valid_id(target) else None

    def runs(self, session_id: str) -> list:
        directory = self.data_dir.journals_dir(session_id)
        try:
            mtime = os.stat(directory).st_mtime_ns
        except FileNotFoundError:
            self._listings.pop(session_id, None)
            return []
        cached = self._listings.get(session_id)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        run_ids = self.data_dir.run_ids(session_id)
        if time.time_ns() - mtime > LISTING_SETTLE_NS:
            self._listings[session_id] = (mtime, run_ids)
        return run_ids

    def is_local(self, run_id: str) -> bool:
        return run_id in self._writers

    def open(self, run_id: str, session_id: str = None) -> "FileRunLog":
        session_id = session_id or self.locate(run_id)
        if session_id is None:
            raise LogNotFound(run_id)
        return self._open_path(session_id, run_id)

    def archived_journal(self, session_id: str, run_id: str):
        """The journal compaction archived for a removed run, or None (none was kept)."""
        try:
            return gzip.decompress(self.data_dir.archived_journal_path(session_id, run_id).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _open_path(self, session_id: str, run_id: str) -> "FileRunLog":
        path = self.data_dir.journal_path(session_id, run_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LogNotFound(run_id) from None
        except NotADirectoryError:
            raise LogNotFound(run_id) from None
        return FileRunLog(self, session_id, run_id, path, fd)

    # ------------------------------------------------------------ writing

    def create(self, session_id: str, run_id: str, first_record: dict) -> "FileRunWriter":
        self.ensure_reserve()  # space freed since a disk-full: keep room again
        marker = self.active_index / run_id
        _symlink(session_id, marker)
        if session_of_run(run_id) != session_id:
            _symlink(session_id, self.runs_index / run_id)
            self.durability.offload(fsync_dir, self.runs_index)
        # The marker is durable before the journal exists: start-up recovery finds every
        # run that can exist without a terminal record.
        self.durability.offload(fsync_dir, self.active_index)
        path = self.data_dir.journal_path(session_id, run_id)
        try:
            journal = None
            for attempt in (1, 2):
                ensure_dir(path.parent)
                try:
                    journal = JournalWriter.create(path, first_record, self.durability)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
                    # compaction removed the emptied journal directory in between: again
        except JournalExists:
            raise LogExists(run_id) from None
        except OSError as error:
            _unlink_marker(marker)
            if error.errno in _FULL_ERRNOS:
                raise StoreFull(str(error)) from error
            raise
        except BaseException:
            _unlink_marker(marker)
            raise
        writer = FileRunWriter(self, session_id, run_id, journal, marker)
        with self._lock:
            self._writers[run_id] = writer
        self.beacons.fire(("session", session_id))
        return writer

    def _closed(self, writer: "FileRunWriter") -> None:
        with self._lock:
            if self._writers.get(writer.run_id) is writer:
                del self._writers[writer.run_id]

    def session_lock(self, session_id: str):
        return session_lock(self.data_dir, session_id)

    # ------------------------------------------------------------ recovery

    def unfinished(self):
        for run_id in _names(self.active_index):
            try:
                session_id = os.readlink(self.active_index / run_id)
            except OSError:
                continue
            if is_valid_id(run_id) and is_valid_id(session_id):
                yield session_id, run_id

    def recover_unfinished(self) -> int:
        """Settle every run that never ended; drop markers of runs that did.

        The markers name every run the server started; journals put in place by other
        means (copied or written by hand) are found by a look at what changed since the
        last start-up: session directories and journals with a newer mtime.
        """
        stamp_path = self.index_root / "recovered-at"
        started_ns = time.time_ns()
        recovered = 0
        try:
            since = int(stamp_path.read_text().strip()) - RECOVERY_SLACK_NS
        except (OSError, ValueError):
            since = 0
        candidates = list(self.unfinished())
        marked = {run_id for _, run_id in candidates}
        for session_id, run_id in self._changed_journals(since):
            if run_id not in marked:
                candidates.append((session_id, run_id))
        for session_id, run_id in candidates:
            marker = self.active_index / run_id
            try:
                log = self._open_path(session_id, run_id)
            except LogNotFound:
                unborn = self.data_dir.unborn_journal_path(session_id, run_id)
                # A run whose creator died before linking it into place was never
                # acknowledged: nothing refers to it.
                try:
                    fd = os.open(unborn, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    _unlink_marker(marker)
                    continue
                try:
                    if writer_alive(fd):
                        continue
                finally:
                    os.close(fd)
                unborn.unlink(missing_ok=True)
                _unlink_marker(marker)
                continue
            with log:
                _, last = log.raw_tail()
                if is_terminal(last):
                    _unlink_marker(marker)
                elif log.recover() == "recovered":
                    recovered += 1
        try:
            atomic_write(stamp_path, f"{started_ns}\n".encode())
        except OSError:
            pass  # a read-only or full data dir: the next start looks again
        return recovered

    def _changed_journals(self, since_ns: int):
        """``(session_id, run_id)`` of journals modified since ``since_ns``, visiting only
        the session directories that changed."""
        try:
            sessions = os.scandir(self.data_dir.journals_root)
        except OSError:
            return
        with sessions:
            for session_entry in sessions:
                try:
                    if not is_valid_id(session_entry.name) or session_entry.stat().st_mtime_ns < since_ns:
                        continue
                    journals = os.scandir(session_entry.path)
                except OSError:
                    continue
                with journals:
                    for entry in journals:
                        name = entry.name
                        if name.startswith(".") and name.endswith(".jsonl.new"):
                            run_id = name[1:-len(".jsonl.new")]
                        elif name.endswith(".jsonl"):
                            run_id = name[:-len(".jsonl")]
                        else:
                            continue
                        try:
                            if is_valid_id(run_id) and entry.stat().st_mtime_ns >= since_ns:
                                yield session_entry.name, run_id
                        except OSError:
                            continue

    # ------------------------------------------------------------ deletion

    def delete_session(self, session_id: str, run_ids=()) -> None:
        for run_id in list(self.runs(session_id)) + list(run_ids):
            if session_of_run(run_id) != session_id:
                _unlink_marker(self.runs_index / run_id)
            _unlink_marker(self.active_index / run_id)
        shutil.rmtree(self.data_dir.journals_dir(session_id), ignore_errors=True)
        self._listings.pop(session_id, None)

    def request_cancel(self, run_id: str, by: str) -> bool:
        """A run another process writes cannot be reached from here."""
        return False

    # ------------------------------------------------------------ wake-ups

    def journal_changed(self, session_id: str, run_id: str) -> "_JournalChanged":
        """The one watcher registration target of a journal (shared by all its tailers)."""
        with self._lock:
            target = self._journal_targets.get(run_id)
            if target is None:
                target = self._journal_targets[run_id] = _JournalChanged(self.beacons, session_id, run_id)
            return target

    def session_watch(self, session_id: str, on_metadata=None) -> "SessionWatch":
        return SessionWatch(self, session_id, on_metadata)

    def notify_session(self, session_id: str) -> None:
        self.beacons.fire(("session", session_id))


class FileRunWriter:
    """The owner of one journal: appends, wakes its readers, ends its active marker."""

    def __init__(self, store: FileLogStore, session_id: str, run_id: str, journal: JournalWriter, marker):
        self._store = store
        self.session_id = session_id
        self.run_id = run_id
        self._journal = journal
        self._marker = marker
        self._ended = False
        self._run_key = ("run", run_id)
        self._session_key = ("session", session_id)

    @property
    def offset(self) -> int:
        return self._journal.offset

    def append(self, record: dict, durable: bool = False) -> int:
        try:
            offset = self._journal.append(record, durable=durable)
        except OSError as error:
            if error.errno not in _FULL_ERRNOS:
                raise
            if not durable:
                raise StoreFull(str(error)) from error
            # A terminal record: the room kept for it is given back, and it goes in.
            self._store.release_reserve()
            try:
                offset = self._journal.append(record, durable=durable)
            except OSError as again:
                if again.errno in _FULL_ERRNOS:
                    raise StoreFull(str(again)) from again
                raise
        if is_terminal(record):
            self._ended = True
        beacons = self._store.beacons
        beacons.fire(self._run_key)
        beacons.fire(self._session_key)
        return offset

    def close(self) -> None:
        try:
            self._journal.close()
        finally:
            self._store._closed(self)
            if self._ended:
                _unlink_marker(self._marker)


class FileRunLog:
    """A reader of one journal file (its own descriptor)."""

    def __init__(self, store: FileLogStore, session_id: str, run_id: str, path, fd: int):
        self._store = store
        self.session_id = session_id
        self.run_id = run_id
        self.path = path
        self._fd = fd
        stat = os.fstat(fd)
        self.identity = (stat.st_dev, stat.st_ino)
        self._beacon = store.beacons.get(("run", run_id))
        self._seen = self._beacon.generation
        self._following = None  # the watcher registration while another process writes

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def stamp(self):
        """Changes whenever the journal's content does (its size and mtime)."""
        stat = os.fstat(self._fd)
        return stat.st_size, stat.st_mtime_ns

    def read(self, after: int, max_bytes: int = READ_CHUNK_BYTES) -> list:
        self._seen = self._beacon.generation
        return read_lines(self._fd, after, max_bytes)

    def mark(self):
        """A token of what a read starting now will see (for sharing reads)."""
        return self._beacon.generation

    def adopt(self, mark) -> None:
        """Continue as if this handle had made the read that took ``mark``."""
        if mark > self._seen:
            self._seen = mark

    def raw_tail(self):
        """``(committed, last_record)`` as on disk, without settling."""
        return read_tail(self._fd)

    def tail(self):
        committed, last = read_tail(self._fd)
        if not is_terminal(last) and not self._store.is_local(self.run_id):
            if self.recover() == "recovered":
                committed, last = read_tail(self._fd)
        return committed, last

    def is_cursor(self, offset: int) -> bool:
        return is_line_boundary(self._fd, offset)

    def owner_alive(self) -> bool:
        return self._store.is_local(self.run_id) or writer_alive(self._fd)

    def recover(self) -> str:
        """Finish the run if its writer died (PROTOCOL 1.3); the outcome. A recovery that
        cannot write (a full disk) leaves the journal as it is: readers still get what is
        on disk, and the next reader tries again."""
        try:
            outcome = recover(self.path)
        except OSError as error:
            if error.errno not in _FULL_ERRNOS:
                return "failed"
            self._store.release_reserve()  # room kept for terminal records: this is one
            try:
                outcome = recover(self.path)
            except OSError:
                return "failed"
        if outcome in ("recovered", "terminal"):
            _unlink_marker(self._store.active_index / self.run_id)
            if outcome == "recovered":
                self._store.beacons.fire(("run", self.run_id))
                self._store.beacons.fire(("session", self.session_id))
        return outcome

    def settle(self) -> float:
        if self._store.is_local(self.run_id):
            return float("inf")
        if writer_alive(self._fd):
            self._follow()
            return REMOTE_LIVENESS_SECONDS
        _, last = read_tail(self._fd)
        if not is_terminal(last):
            self.recover()
        # The writer is gone: what remains to read is already on disk.
        return OWNER_GONE_RECHECK_SECONDS

    def wait(self, after: int, timeout: float) -> bool:
        return wait_settled(self, self._beacon, self._seen, timeout)

    def _follow(self) -> None:
        """Have the watcher wake this run's tailers when another process appends to it."""
        if self._following is None:
            self._following = self._store.journal_changed(self.session_id, self.run_id)
            self._store.watcher.watch(self.path.parent, self.path.name, self._following, kind=CONTENT)

    def close(self) -> None:
        if self._following is not None:
            self._store.watcher.unwatch(self.path.parent, self.path.name, self._following, kind=CONTENT)
            self._following = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SessionWatch:
    """Wakes a session's tailer: new runs, appends to its runs, metadata changes, whether
    this process or another made them. ``on_metadata`` is called (before the wake-up)
    when another process replaced the session's metadata."""

    def __init__(self, store: FileLogStore, session_id: str, on_metadata=None):
        self._store = store
        self.beacon = store.beacons.get(("session", session_id))
        self._registrations = [(store.data_dir.journals_dir(session_id), None, ENTRIES, self.beacon)]
        if on_metadata is not None:
            self._registrations.append(
                (store.data_dir.sessions_dir, f"{session_id}.json", ENTRIES, _Callback(on_metadata, self.beacon)))
        for directory, name, kind, target in self._registrations:
            store.watcher.watch(directory, name, target, kind=kind)
        self._seen = self.beacon.generation

    def mark(self) -> None:
        """Remember the present: ``wait`` returns on any change after this call."""
        self._seen = self.beacon.generation

    def wait(self, timeout: float) -> bool:
        return self.beacon.wait_past(self._seen, timeout)

    def close(self) -> None:
        for directory, name, kind, target in self._registrations:
            self._store.watcher.unwatch(directory, name, target, kind=kind)
        self._registrations = []


class _Callback:
    """Stands in a watcher registration for a beacon: calls ``function``, then fires."""

    __slots__ = ("function", "beacon")

    def __init__(self, function, beacon):
        self.function = function
        self.beacon = beacon

    def fire(self) -> None:
        self.function()
        self.beacon.fire()


class _JournalChanged:
    """Stands in a watcher registration for a journal written by another process: wakes
    the tailers of the run and of its session."""

    __slots__ = ("beacons", "keys", "__weakref__")

    def __init__(self, beacons: Beacons, session_id: str, run_id: str):
        self.beacons = beacons
        self.keys = (("run", run_id), ("session", session_id))

    def fire(self) -> None:
        for key in self.keys:
            self.beacons.fire(key)


@contextlib.contextmanager
def session_lock(data_dir, session_id: str):
    """The session's lock, exclusive across processes: ``journals/.<sid>.start-lock``."""
    path = data_dir.start_lock_path(session_id)
    ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.005)  # held for milliseconds; never block the event loop
        yield
    finally:
        os.close(fd)


def _names(directory) -> list:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _valid_names(directory) -> list:
    return sorted(name for name in _names(directory) if is_valid_id(name))


def _symlink(target: str, path) -> None:
    try:
        os.symlink(target, path)
    except FileExistsError:
        pass


def _unlink_marker(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.EROFS):
            raise
