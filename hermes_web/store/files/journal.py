"""The run journal: append-only JSONL, read from byte offsets, recovered after a crash.

Layout and rules: PROTOCOL 1.1-1.3. One writer per journal (an exclusive ``flock`` held
for the run's lifetime); any number of readers, which only ever see complete lines.
"""

import errno
import fcntl
import os
import threading
import time
from pathlib import Path

from hermes_web.core.codec import MAX_RECORD_BYTES, decode_record, encode_record
from hermes_web.core.fsutil import FILE_MODE, fsync_dir
from hermes_web.core.records import is_terminal
from hermes_web.store.durability import Durability
from hermes_web.store.logstore import READ_CHUNK_BYTES

TORN_SUFFIX = ".torn"


class JournalError(Exception):
    """The journal cannot be written as asked."""


class JournalLocked(JournalError):
    """Another writer holds the journal's lock."""


class JournalExists(JournalError):
    """A journal of that name already exists."""


class JournalWriter:
    """The single writer of one run's journal; holds its exclusive lock until closed."""

    def __init__(self, fd: int, path: Path, offset: int, durability: Durability, lock_fd: int = None):
        self._fd = fd
        self._lock_fd = lock_fd  # holds the writer's lock when writes go through another descriptor
        self.path = path
        self.offset = offset
        self._durability = durability
        self._sync_lock = threading.Lock()
        self._unsynced = False

    @classmethod
    def create(cls, path: Path, first_record: dict, durability: Durability) -> "JournalWriter":
        """Create a new journal whose first line is ``first_record``, durably.

        The file is written and locked under a temporary name and renamed into place, so
        no reader or recoverer ever sees a journal without its ``run.started`` line or
        without its owner's lock.
        """
        path = Path(path)
        temp_path = path.with_name(f".{path.name}.new")
        fd = os.open(temp_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            line = encode_record(first_record)
            _write_whole(fd, line)
            durability.offload(os.fsync, fd)
            # link, not rename: rename would silently replace a journal that already exists.
            os.link(temp_path, path)
            os.unlink(temp_path)
            durability.offload(fsync_dir, path.parent)
            # Appends go through a descriptor opened by the journal's own name: inotify
            # names each change by the name its descriptor was opened with, and a tailer in
            # another process watches this one. The first descriptor keeps the lock.
            write_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except BaseException as error:
            os.close(fd)
            try:
                os.unlink(temp_path)
            except FileNotFoundError:
                pass
            if isinstance(error, FileExistsError):
                raise JournalExists(f"journal {path.name} already exists") from None
            raise
        return cls(write_fd, path, len(line), durability, lock_fd=fd)

    def append(self, record: dict, durable: bool = False) -> int:
        """Append one record with a single ``write``; return the new committed offset."""
        if self._fd is None:
            raise JournalError("journal is closed")
        line = encode_record(record)
        previous = self.offset
        try:
            _write_whole(self._fd, line)
        except OSError:
            # Disk full or an I/O error: cut whatever part of the line landed, so the
            # terminal record that follows starts on a line of its own.
            os.ftruncate(self._fd, previous)
            raise
        self.offset += len(line)
        pending = self._unsynced
        self._unsynced = True
        # A journal with an fsync already pending is already queued for the flusher (which
        # clears the flag before it syncs): only the first append after a sync enqueues it.
        if durable or not pending:
            try:
                self._durability.after_append(self, durable)
            except OSError:
                # The line is written but not durable (an fsync that found the disk full):
                # take it back, so a retry cannot leave it twice.
                os.ftruncate(self._fd, previous)
                self.offset = previous
                self._unsynced = True
                raise
        return self.offset

    def sync(self) -> None:
        """Fsync what was appended so far (no-op when nothing is pending)."""
        with self._sync_lock:
            if self._fd is None or not self._unsynced:
                return
            self._unsynced = False
            self._durability.offload(os.fsync, self._fd)

    def close(self) -> None:
        """Sync, release the lock and close."""
        self._durability.forget(self)
        self.sync()
        with self._sync_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the lock, last
                self._lock_fd = None


def _write_whole(fd: int, line: bytes) -> None:
    written = os.write(fd, line)
    if written != len(line):
        # A short write to a regular file means the disk is full. It leaves a torn tail;
        # readers never see it, and the writer or recovery cuts it.
        raise OSError(errno.ENOSPC, f"No space left on device (wrote {written} of {len(line)} bytes)")


# ---------------------------------------------------------------- reading


def read_lines(fd: int, offset: int, max_bytes: int = READ_CHUNK_BYTES):
    """Complete lines from ``offset``: a list of ``(line_without_newline, end_offset)``.

    Reads at most about ``max_bytes`` (more only to finish one long record). A torn or
    still-being-written tail is never returned. ``offset`` must be a valid cursor.
    """
    data = os.pread(fd, max_bytes, offset)
    cut = data.rfind(b"\n")
    if cut < 0:
        if len(data) < max_bytes:
            return []
        data = os.pread(fd, MAX_RECORD_BYTES + 1, offset)
        cut = data.rfind(b"\n")
        if cut < 0:
            return []
    lines = []
    start = 0
    end = cut + 1
    while start < end:
        newline = data.index(b"\n", start)
        lines.append((data[start:newline], offset + newline + 1))
        start = newline + 1
    return lines


def is_line_boundary(fd: int, offset: int) -> bool:
    """Cursor validity (PROTOCOL 1.2) in O(1): 0, or within the file right after a ``\\n``.

    Because the byte before a valid offset is a newline, such an offset can never lie
    beyond the last complete line, so it is also ``<= committed``.
    """
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        return False
    if offset == 0:
        return True
    return os.pread(fd, 1, offset - 1) == b"\n"


def read_tail(fd: int):
    """``(committed, last_record)`` of a journal: the end of its last complete line and
    that line parsed (None when there is none). Reads from the end, never scans."""
    size = os.fstat(fd).st_size
    window = min(size, 64 * 1024)
    while True:
        data = os.pread(fd, window, size - window)
        last_newline = data.rfind(b"\n")
        if last_newline < 0:
            if window >= size or window > MAX_RECORD_BYTES:
                return 0, None
            window = min(size, window * 4)
            continue
        committed = size - window + last_newline + 1
        previous = data.rfind(b"\n", 0, last_newline)
        if previous < 0 and window < size and window <= MAX_RECORD_BYTES:
            window = min(size, window * 4)
            continue
        return committed, decode_record(data[previous + 1:last_newline])


def read_entries(path: Path, offset: int = 0) -> list:
    """Every complete record of a journal from ``offset`` as ``(record, end_offset)`` pairs;
    a damaged line's record is None (PROTOCOL 1.4)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        entries = []
        while True:
            lines = read_lines(fd, offset)
            if not lines:
                return entries
            for line, end_offset in lines:
                entries.append((decode_record(line), end_offset))
                offset = end_offset
    finally:
        os.close(fd)


# ---------------------------------------------------------------- recovery


def recover(path: Path, reason: str = "process died") -> str:
    """Finish a journal whose writer died (PROTOCOL 1.3).

    Returns ``"locked"`` (a live writer owns it: nothing done), ``"terminal"`` (already
    finished) or ``"recovered"``: the torn tail, if any, was cut back to the last ``\\n``
    and kept in ``<journal>.torn``, then ``run.interrupted`` was appended and fsynced.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        return "missing"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "locked"
        size = os.fstat(fd).st_size
        committed, last = read_tail(fd)
        if committed < size:
            _keep_torn_tail(path, os.pread(fd, size - committed, committed))
            os.ftruncate(fd, committed)
        if last is not None and is_terminal(last):
            if committed < size:
                os.fsync(fd)
            return "terminal"
        record = {"type": "run.interrupted", "ts": time.time(), "reason": reason}
        _write_whole(fd, encode_record(record))
        os.fsync(fd)
        return "recovered"
    finally:
        os.close(fd)


def _keep_torn_tail(path: Path, data: bytes) -> None:
    # Appended, so a journal torn twice (crash during recovery) keeps every cut byte.
    torn_path = path.with_name(path.name + TORN_SUFFIX)
    fd = os.open(torn_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        _write_whole(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def journal_state(path: Path):
    """``(committed, last_record)`` of the journal at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_tail(fd)
    finally:
        os.close(fd)


def writer_alive_at(path: Path) -> bool:
    """True while some process holds the writer lock of the journal at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return writer_alive(fd)
    finally:
        os.close(fd)


def writer_alive(fd: int) -> bool:
    """True while some process holds the journal's writer lock (tested on ``fd``)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False
