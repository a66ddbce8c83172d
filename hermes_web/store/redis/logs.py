"""The Redis log store: one stream per run, shared by every server (PROTOCOL 1.5).

Each record is one stream entry whose id is ``<end offset>-0``: the byte offset at which
its JSONL line would end, so cursors are the file store's, a cursor is valid iff an entry
has that id (or it is 0), and reading after a cursor is ``XRANGE (<offset>-0 +``. The entry
holds the exact encoded line, so exporting a run reproduces its journal byte for byte.

Ownership is a lease: a key holding the owner's token with a TTL, renewed by the owner's
:class:`~hermes_web.store.redis.leases.LeaseKeeper`. Appends, creation and the ending of a
dead owner's run are Lua scripts (``scripts.py``), each one atomic step that checks the
offset, the lease and that the run has not ended. Wake-ups travel over one pub/sub channel
(``notifier.py``) and fire this process's beacons, as the file store's watcher does.
Readers (``readers.py``) range-read the stream and wait on those beacons.
"""

import contextlib
import gzip
import secrets
import threading
import time

import redis

from hermes_web.core.codec import encode_record
from hermes_web.core.ids import is_valid_id, session_of_run
from hermes_web.store.logstore import LogExists, LogNotFound, OwnershipLost, StoreUnavailable, is_terminal
from hermes_web.store.redis import scripts
from hermes_web.store.redis.client import KEYS, is_unavailable, reaching, unavailable
from hermes_web.store.redis.leases import LeaseKeeper
from hermes_web.store.redis.notifier import Notifier, message
from hermes_web.store.redis.readers import RedisRunLog, RedisSessionWatch
from hermes_web.store.wakeup import Beacons

# A tailer's view of whether another server's lease lives is reused this long: a thousand
# viewers of one run make one EXISTS per period, not one per wake-up.
LIVENESS_CACHE_SECONDS = 0.25
SESSION_LOCK_SECONDS = 60.0
SESSION_LOCK_WAIT_SECONDS = 30.0
CANCEL_REQUEST_SECONDS = 3600


