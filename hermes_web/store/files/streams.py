"""Durable Streams as files: ``streams/<name>/stream.json`` (its settings, written once)
and ``streams/<name>/log.jsonl`` (one JSON line per append), under the data dir.

A stream's offset is the byte offset in its log where a reader stands (after a fork's
offset, for a fork), so a reader resumes exactly where it left off, and the file reads with
``grep``. Appends follow the fsync policy (a close is always fsynced), a torn tail is cut
when the stream is opened, and a line that does not decode is skipped and counted, never
served. Text and JSON streams are masked at rest like journals (docs/redaction.md).
"""

import base64
import bisect
import dataclasses
import errno
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
from hermes_web.store.streams import (
    DEFAULT_CONTENT_TYPE,
    Message,
    Outcome,
    Producer,
    ProducerState,
    Read,
    Settings,
    StreamError,
    check_producer,
    format_offset,
    is_json,
    is_text,
    json_values,
    media_type,
    parse_time,
)

log = logging.getLogger(__name__)
SETTINGS_FILE = "stream.json"
LOG_FILE = "log.jsonl"
GONE_FILE = "gone"  # a deleted stream that forks still read through
MAX_NAME_BYTES = 240
TEMP_PREFIX = ".new-"
TRASH_PREFIX = ".deleted-"
SWEEP_SECONDS = 60.0


class _Stream:
    """One stream's state, rebuilt from its log when it is first used."""

    def __init__(self, name: str, directory: Path, settings: Settings):
        self.name = name
        self.directory = directory
        self.settings = settings
        self.base = settings.fork_offset
        self.starts, self.ends = [], []  # byte spans of the data lines in the log
        self.size = 0
        self.closed = False
        self.closed_by = None
        self.producers = {}
        self.last_seq = None
        self.damaged = 0
        self.gone = (directory / GONE_FILE).exists()
        self.removed = False
        self.fd = None
        self.unsynced = False
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        try:
            self.last_access = (directory / LOG_FILE).stat().st_mtime
        except FileNotFoundError:
            self.last_access = time.time()

    @property
    def tail(self) -> int:
        return self.base + (self.ends[-1] if self.ends else 0)

    def sync(self) -> None:
        with self.lock:
            if self.fd is not None and self.unsynced:
                self.unsynced = False
                os.fsync(self.fd)


