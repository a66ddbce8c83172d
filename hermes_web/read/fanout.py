"""Live delivery to viewers that have caught up: one sender per run writes each new batch
of frames to every such viewer's socket in one loop.

A thousand viewers of one run would otherwise each be woken for every append, each read
the same bytes and each go through the WSGI write path. Here a caught-up viewer hands its
connection to the run's sender and sleeps until something needs it: the run ended, its
socket could not take a whole batch at once (it falls back to its own, deadline-bounded
write of the rest and reads on from there), a heartbeat is due, or its session changed.
Viewers that are behind (a replay, a slow client) read the journal themselves as before.
"""

import threading
import time

from hermes_web.core.metrics import metrics


class Subscription:
    """One caught-up viewer, handed to a run's sender."""

    __slots__ = ("writer", "offset", "event", "rest", "finished", "failed", "last_sent", "live")

    def __init__(self, writer, offset: int, last_sent: float):
        self.writer = writer  # chunked; try_send(framed) -> unsent rest; send_rest(rest)
        self.offset = offset
        self.live = False
        self.event = threading.Event()
        self.rest = b""  # what the socket did not take: the viewer sends it itself
        self.finished = False
        self.failed = False
        self.last_sent = last_sent


class Fanout:
    """The sender of one run and the viewers it serves."""

    def __init__(self, open_log, frames_after, heartbeat: float):
        self._open_log = open_log  # () -> a RunLog of the run
        self._frames_after = frames_after  # (run_log, offset) -> (frames, offset, finished)
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._subscriptions = {}  # Subscription -> None: an ordered set
        self._sender = None

    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscription.live = True
            self._subscriptions[subscription] = None
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_forever, name="fanout", daemon=True)
                self._sender.start()

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription.live:
                subscription.live = False
                del self._subscriptions[subscription]

    def _release(self, subscription: Subscription) -> None:
        """Hand a viewer back to its own loop (under the lock)."""
        if subscription.live:
            subscription.live = False
            del self._subscriptions[subscription]
        subscription.event.set()

    def _send_forever(self) -> None:
        try:
            run_log = self._open_log()
        except Exception:
            run_log = None
        try:
            while True:
                with self._lock:
                    if not self._subscriptions or run_log is None:
                        for subscription in list(self._subscriptions):
                            self._release(subscription)
                        self._sender = None
                        return
                    groups = {}
                    for subscription in self._subscriptions:
                        groups.setdefault(subscription.offset, []).append(subscription)
                lowest = min(groups)
                delivered = False
                for offset, members in groups.items():
                    frames, end, finished = self._frames_after(run_log, offset)
                    if frames:
                        delivered = True
                        self._deliver(members, frames, end, finished)
                if not delivered:
                    run_log.wait(lowest, self._heartbeat)
        except Exception:
            with self._lock:
                for subscription in list(self._subscriptions):
                    self._release(subscription)
                self._sender = None
        finally:
            if run_log is not None:
                run_log.close()

    def _deliver(self, members, frames: bytes, end: int, finished: bool) -> None:
        now = time.monotonic()
        chunked = None  # the batch as one chunk, framed once for every viewer that needs it
        delivered = 0
        for subscription in members:
            if not subscription.live:
                continue  # its viewer took its connection back meanwhile
            writer = subscription.writer
            data = frames
            if writer.chunked:
                if chunked is None:
                    chunked = b"%x\r\n%s\r\n" % (len(frames), frames)
                data = chunked
            try:
                rest = writer.try_send(data)
            except OSError:
                subscription.failed = True
                rest = b""
            else:
                delivered += 1
            subscription.offset = end
            subscription.last_sent = now
            if rest or finished or subscription.failed:
                subscription.rest = rest
                subscription.finished = finished
                with self._lock:
                    self._release(subscription)
        metrics.sent(frames, delivered)