class RedisLogStore:
    """Run logs in Redis streams (PROTOCOL 1.5), shared by every server on that Redis."""

    def __init__(self, client, durability, lease_seconds: float = 10.0, beacons: Beacons = None):
        self.client = client
        self.durability = durability  # its policy is checked against Redis's (durability.py)
        self.lease_seconds = lease_seconds
        self.beacons = beacons or Beacons()
        # Distinguishes this process's messages on the wake channel from other servers'.
        self.origin = secrets.token_hex(6)
        self.notifier = Notifier(client, self.beacons, self.origin)
        self.notifier.on_cancel = self._cancel_requested
        self.watcher = self.notifier  # what ``serve`` reports as the wake-up mechanism
        self.leases = LeaseKeeper(self, lease_seconds)
        self._writers = {}  # run_id -> RedisRunWriter of this process
        self._lock = threading.Lock()
        self._liveness = {}  # run_id -> (checked_at, alive)
        self._create = client.register_script(scripts.CREATE)
        self._append = client.register_script(scripts.APPEND)
        self._interrupt = client.register_script(scripts.INTERRUPT)
        self._release = client.register_script(scripts.RELEASE)
        self._request_cancel = client.register_script(scripts.REQUEST_CANCEL)
        self.renew = client.register_script(scripts.RENEW)

    def start(self) -> "RedisLogStore":
        """Start this server's wake-up listener and lease keeper (not needed by the CLI)."""
        self.notifier.start()
        self.leases.start()
        return self

    def stop(self) -> None:
        self.leases.stop()
        self.notifier.stop()

    # ------------------------------------------------------------ lookups

    @reaching
    def locate(self, run_id: str):
        session_id = session_of_run(run_id)
        if session_id is not None:
            return session_id
        if not is_valid_id(run_id):
            return None
        target = self.client.hget(KEYS.run_sessions, run_id)
        target = target.decode() if target else None
        return target if is_valid_id(target) else None

    @reaching
    def runs(self, session_id: str) -> list:
        return [run_id.decode() for run_id in self.client.zrange(KEYS.session_runs(session_id), 0, -1)]

    def is_local(self, run_id: str) -> bool:
        return run_id in self._writers

    @reaching
    def open(self, run_id: str, session_id: str = None) -> RedisRunLog:
        session_id = session_id or self.locate(run_id)
        if session_id is None:
            raise LogNotFound(run_id)
        stored_session, nonce = self.client.hmget(KEYS.run(run_id), "session", "nonce")
        if stored_session is None or stored_session.decode() != session_id:
            raise LogNotFound(run_id)
        return RedisRunLog(self, session_id, run_id, nonce)

    @reaching
    def archived_journal(self, session_id: str, run_id: str):
        """The journal compaction archived for a removed run, or None (none was kept)."""
        data = self.client.hget(KEYS.archive(session_id), run_id)
        return gzip.decompress(data) if data is not None else None

    # ------------------------------------------------------------ writing

    @reaching
    def create(self, session_id: str, run_id: str, first_record: dict) -> "RedisRunWriter":
        line = encode_record(first_record)[:-1]
        token = secrets.token_hex(12)
        carries = "1" if session_of_run(run_id) == session_id else "0"
        offset = self._create(
            keys=[KEYS.run(run_id), KEYS.log(run_id), KEYS.lease(run_id), KEYS.unfinished,
                  KEYS.session_runs(session_id), KEYS.run_sessions],
            args=[run_id, session_id, token, line, self._lease_ms(), secrets.token_hex(8), KEYS.channel,
                  message("s", self.origin, session_id), carries])
        if not offset:
            raise LogExists(run_id)
        writer = RedisRunWriter(self, session_id, run_id, token, int(offset))
        with self._lock:
            self._writers[run_id] = writer
        self.leases.start()
        self.beacons.fire(("session", session_id))
        return writer

    def _lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    def _closed(self, writer: "RedisRunWriter") -> None:
        with self._lock:
            if self._writers.get(writer.run_id) is writer:
                del self._writers[writer.run_id]

    def local_writers(self) -> list:
        with self._lock:
            return list(self._writers.values())

    @contextlib.contextmanager
    def session_lock(self, session_id: str):
        """A Redis lock with a timeout (a holder that dies frees it when it expires);
        StoreUnavailable when it cannot be had within SESSION_LOCK_WAIT_SECONDS."""
        lock = self.client.lock(KEYS.session_lock(session_id), timeout=SESSION_LOCK_SECONDS, sleep=0.005,
                                blocking_timeout=SESSION_LOCK_WAIT_SECONDS, thread_local=False)
        try:
            acquired = lock.acquire()
        except redis.RedisError as error:
            raise (unavailable(error) if is_unavailable(error) else error) from None
        if not acquired:
            raise StoreUnavailable(f"session {session_id} stayed locked by another server")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # it expired: a held lock outlived its timeout
            except redis.RedisError as error:
                if not is_unavailable(error):
                    raise  # unreachable Redis: the lock expires by itself

    # ------------------------------------------------------------ recovery

    @reaching
    def unfinished(self):
        for run_id, session_id in self.client.hgetall(KEYS.unfinished).items():
            run_id, session_id = run_id.decode(), session_id.decode()
            if is_valid_id(run_id) and is_valid_id(session_id):
                yield session_id, run_id

    def recover_unfinished(self) -> int:
        """End every unfinished run whose owner's lease lapsed."""
        recovered = 0
        for session_id, run_id in list(self.unfinished()):
            if self.is_local(run_id):
                continue
            if self.interrupt(session_id, run_id) == "recovered":
                recovered += 1
        return recovered

    @reaching
    def interrupt(self, session_id: str, run_id: str, reason: str = "process died") -> str:
        """Append ``run.interrupted`` if the run's lease is gone and it has not ended:
        ``"recovered"``, ``"terminal"``, ``"locked"`` (its owner lives) or ``"missing"``."""
        line = encode_record({"type": "run.interrupted", "ts": time.time(), "reason": reason})[:-1]
        outcome = self._interrupt(
            keys=[KEYS.run(run_id), KEYS.log(run_id), KEYS.lease(run_id), KEYS.unfinished],
            args=[line, KEYS.channel, message("e", "-", session_id, run_id), run_id]).decode()
        if outcome == "recovered":
            # The message is for other servers; this one's tailers are woken here.
            self.beacons.fire(("run", run_id))
            self.beacons.fire(("session", session_id))
        if outcome != "locked":
            self._liveness.pop(run_id, None)
        return outcome

    def owner_alive(self, run_id: str) -> bool:
        """The lease lives (cached for LIVENESS_CACHE_SECONDS)."""
        if run_id in self._writers:
            return True
        now = time.monotonic()
        cached = self._liveness.get(run_id)
        if cached is not None and now - cached[0] < LIVENESS_CACHE_SECONDS:
            return cached[1]
        alive = self._lease_exists(run_id)
        self._liveness[run_id] = (now, alive)
        if len(self._liveness) > 100_000:
            self._liveness.clear()
        return alive

    @reaching
    def _lease_exists(self, run_id: str) -> bool:
        return bool(self.client.exists(KEYS.lease(run_id)))

    # ------------------------------------------------------------ deletion

    @reaching
    def delete_session(self, session_id: str, run_ids=()) -> None:
        run_ids = set(self.runs(session_id)) | set(run_ids)
        pipeline = self.client.pipeline(transaction=True)
        for run_id in run_ids:
            pipeline.delete(KEYS.run(run_id), KEYS.log(run_id), KEYS.lease(run_id), KEYS.cancel(run_id))
            pipeline.hdel(KEYS.unfinished, run_id)
            pipeline.hdel(KEYS.run_sessions, run_id)
        pipeline.delete(KEYS.session_runs(session_id))
        pipeline.publish(KEYS.channel, message("s", self.origin, session_id))
        pipeline.execute()

    # ------------------------------------------------------------ cancel

    @reaching
    def request_cancel(self, run_id: str, by: str) -> bool:
        """Leave a cancel request its owner hears at once (pub/sub) or at its next lease
        renewal at the latest (the request key)."""
        by = by if is_valid_id(by) else "user"
        return bool(self._request_cancel(
            keys=[KEYS.run(run_id), KEYS.cancel(run_id)],
            args=[by, KEYS.channel, message("c", self.origin, run_id, by), CANCEL_REQUEST_SECONDS]))

    def _cancel_requested(self, run_id: str, by: str) -> None:
        writer = self._writers.get(run_id)
        if writer is not None and writer.on_cancel is not None:
            writer.on_cancel(by)

    # ------------------------------------------------------------ wake-ups

    def session_watch(self, session_id: str, on_metadata=None) -> RedisSessionWatch:
        return RedisSessionWatch(self, session_id, on_metadata)

    def notify_session(self, session_id: str) -> None:
        self.beacons.fire(("session", session_id))
        try:
            self.client.publish(KEYS.channel, message("s", self.origin, session_id))
        except redis.RedisError as error:
            if not is_unavailable(error):
                raise  # other servers' session streams recheck on their own


