"""SSE streams of runs and sessions: one loop for replay and live delivery.

Each subscriber reads the journal itself from its own byte offset and sleeps on a beacon
when caught up (see ``wakeup.py``); nothing is buffered per subscriber, so a slow client
only falls behind itself and a reconnect resumes with a seek.
"""

import os
import time

from hermes_web import sse
from hermes_web.journal import TERMINAL_TYPES, journal_state, read_lines, recover, writer_alive
from hermes_web.store import NotFound

# How often a tailer of a run written by another process re-checks that the writer lives.
REMOTE_LIVENESS_SECONDS = 1.0
WRITER_GONE_RECHECK_SECONDS = 0.05


class Streams:
    """Builds the frame generators; validation happens before, in the web layer."""

    def __init__(self, data_dir, sessions, runs, beacons, watcher, redaction, config):
        self.data_dir = data_dir
        self.sessions = sessions
        self.runs = runs
        self.beacons = beacons
        self.watcher = watcher
        self.redaction = redaction
        self.heartbeat = config.heartbeat_seconds
        self.retry_ms = config.sse_retry_ms
        self._meta_versions = {}
        self._metadata_watches = {}  # session_id -> _MetadataWatch

    def note_session_changed(self, session_id: str) -> None:
        """Session metadata changed (rename, title, delete): session streams send a frame."""
        self._meta_versions[session_id] = self._meta_versions.get(session_id, 0) + 1
        self.beacons.fire(("session", session_id))

    def _metadata_watch(self, session_id: str) -> "_MetadataWatch":
        watch = self._metadata_watches.get(session_id)
        if watch is None:
            watch = self._metadata_watches[session_id] = _MetadataWatch(self, session_id)
        return watch

    # ------------------------------------------------------------ run stream

    def run_stream(self, session_id: str, run_id: str, offset: int):
        """Frames of one run from ``offset`` through its terminal record."""
        path = self.data_dir.journal_path(session_id, run_id)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        beacon = self.beacons.get(("run", run_id))
        liveness = _Liveness(self, run_id, path, fd, beacon)
        try:
            yield sse.retry_frame(self.retry_ms)
            last_sent = time.monotonic()
            while True:
                generation = beacon.generation
                frames, offset, finished = self._read_frames(fd, run_id, offset)
                if frames:
                    yield frames
                    if finished:
                        return
                    last_sent = time.monotonic()
                    continue
                wait = liveness.check()
                if not beacon.wait_past(generation, min(wait, self.heartbeat)):
                    if time.monotonic() - last_sent >= self.heartbeat:
                        yield sse.PING
                        last_sent = time.monotonic()
        finally:
            liveness.close()
            os.close(fd)

    # ------------------------------------------------------------ session stream

    def session_stream(self, session_id: str, run_id, offset: int, run_finished: bool = False):
        """Frames of a session: ``run_id`` from ``offset`` (or every run from the first when
        ``run_id`` is None), then each later run as it starts. Never ends by itself except
        when the session is deleted."""
        beacon = self.beacons.get(("session", session_id))
        journals_dir = self.data_dir.journals_dir(session_id)
        self.watcher.watch(journals_dir, beacon)  # runs started by another process
        # Renames and deletions made through another process on the same data dir.
        metadata_path = self.data_dir.session_path(session_id)
        metadata_watch = self._metadata_watch(session_id)
        self.watcher.watch(metadata_path, metadata_watch)
        meta_version = self._meta_versions.get(session_id, 0)
        sent_meta = None
        fd = None
        liveness = None
        finished = run_finished or run_id is None
        try:
            yield sse.retry_frame(self.retry_ms)
            last_sent = time.monotonic()
            while True:
                generation = beacon.generation
                progressed = False
                version = self._meta_versions.get(session_id, 0)
                if version != meta_version:
                    meta_version = version
                    try:
                        meta = self.sessions.get(session_id)
                    except NotFound:
                        yield sse.event_frame("session.deleted", {"id": session_id})
                        return
                    if meta != sent_meta:  # a local change is also seen by the watcher
                        sent_meta = meta
                        yield sse.event_frame("session.updated", meta)
                        progressed = True
                if not finished and fd is None:
                    try:
                        path = self.data_dir.journal_path(session_id, run_id)
                        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                        liveness = _Liveness(self, run_id, path, fd, beacon)
                    except FileNotFoundError:
                        finished = True  # compacted or deleted meanwhile: go on after it
                if fd is not None:
                    frames, offset, finished = self._read_frames(fd, run_id, offset)
                    if frames:
                        yield frames
                        progressed = True
                    if finished:
                        liveness.close()
                        os.close(fd)
                        fd, liveness = None, None
                if finished:
                    following = self._run_after(session_id, run_id)
                    if following is not None:
                        run_id, offset, finished = following, 0, False
                        progressed = True
                if progressed:
                    last_sent = time.monotonic()
                    continue
                wait = liveness.check() if liveness is not None else self.heartbeat
                if not beacon.wait_past(generation, min(wait, self.heartbeat)):
                    if time.monotonic() - last_sent >= self.heartbeat:
                        yield sse.PING
                        last_sent = time.monotonic()
        finally:
            if fd is not None:
                liveness.close()
                os.close(fd)
            self.watcher.unwatch(journals_dir, beacon)
            self.watcher.unwatch(metadata_path, metadata_watch)

    def _run_after(self, session_id: str, run_id):
        for candidate in self.data_dir.run_ids(session_id):
            if run_id is None or candidate > run_id:
                return candidate
        return None

    def _read_frames(self, fd: int, run_id: str, offset: int):
        """``(frames, offset, finished)`` for the complete records after ``offset``.

        All the records read go out in one write: a viewer that fell behind catches up
        with one send, not one per record. Nothing after a terminal record is read.
        """
        frames = []
        for line, end_offset in read_lines(fd, offset):
            kind = sse.record_type_of(line)
            frames.append(self._frame(run_id, end_offset, line, kind))
            offset = end_offset
            if kind in TERMINAL_TYPES:
                return b"".join(frames), offset, True
        return b"".join(frames), offset, False

    def _frame(self, run_id: str, end_offset: int, line: bytes, kind: str) -> bytes:
        if self.redaction.on_read:
            line = self.redaction.line(line)
        return sse.record_frame(run_id, end_offset, line, kind)


