"""Durable Streams as files: ``streams/<name>/stream.json`` (its settings, written once)
and ``streams/<name>/log.jsonl`` (one JSON line per append, see ``store/stream_store.py``),
under the data dir; one server process owns them.

Appends follow the fsync policy (a close is always fsynced) and are one ``write``: all of
it or, on a full disk, nothing. A torn tail is cut when the stream is opened, and a line
that does not decode is skipped, never served, with later offsets unchanged.
"""

import bisect
import dataclasses
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Optional

from hermes_web.core.fsutil import DIR_MODE, FILE_MODE, ensure_dir, fsync_dir, write_all
from hermes_web.store.stream_store import StreamState, StreamStore, decode_entry, encode_entry, name_segment
from hermes_web.store.streams import Message, Settings, StreamError

log = logging.getLogger(__name__)
SETTINGS_FILE = "stream.json"
LOG_FILE = "log.jsonl"
GONE_FILE = "gone"  # a deleted stream that forks still read
TEMP_PREFIX = ".new-"
TRASH_PREFIX = ".deleted-"


class _FileStream(StreamState):
    """A stream's state, its open log and the byte spans of its data lines."""

    def __init__(self, name: str, directory: Path, settings: Settings):
        super().__init__(name, settings)
        self.directory = directory
        self.starts, self.ends = [], []
        self.gone = (directory / GONE_FILE).exists()
        self.fd = None
        self.unsynced = False
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)

    def sync(self) -> None:
        with self.lock:
            if self.fd is not None and self.unsynced:
                self.unsynced = False
                os.fsync(self.fd)