class RedisRunWriter:
    """The owner of one run's stream: appends under its lease, wakes its readers."""

    on_cancel = None

    def __init__(self, store: RedisLogStore, session_id: str, run_id: str, token: str, offset: int):
        self._store = store
        self.session_id = session_id
        self.run_id = run_id
        self.token = token
        self.offset = offset
        self.lost = False  # set by the lease keeper when another server ended the run
        self._keys = [KEYS.run(run_id), KEYS.log(run_id), KEYS.lease(run_id), KEYS.unfinished]
        self._run_key = ("run", run_id)
        self._session_key = ("session", session_id)

    def append(self, record: dict, durable: bool = False) -> int:
        """Append one record. A lost connection is retried (the script recognises its own
        earlier success) for up to the lease period, then StoreUnavailable."""
        line = encode_record(record)[:-1]
        terminal = is_terminal(record)
        notice = message("e" if terminal else "r", self._store.origin, self.session_id, self.run_id)
        args = [self.token, self.offset, line, record["type"], "1" if terminal else "0",
                self._store._lease_ms(), KEYS.channel, notice, self.run_id]
        deadline = time.monotonic() + self._store.lease_seconds
        pause = 0.05
        while True:
            try:
                outcome, value = self._store._append(keys=self._keys, args=args)
                break
            except redis.RedisError as error:
                if not is_unavailable(error) or time.monotonic() + pause > deadline:
                    raise (unavailable(error) if is_unavailable(error) else error) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        outcome = outcome.decode()
        if outcome != "ok":
            self.lost = True
            raise OwnershipLost(f"run {self.run_id}: cannot append ({outcome} at offset {int(value)})")
        self.offset = int(value)
        beacons = self._store.beacons
        beacons.fire(self._run_key)
        beacons.fire(self._session_key)
        return self.offset

    def close(self) -> None:
        """Give up the lease. Never raises: an unreachable Redis lets it expire."""
        self._store._closed(self)
        try:
            self._store._release(keys=[KEYS.lease(self.run_id)], args=[self.token])
        except redis.RedisError:
            pass
