"""When appended records reach stable storage (PROTOCOL 1.3): the fsync policy both stores
share, and the background flusher of the ``interval`` policy."""

import threading
import time

from hermes_web.core.metrics import metrics


class Durability:
    """When appended records reach stable storage (PROTOCOL 1.3).

    ``record``: fsync after every append. ``interval``: a background flusher fsyncs every
    dirty journal once per interval (group commit). ``terminal``: only the records that
    must be durable. A writer is anything with ``sync()`` (a journal's, a Redis log's).
    ``offload(fn, *args)`` runs the fsync; the serve entry point passes
    one that runs it in a native thread so it never blocks the event loop.
    """

    def __init__(self, policy: str = "interval", interval: float = 0.2, offload=None):
        self.policy = policy
        self.interval = interval
        self.offload = offload or (lambda fn, *args: fn(*args))
        self._dirty = set()
        self._lock = threading.Lock()
        self._flusher = None
        self._stopped = False

    def after_append(self, writer, durable: bool) -> None:
        if durable or self.policy == "record":
            _timed_sync(writer)
        elif self.policy == "interval":
            with self._lock:
                self._dirty.add(writer)
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_forever, name="journal-fsync", daemon=True)
                    self._flusher.start()

    def forget(self, writer) -> None:
        with self._lock:
            self._dirty.discard(writer)

    def flush(self) -> None:
        """Fsync every journal written since the last flush (one fsync each)."""
        with self._lock:
            writers, self._dirty = self._dirty, set()
        for writer in writers:
            _timed_sync(writer)

    def stop(self) -> None:
        self._stopped = True
        self.flush()

    def _flush_forever(self) -> None:
        while not self._stopped:
            time.sleep(self.interval)
            try:
                self.flush()
            except OSError:
                pass  # a failing disk surfaces on the next durable append


def _timed_sync(writer) -> None:
    started = time.perf_counter()
    writer.sync()
    metrics.synced(time.perf_counter() - started)