class FileStreams(StreamStore):
    """Every generic stream of one data dir."""

    def __init__(self, data_dir, durability, redaction=None, clock=time.time):
        super().__init__(redaction, clock)
        self.root = Path(data_dir.root) / "streams"
        self.durability = durability
        self._lock = threading.Lock()
        self._streams = {}
        self._forks = None  # name -> how many forks read it
        self._create_lock = threading.Lock()  # a name is made once

    def directory_of(self, name: str) -> Path:
        """The stream's folder: its name percent-encoded into one safe path segment."""
        return self.root / name_segment(name)

    def names(self) -> list:
        if not self.root.is_dir():
            return []
        return sorted(urllib.parse.unquote(entry.name) for entry in self.root.iterdir()
                      if entry.is_dir() and not entry.name.startswith("."))

    def _fork_count(self, name: str) -> int:
        with self._lock:
            return self._fork_counts().get(name, 0)

    def _fork_counts(self) -> dict:
        if self._forks is None:
            counts = {}
            for name in self.names():
                settings = read_settings(self.directory_of(name))
                if settings is not None and settings.forked_from:
                    counts[settings.forked_from] = counts.get(settings.forked_from, 0) + 1
            self._forks = counts
        return self._forks

    def _load(self, name: str) -> Optional[_FileStream]:
        directory = self.directory_of(name)
        with self._lock:
            self.start_sweeper()
            stream = self._streams.get(name)
            if stream is None:
                settings = read_settings(directory)
                if settings is None:
                    return None
                stream = _FileStream(name, directory, settings)
                self._open_log(stream)
                self._streams[name] = stream
            return stream

    def _open_log(self, stream: _FileStream) -> None:
        log_path = stream.directory / LOG_FILE
        fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            # One process owns a stream: its offsets and producers live in that process.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StreamError(503, "stream_held", "another server process on this data dir serves this stream",
                              {"Retry-After": "5"}) from None
        stream.fd = fd
        stream.last_access = os.fstat(stream.fd).st_mtime
        size = os.fstat(stream.fd).st_size
        data = os.pread(stream.fd, size, 0) if size else b""
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            # A crash mid-append: that append was never acknowledged; cut it.
            log.warning("stream %r: cutting a torn tail of %d byte(s)", stream.name, len(data) - complete)
            os.ftruncate(stream.fd, complete)
            os.fsync(stream.fd)
        position = 0
        for line in data[:complete].split(b"\n")[:-1]:
            end = position + len(line) + 1
            entry = decode_entry(line)
            if entry is None:
                log.warning("stream %r: skipping a damaged line at byte %d", stream.name, position)
            elif stream.replay(entry):
                stream.starts.append(position)
                stream.ends.append(end)
                stream.data_end = end
            position = end
        stream.size = complete

    def touch(self, state: StreamState) -> None:
        state.last_access = self.clock()

    def _sweep_candidates(self) -> list:
        """Streams that can expire (loaded ones, and those whose settings say so): the only
        ones the sweep opens."""
        result = []
        for name in self.names():
            with self._lock:
                if name in self._streams:
                    result.append(name)
                    continue
            settings = read_settings(self.directory_of(name))
            if settings is not None and (settings.ttl_seconds is not None or settings.expires_at is not None):
                result.append(name)
        return result

    # -- writes --------------------------------------------------------------------------

    def create(self, name: str, settings: Settings, body: bytes) -> tuple:
        self.directory_of(name)  # a 400 for a bad name before anything else
        with self._create_lock:
            return super().create(name, settings, body)

    def _write_new(self, name: str, settings: Settings, log_bytes: bytes) -> bool:
        directory = self.directory_of(name)
        ensure_dir(self.root)
        with self._lock:
            self._fork_counts()  # counted before the new fork exists, then counted once below
        temp = self.root / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
        temp.mkdir(mode=DIR_MODE)
        try:
            for file_name, data in ((SETTINGS_FILE, encode_entry(dataclasses.asdict(settings))),
                                    (LOG_FILE, log_bytes)):
                fd = os.open(temp / file_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(temp)
            try:
                os.rename(temp, directory)
            except OSError:
                if directory.is_dir():
                    shutil.rmtree(temp, ignore_errors=True)
                    return False
                raise
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(self.root)
        with self._lock:
            self._streams.pop(name, None)
            if settings.forked_from is not None:
                counts = self._fork_counts()
                counts[settings.forked_from] = counts.get(settings.forked_from, 0) + 1
        return True

    def _mutate(self, name: str, change):
        stream = self._live(name)
        with stream.lock:
            if stream.removed:
                raise StreamError(404, "stream_not_found", "no such stream")
            outcome = change(stream)
            self.touch(stream)
            return outcome

    def _commit(self, state: _FileStream, lines: list, close_line, producer, producer_state, seq) -> None:
        data = b"".join(lines) + (close_line or b"")
        previous = state.size
        try:
            written = os.write(state.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            state.unsynced = True
            self.durability.after_append(state, close_line is not None)
        except OSError:
            os.ftruncate(state.fd, previous)  # nothing of a refused append stays
            raise
        position = previous
        for line in lines:
            state.starts.append(position)
            state.ends.append(position + len(line))
            position += len(line)
            state.data_end = position
        state.size = previous + len(data)
        if producer is not None:
            state.producers[producer.producer_id] = producer_state
        if seq is not None:
            state.last_seq = seq
        if close_line is not None:
            state.closed = True
            state.closed_by = tuple(producer.as_list()) if producer else None
        state.changed.notify_all()

    def _mark_gone(self, state: _FileStream) -> None:
        with state.lock:
            if state.gone:
                return
            fd = os.open(state.directory / GONE_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            os.close(fd)
            fsync_dir(state.directory)
            state.gone = True
            state.changed.notify_all()

    def _remove(self, state: _FileStream) -> None:
        with self._lock:
            if state.removed:
                return
            state.removed = True
            self._streams.pop(state.name, None)
            trash = self.root / f"{TRASH_PREFIX}{secrets.token_hex(6)}"
            os.rename(state.directory, trash)
            fsync_dir(self.root)
            parent = state.settings.forked_from
            counts = self._fork_counts()
            counts.pop(state.name, None)
            if parent is not None and counts.get(parent):
                counts[parent] -= 1
        with state.lock:
            self.durability.forget(state)
            if state.fd is not None:
                os.close(state.fd)
                state.fd = None
            state.changed.notify_all()
        shutil.rmtree(trash, ignore_errors=True)
        if parent is not None and not self._fork_count(parent):
            source = self._find(parent, expire=False)
            if source is not None and source.gone:
                self._remove(source)  # the last fork of a deleted stream: it goes too

    # -- reads ---------------------------------------------------------------------------

    def _own(self, state: _FileStream, after: int, budget: int) -> tuple:
        with state.lock:
            index = bisect.bisect_right(state.ends, after - state.base)
            spans = list(zip(state.starts[index:], state.ends[index:]))
            if not spans or state.fd is None:
                return [], True
            taken, total = [], 0
            for start, end in spans:
                if taken and total + (end - start) > budget:
                    break
                taken.append((start, end))
                total += end - start
            first = taken[0][0]
            data = os.pread(state.fd, taken[-1][1] - first, first)
        messages = []
        for start, end in taken:
            entry = decode_entry(data[start - first:end - first - 1])
            if entry is not None:
                messages.append(Message(self.served(state.settings.content_type, entry), state.base + end))
        return messages, len(taken) == len(spans)

    def wait(self, name: str, after: int, timeout: float) -> bool:
        stream = self._load(name)
        if stream is None:
            return True
        deadline = time.monotonic() + timeout
        with stream.lock:
            while stream.tail <= after and not stream.closed and not stream.removed and not stream.gone:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                stream.changed.wait(remaining)
        return True

    def close_all(self) -> None:
        self.stop_sweeper()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.sync()
            self.durability.forget(stream)


def read_settings(directory: Path) -> Optional[Settings]:
    """A stream folder's settings; None when it has none (or they do not decode)."""
    try:
        return Settings(**json.loads((directory / SETTINGS_FILE).read_bytes()))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        log.warning("stream folder %s: unreadable settings (%s); it is not served", directory.name, error)
        return None
