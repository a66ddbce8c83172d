"""Wake-ups across servers: one pub/sub subscription per process, fanned out to beacons.

Every script that changes a run publishes one short message on the wake channel in the
same atomic step; this process's one listener turns each into the same in-process beacon
fires the file store's watcher makes, so a thousand viewers on this server cost one
subscription, not a thousand blocking reads. Messages are ``<kind> <origin> <ids...>``:

- ``r <origin> <session_id> <run_id>``: a record was appended; ``e`` the same for a
  terminal record (the run ended);
- ``s <origin> <session_id>``: the session's runs changed (a run started, compaction);
- ``m <origin> <session_id>``: the session's metadata changed (created, renamed, deleted);
- ``c <origin> <run_id> <by>``: someone asked the run's owner to cancel it;
- ``d <origin> <name>``: a Durable Stream (its name percent-encoded) was written,
  closed or deleted.

Pub/sub delivers at most once: while the subscription is down nothing is heard, so after
every (re)subscription every beacon is fired and each waiter reads again. Tailers of other
servers' runs also recheck on their own every REMOTE_LIVENESS_SECONDS.
"""

import logging
import threading
import urllib.parse

import redis

from hermes_web.store.redis.client import KEYS

log = logging.getLogger(__name__)

RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
LISTEN_TIMEOUT_SECONDS = 1.0


def message(kind: str, origin: str, *ids: str) -> bytes:
    return " ".join((kind, origin, *ids)).encode("ascii")


class Notifier:
    """The process's listener on the wake channel."""

    def __init__(self, client, beacons, origin: str):
        self.client = client
        self.beacons = beacons
        self.origin = origin
        self.on_cancel = None  # (run_id, by) -> None: the store routes it to its writer
        self._metadata_callbacks = {}  # session_id -> [callback, ...]
        self._listeners = []  # (kind, session_id, run_id) -> None, for "e" and "m"
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.subscribed = threading.Event()
        self._thread = None

    mode = "redis pub/sub"

    def start(self, wait: float = 2.0) -> None:
        """Subscribe in the background; wait (bounded) for the first subscription."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="redis-wakeups", daemon=True)
            self._thread.start()
        self.subscribed.wait(wait)

    def stop(self) -> None:
        self._stopped.set()

    # ------------------------------------------------------------ registrations

    def watch_metadata(self, session_id: str, callback) -> None:
        with self._lock:
            self._metadata_callbacks.setdefault(session_id, []).append(callback)

    def unwatch_metadata(self, session_id: str, callback) -> None:
        with self._lock:
            callbacks = self._metadata_callbacks.get(session_id)
            if callbacks and callback in callbacks:
                callbacks.remove(callback)
                if not callbacks:
                    del self._metadata_callbacks[session_id]

    def add_listener(self, listener) -> None:
        """Hear runs ending (``"e"``) and metadata changing (``"m"``) on other servers."""
        self._listeners.append(listener)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        pause = RECONNECT_MIN_SECONDS
        while not self._stopped.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(KEYS.channel)
                while not self._stopped.is_set():
                    item = pubsub.get_message(timeout=LISTEN_TIMEOUT_SECONDS)
                    if item is None:
                        continue
                    if item["type"] == "subscribe":
                        # From here on nothing is missed; what came before is read again.
                        self.subscribed.set()
                        pause = RECONNECT_MIN_SECONDS
                        self.beacons.fire_all()
                    elif item["type"] == "message":
                        self._dispatch(item["data"])
            except (redis.RedisError, OSError) as error:
                if self.subscribed.is_set():
                    log.warning("lost the Redis wake-up subscription (%s); reconnecting", type(error).__name__)
                self.subscribed.clear()
            except Exception:  # a bug in a callback must not end every wake-up of the process
                log.exception("wake-up dispatch failed")
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass
            self._stopped.wait(pause)
            pause = min(pause * 2, RECONNECT_MAX_SECONDS)

    def _dispatch(self, data: bytes) -> None:
        parts = data.decode("ascii", "replace").split(" ")
        if len(parts) < 3:
            return
        kind, origin = parts[0], parts[1]
        remote = origin != self.origin
        if kind in ("r", "e") and len(parts) == 4:
            session_id, run_id = parts[2], parts[3]
            if remote:  # this process's own writers fire their beacons themselves
                self.beacons.fire(("run", run_id))
                self.beacons.fire(("session", session_id))
            if kind == "e" and remote:
                self._tell("e", session_id, run_id)
        elif kind == "s":
            self.beacons.fire(("session", parts[2]))
        elif kind == "m":
            session_id = parts[2]
            with self._lock:
                callbacks = list(self._metadata_callbacks.get(session_id, ()))
            for callback in callbacks:
                callback()
            self.beacons.fire(("session", session_id))
            if remote:
                self._tell("m", session_id, None)
        elif kind == "d" and len(parts) == 3 and remote:  # local writers wake their own waiters
            self.beacons.fire(("stream", urllib.parse.unquote(parts[2])))
        elif kind == "c" and len(parts) == 4 and self.on_cancel is not None:
            self.on_cancel(parts[2], parts[3])

    def _tell(self, kind: str, session_id: str, run_id) -> None:
        for listener in self._listeners:
            try:
                listener(kind, session_id, run_id)
            except Exception:
                log.exception("wake-up listener failed")