class _MetadataWatch:
    """Stands in a :class:`Watcher` for a session's metadata file: a change on disk is a
    session change for this process's streams (``fire`` is what the watcher calls)."""

    def __init__(self, streams: Streams, session_id: str):
        self._streams = streams
        self._session_id = session_id

    def fire(self) -> None:
        self._streams.note_session_changed(self._session_id)


class _Liveness:
    """Makes sure a tailed run can still progress: a local writer wakes the beacon by
    itself; a writer in another process is watched on disk; a dead writer is recovered."""

    def __init__(self, streams: Streams, run_id: str, path, fd: int, beacon):
        self._streams = streams
        self._run_id = run_id
        self._path = path
        self._fd = fd
        self._beacon = beacon
        self._watching = False

    def check(self) -> float:
        """Return how long the caller may sleep before checking again."""
        if self._streams.runs.is_local(self._run_id):
            return self._streams.heartbeat
        if writer_alive(self._fd):
            if not self._watching:
                self._streams.watcher.watch(self._path, self._beacon)
                self._watching = True
            return REMOTE_LIVENESS_SECONDS
        _, last = journal_state(self._path)
        if last is None or last.get("type") not in TERMINAL_TYPES:
            recover(self._path)  # its writer died: end the run so tailers finish
        # The writer is gone: what remains to read is already on disk. A short pause, not
        # zero, so a journal that cannot be finished (recovery failing) is no busy loop.
        return WRITER_GONE_RECHECK_SECONDS

    def close(self) -> None:
        if self._watching:
            self._streams.watcher.unwatch(self._path, self._beacon)
            self._watching = False