class FileStreams:
    """Every generic stream of one data dir (one server process owns them)."""

    def __init__(self, data_dir, durability, redaction=None, clock=time.time):
        self.root = Path(data_dir.root) / "streams"
        self.durability = durability
        self.redaction = redaction
        self.clock = clock
        self._lock = threading.Lock()
        self._streams = {}
        self._forks = None  # name -> how many forks read through it
        self._sweeper = None
        self._stopped = False
        self._create_lock = threading.Lock()  # one create at a time: a name is made once

    # -- lookup ---------------------------------------------------------------------------

    def directory_of(self, name: str) -> Path:
        """The stream's folder: its name percent-encoded into one safe path segment."""
        encoded = urllib.parse.quote(name, safe="-_~")
        encoded = encoded.replace(".", "%2E") if encoded.startswith(".") else encoded
        if not name or len(encoded) > MAX_NAME_BYTES:
            raise StreamError(400, "invalid_stream_name", f"a stream name is 1 to {MAX_NAME_BYTES} encoded bytes")
        return self.root / encoded

    def names(self) -> list:
        """Every stream on disk (for the doctor and the sweeper)."""
        if not self.root.is_dir():
            return []
        return sorted(urllib.parse.unquote(entry.name) for entry in self.root.iterdir()
                      if entry.is_dir() and not entry.name.startswith("."))

    def _fork_counts(self) -> dict:
        if self._forks is None:
            counts = {}
            for name in self.names():
                settings = _read_settings(self.directory_of(name))
                if settings is not None and settings.forked_from:
                    counts[settings.forked_from] = counts.get(settings.forked_from, 0) + 1
            self._forks = counts
        return self._forks

    def _find(self, name: str, expire: bool = True) -> Optional[_Stream]:
        """The stream (loaded on first use), None when there is none or it expired."""
        directory = self.directory_of(name)
        with self._lock:
            self._start_sweeper()
            stream = self._streams.get(name)
            if stream is None:
                settings = _read_settings(directory)
                if settings is None:
                    return None
                stream = _Stream(name, directory, settings)
                self._load(stream)
                self._streams[name] = stream
        if expire and self._expired(stream):
            self._expire(stream)
            return stream if stream.gone and not stream.removed else None
        return None if stream.removed else stream

    def _live(self, name: str) -> _Stream:
        stream = self._find(name)
        if stream is None:
            raise StreamError(404, "stream_not_found", "no such stream")
        if stream.gone:
            raise StreamError(410, "stream_gone", "the stream was deleted; its forks still read it")
        return stream

    def _load(self, stream: _Stream) -> None:
        log_path = stream.directory / LOG_FILE
        fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        stream.fd = fd
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            # A crash mid-append: the part line was never acknowledged; cut it.
            log.warning("stream %r: cutting a torn tail of %d byte(s)", stream.name, len(data) - complete)
            os.ftruncate(fd, complete)
            os.fsync(fd)
        position = 0
        for line in data[:complete].split(b"\n")[:-1]:
            end = position + len(line) + 1
            self._replay(stream, line, position, end)
            position = end
        stream.size = complete

    def _replay(self, stream: _Stream, line: bytes, start: int, end: int) -> None:
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError, RecursionError):
            stream.damaged += 1
            log.warning("stream %r: skipping a damaged line at byte %d", stream.name, start)
            return
        producer = entry.get("producer")
        if isinstance(producer, list) and len(producer) == 3:
            stream.producers[producer[0]] = ProducerState(producer[1], producer[2])
        if entry.get("closed"):
            stream.closed = True
            stream.closed_by = tuple(producer) if isinstance(producer, list) else None
            return
        if "seq" in entry:
            stream.last_seq = entry["seq"]
        stream.starts.append(start)
        stream.ends.append(end)

    # -- expiry ---------------------------------------------------------------------------

    def _expired(self, stream: _Stream) -> bool:
        now = self.clock()
        settings = stream.settings
        if settings.expires_at is not None:
            at = parse_time(settings.expires_at)
            if at is None or now >= at:
                return True
        return settings.ttl_seconds is not None and now >= stream.last_access + settings.ttl_seconds

    def _expire(self, stream: _Stream) -> None:
        if self._fork_counts().get(stream.name, 0) > 0:
            self._mark_gone(stream)
        else:
            self._remove(stream)

    def touch(self, stream: _Stream) -> None:
        stream.last_access = self.clock()

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep_forever, name="stream-expiry", daemon=True)
            self._sweeper.start()

    def _sweep_forever(self) -> None:
        while not self._stopped:
            try:
                self.sweep()
            except OSError as error:
                log.warning("stream expiry sweep: %s", error)
            time.sleep(SWEEP_SECONDS)

    def sweep(self) -> int:
        """Remove every expired stream (a stream that forks read through stays, gone);
        the number removed. Only streams with a TTL or an expiry time are opened."""
        removed = 0
        for name in self.names():
            with self._lock:
                loaded = name in self._streams
            if not loaded:
                settings = _read_settings(self.directory_of(name))
                if settings is None or (settings.ttl_seconds is None and settings.expires_at is None):
                    continue
            if self._find(name) is None:
                removed += 1
        return removed

    # -- writes ---------------------------------------------------------------------------

    def create(self, name: str, settings: Settings, body: bytes) -> tuple:
        """``(stream, created)``: made now, or the same stream made before (idempotent)."""
        directory = self.directory_of(name)
        with self._create_lock:
            return self._create(name, directory, settings, body)

    def _create(self, name: str, directory: Path, settings: Settings, body: bytes) -> tuple:
        existing = self._find(name)
        if existing is not None:
            if existing.gone:
                raise StreamError(409, "stream_has_forks",
                                  "a deleted stream's name is taken until its forks are deleted")
            if not _same_settings(existing.settings, settings, existing.closed):
                raise StreamError(409, "stream_exists", "a stream with this name exists with other settings")
            return existing, False
        source = None
        if settings.forked_from is not None:
            source = self._fork_source(settings)
        lines = []
        if settings.fork_sub_offset:
            lines.append(self._sub_offset_line(source, settings))
        if body:
            lines.extend(self._data_lines(settings.content_type, body, creating=True))
        if settings.created_closed:
            lines.append(_CLOSE_LINE)
        self._write_new(directory, settings, b"".join(lines))
        with self._lock:
            self._streams.pop(name, None)
            if settings.forked_from is not None:
                counts = self._fork_counts()
                counts[settings.forked_from] = counts.get(settings.forked_from, 0) + 1
        return self._find(name), True

    def _fork_source(self, settings: Settings) -> _Stream:
        source = self._find(settings.forked_from)
        if source is None:
            raise StreamError(404, "source_not_found", "the stream to fork from does not exist")
        if source.gone:
            raise StreamError(409, "source_gone", "the stream to fork from was deleted")
        if settings.content_type is None:
            settings.content_type = source.settings.content_type
        elif media_type(settings.content_type) != media_type(source.settings.content_type):
            raise StreamError(409, "content_type_mismatch", "a fork has its source's content type")
        if settings.fork_offset is None:
            settings.fork_offset = source.tail
        if settings.fork_offset > source.tail:
            raise StreamError(400, "invalid_fork_offset", "the fork offset is past the end of the source")
        if settings.ttl_seconds is None and settings.expires_at is None:
            settings.ttl_seconds = source.settings.ttl_seconds
            settings.expires_at = source.settings.expires_at
        return source

    def _sub_offset_line(self, source: _Stream, settings: Settings) -> bytes:
        """A fork inside a message: the message's first bytes (or JSON values) become the
        fork's own first message."""
        after = self.read(source.name, settings.fork_offset, max_bytes=1, inherited=True)
        if not after.messages:
            raise StreamError(400, "invalid_fork_sub_offset", "no message follows the fork offset")
        payload = after.messages[0].payload
        if isinstance(payload, str):
            payload = payload.encode("utf-8")  # a sub-offset counts bytes (JSON: values)
        count = settings.fork_sub_offset
        if count > len(payload):
            raise StreamError(400, "invalid_fork_sub_offset", "the sub-offset is past the end of the message")
        return _encode(_payload_entry(settings.content_type, payload[:count]))

    def _write_new(self, directory: Path, settings: Settings, log_bytes: bytes) -> None:
        ensure_dir(self.root)
        temp = self.root / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
        temp.mkdir(mode=DIR_MODE)
        try:
            for file_name, data in ((SETTINGS_FILE, _encode(dataclasses.asdict(settings))), (LOG_FILE, log_bytes)):
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
                    raise StreamError(409, "stream_exists", "the stream was created meanwhile") from None
                raise
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(self.root)

    def _data_lines(self, content_type: str, body: bytes, creating: bool = False, extra: dict = None) -> list:
        if is_json(content_type):
            values = json_values(body, creating)
            if not values:
                return []
            if self.redaction is not None and self.redaction.at_rest:
                values = self.redaction.value(values)
            return [_encode({"json": values, **(extra or {})})]
        return [_encode({**_payload_entry(content_type, self._masked_text(content_type, body)), **(extra or {})})]

    def _masked_text(self, content_type: str, body: bytes):
        if not is_text(content_type):
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise StreamError(400, "invalid_text", "a text stream takes UTF-8") from None
        if self.redaction is not None and self.redaction.at_rest:
            text = self.redaction.text(text)
        return text

    def append(self, name: str, body: bytes, content_type: Optional[str], seq: Optional[str] = None,
               producer: Optional[Producer] = None, close: bool = False) -> Outcome:
        """Append ``body`` (and close the stream, with ``close``); see docs/durable-streams.md."""
        stream = self._live(name)
        with stream.lock:
            if stream.removed:
                raise StreamError(404, "stream_not_found", "no such stream")
            if stream.closed:
                if producer is not None and stream.closed_by == tuple(producer.as_list()):
                    return Outcome(stream.tail, True, duplicate=True, producer_seq=producer.seq)
                raise _closed_error(stream)
            if content_type is not None and media_type(content_type) != media_type(stream.settings.content_type):
                raise StreamError(409, "content_type_mismatch", "the body's type is not the stream's type")
            state = None
            if producer is not None:
                verdict, state = check_producer(stream.producers, producer)
                if verdict == "duplicate":
                    return Outcome(stream.tail, stream.closed, duplicate=True, producer_seq=state)
            if seq is not None and stream.last_seq is not None and seq <= stream.last_seq:
                raise StreamError(409, "stream_seq_conflict", "Stream-Seq must grow with every append")
            extra = {}
            if seq is not None:
                extra["seq"] = seq
            if producer is not None:
                extra["producer"] = producer.as_list()
            lines = self._data_lines(stream.settings.content_type, body, extra=extra)
            self._write(stream, lines, _close_line(producer) if close else None)
            if producer is not None:
                stream.producers[producer.producer_id] = state
            if seq is not None:
                stream.last_seq = seq
            if close:
                stream.closed = True
                stream.closed_by = tuple(producer.as_list()) if producer else None
            self.touch(stream)
            return Outcome(stream.tail, stream.closed, producer_seq=producer.seq if producer else None)

    def close(self, name: str, producer: Optional[Producer] = None) -> Outcome:
        """Close the stream without appending (idempotent; with a producer, sequenced)."""
        stream = self._live(name)
        with stream.lock:
            if stream.removed:
                raise StreamError(404, "stream_not_found", "no such stream")
            if stream.closed:
                if producer is None:
                    return Outcome(stream.tail, True)
                if stream.closed_by == tuple(producer.as_list()):
                    return Outcome(stream.tail, True, duplicate=True, producer_seq=producer.seq)
                raise _closed_error(stream)
            state = None
            if producer is not None:
                verdict, state = check_producer(stream.producers, producer)
                if verdict == "duplicate":
                    return Outcome(stream.tail, False, duplicate=True, producer_seq=state)
            self._write(stream, [], _close_line(producer))
            if producer is not None:
                stream.producers[producer.producer_id] = state
            stream.closed = True
            stream.closed_by = tuple(producer.as_list()) if producer else None
            self.touch(stream)
            return Outcome(stream.tail, True, producer_seq=producer.seq if producer else None)

    def _write(self, stream: _Stream, lines: list, close_line: Optional[bytes]) -> None:
        """Append data ``lines`` (and the close) with one ``write``: all of it, or nothing."""
        data = b"".join(lines) + (close_line or b"")
        previous = stream.size
        try:
            written = os.write(stream.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            stream.unsynced = True
            self.durability.after_append(stream, close_line is not None)
        except OSError:
            os.ftruncate(stream.fd, previous)  # nothing of a refused append stays
            raise
        position = previous
        for line in lines:
            stream.starts.append(position)
            stream.ends.append(position + len(line))
            position += len(line)
        stream.size = previous + len(data)
        stream.changed.notify_all()

    def delete(self, name: str) -> None:
        """Delete the stream; one that forks read through stays readable to them (gone)."""
        stream = self._find(name)
        if stream is None:
            raise StreamError(404, "stream_not_found", "no such stream")
        if stream.gone:
            raise StreamError(410, "stream_gone", "the stream was already deleted")
        self._expire(stream)

    def _mark_gone(self, stream: _Stream) -> None:
        with stream.lock:
            if stream.gone:
                return
            fd = os.open(stream.directory / GONE_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            os.close(fd)
            fsync_dir(stream.directory)
            stream.gone = True
            stream.changed.notify_all()

    def _remove(self, stream: _Stream) -> None:
        with self._lock:
            if stream.removed:
                return
            stream.removed = True
            self._streams.pop(stream.name, None)
            trash = self.root / f"{TRASH_PREFIX}{secrets.token_hex(6)}"
            os.rename(stream.directory, trash)
            fsync_dir(self.root)
            parent = stream.settings.forked_from
            counts = self._fork_counts()
            counts.pop(stream.name, None)
            if parent is not None and counts.get(parent):
                counts[parent] -= 1
        with stream.lock:
            self.durability.forget(stream)
            if stream.fd is not None:
                os.close(stream.fd)
                stream.fd = None
            stream.changed.notify_all()
        shutil.rmtree(trash, ignore_errors=True)
        if parent is not None and not self._fork_counts().get(parent):
            source = self._find(parent, expire=False)
            if source is not None and source.gone:
                self._remove(source)  # the last fork of a deleted stream: it goes too

    # -- reads ----------------------------------------------------------------------------

    def head(self, name: str) -> _Stream:
        """The stream for a HEAD (its settings, tail and state; no access is recorded)."""
        return self._live(name)

    def read(self, name: str, after: int, max_bytes: int = 4 * 1024 * 1024, inherited: bool = False):
        """``Read``: the messages after offset ``after`` (a fork's start from its source),
        up to about ``max_bytes``; ``after`` past the tail reads nothing."""
        stream = self._find(name) if inherited else self._live(name)
        if stream is None:
            return Read([], after, True, False, None)
        if not inherited:
            self.touch(stream)
        messages = []
        if stream.settings.forked_from is not None and after < stream.base:
            messages = self._read_source(stream.settings.forked_from, after, stream.base, max_bytes)
        budget = max_bytes - sum(_size(message.payload) for message in messages)
        with stream.lock:
            tail, closed = stream.tail, stream.closed
            index = _first_after(stream.ends, after - stream.base)
            spans = list(zip(stream.starts[index:], stream.ends[index:]))
        own, complete = self._read_own(stream, spans, budget if messages or budget > 0 else 1)
        messages.extend(own)
        complete = complete and len(own) == len(spans)
        offset = messages[-1].offset if messages else tail
        return Read(messages, offset, complete, closed and complete and offset == tail, stream)

    def _read_source(self, name: str, after: int, cap: int, max_bytes: int) -> list:
        result = self.read(name, after, max_bytes=1 << 62, inherited=True)
        return [message for message in result.messages if message.offset <= cap]

    def _read_own(self, stream: _Stream, spans: list, budget: int) -> tuple:
        if not spans:
            return [], True
        taken = []
        total = 0
        for start, end in spans:
            if taken and total + (end - start) > budget:
                break
            taken.append((start, end))
            total += end - start
        first, last = taken[0][0], taken[-1][1]
        with stream.lock:
            if stream.fd is None:
                return [], True
            data = os.pread(stream.fd, last - first, first)
        messages = []
        for start, end in taken:
            line = data[start - first:end - first - 1]
            try:
                entry = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            messages.append(Message(self._served(stream.settings.content_type, entry), stream.base + end))
        return messages, len(taken) == len(spans)

    def _served(self, content_type: str, entry: dict):
        if "json" in entry:
            values = entry["json"]
            return self.redaction.value(values) if self.redaction is not None and self.redaction.on_read else values
        if "text" in entry:
            text = entry["text"]
            text = self.redaction.text(text) if self.redaction is not None and self.redaction.on_read else text
            return text if is_text(content_type) else text.encode("utf-8")
        return base64.b64decode(entry.get("base64", ""))

    def wait(self, stream: _Stream, after: int, timeout: float) -> bool:
        """Wait until the stream grows past ``after``, closes or goes; False on timeout."""
        deadline = time.monotonic() + timeout
        with stream.lock:
            while stream.tail <= after and not stream.closed and not stream.removed and not stream.gone:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                stream.changed.wait(remaining)
        return True

    def close_all(self) -> None:
        self._stopped = True
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            with stream.lock:
                stream.sync()
                self.durability.forget(stream)


def _first_after(ends: list, position: int) -> int:
    return bisect.bisect_right(ends, position)


def _size(payload) -> int:
    return len(payload) if isinstance(payload, (str, bytes)) else len(json.dumps(payload))


def _payload_entry(content_type: str, payload) -> dict:
    if is_json(content_type):
        return {"json": list(payload)}
    if isinstance(payload, str):
        return {"text": payload}
    if is_text(content_type):
        return {"text": bytes(payload).decode("utf-8", "replace")}
    return {"base64": base64.b64encode(bytes(payload)).decode("ascii")}


def _close_line(producer: Optional[Producer]) -> bytes:
    return _encode({"closed": True, "producer": producer.as_list()}) if producer else _CLOSE_LINE


def _encode(entry: dict) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


_CLOSE_LINE = _encode({"closed": True})


def _closed_error(stream: _Stream) -> StreamError:
    return StreamError(409, "stream_closed", "the stream is closed",
                       {"Stream-Closed": "true", "Stream-Next-Offset": format_offset(stream.tail)})


def _read_settings(directory: Path) -> Optional[Settings]:
    try:
        raw = json.loads((directory / SETTINGS_FILE).read_bytes())
        return Settings(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, UnicodeDecodeError, NotADirectoryError) as error:
        log.warning("stream folder %s: unreadable settings (%s); it is not served", directory.name, error)
        return None


def _same_settings(existing: Settings, requested: Settings, closed: bool) -> bool:
    requested_type = requested.content_type
    if requested_type is None and requested.forked_from is not None:
        requested_type = existing.content_type
    return (media_type(requested_type or DEFAULT_CONTENT_TYPE) == media_type(existing.content_type)
            and requested.ttl_seconds == existing.ttl_seconds
            and requested.expires_at == existing.expires_at
            and requested.created_closed == closed
            and requested.forked_from == existing.forked_from
            and (requested.fork_offset is None or requested.forked_from is None
                 or requested.fork_offset == existing.fork_offset)
            and (requested.fork_sub_offset or 0) == (existing.fork_sub_offset or 0))
