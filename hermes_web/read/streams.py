"""SSE streams of runs and sessions: one loop for replay and live delivery.

Each subscriber reads the run's log from its own byte offset; a slow client only falls
behind itself and a reconnect resumes with a seek. Subscribers at the same offset share
the frames read there. Once caught up, a subscriber whose connection can be written to
directly hands it to the run's sender (``fanout.py``), which writes each new batch of
frames to every caught-up viewer in one loop; others sleep on the run's beacon.
"""

import threading
import time

from hermes_web.core.codec import decode_record
from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.read import sse
from hermes_web.read.fanout import Fanout, Subscription
from hermes_web.store.logstore import LogNotFound, StoreUnavailable
from hermes_web.store.metadata import Damaged, NotFound

# Frames read at this many recent offsets of a run are kept for the other viewers there.
SHARED_READS_PER_RUN = 4
# How often a stream retries a shared store that cannot be reached.
STORE_RETRY_SECONDS = 0.5


class Streams:
    """Builds the frame generators; validation happens before, in the web layer."""

    def __init__(self, logs, sessions, redaction, config):
        self.logs = logs
        self.sessions = sessions
        self.redaction = redaction
        self.heartbeat = config.heartbeat_seconds
        self.retry_ms = config.sse_retry_ms
        self._meta_versions = {}
        self._shared = {}  # run_id -> _SharedReads, while someone streams the run
        self._shared_lock = threading.Lock()
        self._live_sessions = {}  # session_id -> {Subscription: None}: session viewers handed over

    def init_app(self, app) -> None:
        from hermes_web.core.services import register

        register(app, "streams", self)

    def note_session_changed(self, session_id: str) -> None:
        """Session metadata changed (rename, title, delete): session streams send a frame."""
        self._bump_metadata(session_id)
        self.logs.notify_session(session_id)

    # ------------------------------------------------------------ run stream

    def run_stream(self, session_id: str, run_id: str, offset: int, direct=None):
        """Frames of one run from ``offset`` through its terminal record. ``direct``: the
        connection's direct writer, when the server offers one (live delivery)."""
        yield sse.retry_frame(self.retry_ms)
        try:
            run_log = self.logs.open(run_id, session_id)  # opened when the response starts
        except LogNotFound:
            return  # compacted meanwhile: a reconnect is told so (410)
        shared = self._share(run_id, run_log)
        try:
            last_sent = time.monotonic()
            while True:
                try:
                    frames, offset, finished = shared.read(self, run_log, offset)
                    if frames:
                        yield frames
                        if finished:
                            return
                        last_sent = time.monotonic()
                        continue
                    handed = None
                    if direct is not None and direct.ready():
                        handed = self._hand_over(shared, run_log, direct, offset, last_sent)
                    if handed is not None:
                        offset, finished, failed, last_sent = handed
                        if finished or failed:
                            return
                        woke = True
                    else:
                        woke = run_log.wait(offset, self.heartbeat)
                except LogNotFound:
                    return  # compacted or deleted meanwhile: the session view shows it
                except StoreUnavailable:
                    # A shared store's outage: keep the viewer and carry on from the same
                    # offset once it answers.
                    time.sleep(STORE_RETRY_SECONDS)
                    woke = False
                if not woke or handed is not None:
                    if time.monotonic() - last_sent >= self.heartbeat:
                        yield sse.PING
                        last_sent = time.monotonic()
        finally:
            self._unshare(run_id)
            run_log.close()

    def _hand_over(self, shared, run_log, direct, offset: int, last_sent: float, session_id: str = None):
        """Let the run's sender write to this caught-up viewer until something needs its
        own loop; ``(offset, finished, failed, last_sent)``, or None when records arrived
        before the hand-over (read them the usual way)."""
        subscription = Subscription(direct, offset, last_sent)
        shared.fanout.subscribe(subscription)
        if session_id is not None:
            self._live_sessions.setdefault(session_id, {})[subscription] = None
        appended = False
        try:
            # Appended between the last read and now? With a shared store this read waits
            # on the network, and the sender may already deliver meanwhile.
            appended = bool(run_log.read(offset, 1))
            if not appended:
                timeout = max(0.0, self.heartbeat - (time.monotonic() - last_sent))
                subscription.event.wait(timeout)
        finally:
            shared.fanout.unsubscribe(subscription)
            if session_id is not None:
                live = self._live_sessions.get(session_id)
                if live is not None:
                    live.pop(subscription, None)
                    if not live:
                        del self._live_sessions[session_id]
        if appended and subscription.offset == offset and not subscription.finished and not subscription.failed:
            return None  # the sender wrote nothing to it: read the new records the usual way
        if subscription.rest and not subscription.failed:
            direct.send_rest(subscription.rest)  # the rest of a batch, within the write deadline
        return subscription.offset, subscription.finished, subscription.failed, subscription.last_sent

    # ------------------------------------------------------------ session stream

    def session_stream(self, session_id: str, run_id, offset: int, run_finished: bool = False, direct=None):
        """Frames of a session: ``run_id`` from ``offset`` (or every run from the first when
        ``run_id`` is None), then each later run as it starts. Never ends by itself except
        when the session is deleted. ``direct`` as for :meth:`run_stream`."""
        watch = self.logs.session_watch(session_id, on_metadata=lambda: self._bump_metadata(session_id))
        meta_version = self._meta_versions.get(session_id, 0)
        sent_meta = None
        run_log = None
        shared = None
        finished = run_finished or run_id is None
        try:
            yield sse.retry_frame(self.retry_ms)
            last_sent = time.monotonic()
            while True:
                watch.mark()
                progressed = False
                try:
                    version = self._meta_versions.get(session_id, 0)
                    if version != meta_version:
                        try:
                            meta = self.sessions.get(session_id)
                        except NotFound:
                            yield sse.event_frame("session.deleted", {"id": session_id})
                            return
                        except Damaged as damaged:
                            meta = damaged.placeholder
                        meta_version = version
                        if meta != sent_meta:  # a local change is also seen by the watcher
                            sent_meta = meta
                            yield sse.event_frame("session.updated", self._outgoing_meta(meta))
                            progressed = True
                    if not finished and run_log is None:
                        try:
                            run_log = self.logs.open(run_id, session_id)
                            shared = self._share(run_id, run_log)
                        except LogNotFound:
                            finished = True  # compacted or deleted meanwhile: go on after it
                    if run_log is not None:
                        try:
                            frames, offset, finished = shared.read(self, run_log, offset)
                        except LogNotFound:
                            frames, finished = b"", True
                        if frames:
                            yield frames
                            progressed = True
                        if finished:
                            run_log.close()
                            self._unshare(run_id)
                            run_log = shared = None
                    if finished:
                        following = self._run_after(session_id, run_id)
                        if following is not None:
                            run_id, offset, finished = following, 0, False
                            progressed = True
                    if progressed:
                        last_sent = time.monotonic()
                        continue
                    if run_log is not None and direct is not None and direct.ready():
                        # While its run is live the sender writes to it; the session's own
                        # news (a rename, a deletion) wakes it through _bump_metadata.
                        handed = self._hand_over(shared, run_log, direct, offset, last_sent, session_id)
                        if handed is not None:
                            offset, run_done, failed, last_sent = handed
                            if failed:
                                return
                            if run_done:  # the sender wrote its terminal record: on to the next run
                                run_log.close()
                                self._unshare(run_id)
                                run_log = shared = None
                                finished = True
                            elif time.monotonic() - last_sent >= self.heartbeat:
                                yield sse.PING
                                last_sent = time.monotonic()
                        continue
                    pause = run_log.settle() if run_log is not None else self.heartbeat
                    woke = watch.wait(min(pause, self.heartbeat))
                except StoreUnavailable:
                    time.sleep(STORE_RETRY_SECONDS)  # a shared store's outage: retry from here
                    woke = False
                if not woke:
                    if time.monotonic() - last_sent >= self.heartbeat:
                        yield sse.PING
                        last_sent = time.monotonic()
        finally:
            if run_log is not None:
                run_log.close()
                self._unshare(run_id)
            watch.close()

    def _bump_metadata(self, session_id: str) -> None:
        self._meta_versions[session_id] = self._meta_versions.get(session_id, 0) + 1
        for subscription in list(self._live_sessions.get(session_id, ())):
            subscription.event.set()  # a viewer handed to a sender has news of its own

    def _outgoing_meta(self, meta: dict) -> dict:
        return self.redaction.value(meta) if self.redaction.on_read else meta

    def _run_after(self, session_id: str, run_id):
        for candidate in self.logs.runs(session_id):
            if run_id is None or candidate > run_id:
                return candidate
        return None

    # ------------------------------------------------------------ shared reads

    def _share(self, run_id: str, run_log) -> "_SharedReads":
        with self._shared_lock:
            shared = self._shared.get(run_id)
            if shared is None:
                session_id = run_log.session_id
                shared = self._shared[run_id] = _SharedReads(Fanout(
                    lambda: self.logs.open(run_id, session_id), self.frames_after, self.heartbeat))
            shared.subscribers += 1
            return shared

    def _unshare(self, run_id: str) -> None:
        with self._shared_lock:
            shared = self._shared.get(run_id)
            if shared is not None:
                shared.subscribers -= 1
                if shared.subscribers <= 0:
                    del self._shared[run_id]

    def frames_after(self, run_log, offset: int):
        """``(frames, offset, finished)`` for the complete records after ``offset``.

        All the records read go out in one write: a viewer that fell behind catches up
        with one send, not one per record. Nothing after a terminal record is read. A
        damaged line (PROTOCOL 1.4) becomes a ``record.damaged`` frame with its cursor.
        """
        frames = []
        run_id = run_log.run_id
        redact = self.redaction.record_line if self.redaction.on_read else None
        for line, end_offset in run_log.read(offset):
            offset = end_offset
            record = decode_record(line)
            if record is None:
                frames.append(sse.damaged_frame(run_id, end_offset, len(line) + 1))
                continue
            kind = record["type"]
            frames.append(sse.record_frame(run_id, end_offset, redact(record) if redact else line, kind))
            if kind in TERMINAL_TYPES:
                return b"".join(frames), offset, True
        return b"".join(frames), offset, False


class _SharedReads:
    """The last few reads of one run, by start offset, shared by its viewers; and the
    run's sender for those that caught up."""

    __slots__ = ("subscribers", "lock", "reads", "fanout")

    def __init__(self, fanout: Fanout):
        self.subscribers = 0
        self.lock = threading.Lock()
        self.reads = {}  # start offset -> (frames, end offset, finished, mark)
        self.fanout = fanout

    def read(self, streams: Streams, run_log, offset: int):
        cached = self.reads.get(offset)
        if cached is not None:
            # What the read saw covers every append before its mark: the viewer's next
            # wait starts from there, as if it had read the log itself.
            run_log.adopt(cached[3])
            return cached[:3]
        mark = run_log.mark()
        result = streams.frames_after(run_log, offset)
        if result[0]:
            with self.lock:
                self.reads[offset] = (*result, mark)
                while len(self.reads) > SHARED_READS_PER_RUN:
                    del self.reads[next(iter(self.reads))]
        return result
