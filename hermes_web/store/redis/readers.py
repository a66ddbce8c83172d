"""Readers of the Redis store: a run's stream from a cursor, and a session's wake-ups.

Neither holds a connection of its own: each call borrows one from the store's pool, so a
thousand viewers cost a thousand small objects, not a thousand connections.
"""


from hermes_web.core.codec import decode_record
from hermes_web.store.logstore import (
    OWNER_GONE_RECHECK_SECONDS,
    READ_CHUNK_BYTES,
    REMOTE_LIVENESS_SECONDS,
    LogNotFound,
    StoreUnavailable,
    is_terminal,
    wait_settled,
)
from hermes_web.store.redis.client import KEYS, reaching

# Entries fetched per XRANGE while reading; reads stop once they hold about max_bytes.
READ_BATCH_ENTRIES = 1024


class RedisRunLog:
    """A reader of one run's stream. Holds no connection of its own."""

    def __init__(self, store, session_id: str, run_id: str, nonce):
        self._store = store
        self.session_id = session_id
        self.run_id = run_id
        self.identity = (run_id, nonce)
        self._client = store.client
        self._key = KEYS.log(run_id)
        self._beacon = store.beacons.get(("run", run_id))
        self._seen = self._beacon.generation

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @reaching
    def read(self, after: int, max_bytes: int = READ_CHUNK_BYTES) -> list:
        """Complete records after ``after``; LogNotFound when the run's log was removed
        (compacted or deleted) meanwhile."""
        self._seen = self._beacon.generation
        lines = []
        size = 0
        start = f"({after}-0" if after else "-"
        while True:
            entries = self._client.xrange(self._key, min=start, max="+", count=READ_BATCH_ENTRIES)
            for entry_id, fields in entries:
                line = fields[b"l"]
                end = int(entry_id.split(b"-", 1)[0])
                lines.append((line, end))
                size += len(line) + 1
            if len(entries) < READ_BATCH_ENTRIES or size >= max_bytes:
                break
            start = f"({lines[-1][1]}-0"
        if not lines and not self._client.exists(self._key):
            raise LogNotFound(self.run_id)
        return lines

    def stamp(self):
        """Changes whenever the log's content does. A stream is only ever appended to (and a
        finished one not even that); removing and re-creating it changes its nonce, so the
        identity is the stamp and costs no round trip."""
        return self.identity

    def mark(self):
        return self._beacon.generation

    def adopt(self, mark) -> None:
        if mark > self._seen:
            self._seen = mark

    @reaching
    def raw_tail(self):
        """``(committed, last_record)`` as stored, without settling."""
        pipeline = self._client.pipeline(transaction=False)
        pipeline.hget(KEYS.run(self.run_id), "committed")
        pipeline.xrevrange(self._key, count=1)
        committed, entries = pipeline.execute()
        if committed is None:
            raise LogNotFound(self.run_id)
        last = decode_record(entries[0][1][b"l"]) if entries else None
        return int(committed), last

    def tail(self):
        committed, last = self.raw_tail()
        if not is_terminal(last) and not self._store.is_local(self.run_id) and not self.owner_alive():
            if self.recover() == "recovered":
                committed, last = self.raw_tail()
        return committed, last

    @reaching
    def is_cursor(self, offset: int) -> bool:
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return False
        if offset == 0:
            return True
        return bool(self._client.xrange(self._key, min=f"{offset}-0", max=f"{offset}-0", count=1))

    def owner_alive(self) -> bool:
        return self._store.owner_alive(self.run_id)

    def recover(self) -> str:
        try:
            outcome = self._store.interrupt(self.session_id, self.run_id)
        except StoreUnavailable:
            return "failed"
        return "terminal" if outcome == "missing" else outcome

    def settle(self) -> float:
        if self._store.is_local(self.run_id):
            return float("inf")
        if self.owner_alive():
            return REMOTE_LIVENESS_SECONDS
        committed, last = self.raw_tail()
        if not is_terminal(last):
            self.recover()
        return OWNER_GONE_RECHECK_SECONDS

    def wait(self, after: int, timeout: float) -> bool:
        return wait_settled(self, self._beacon, self._seen, timeout)

    def close(self) -> None:
        pass


class RedisSessionWatch:
    """Wakes a session's tailer on anything any server does to the session; calls
    ``on_metadata`` (before the wake-up) when its metadata changed."""

    def __init__(self, store, session_id: str, on_metadata=None):
        self._store = store
        self._session_id = session_id
        self._on_metadata = on_metadata
        self.beacon = store.beacons.get(("session", session_id))
        if on_metadata is not None:
            store.notifier.watch_metadata(session_id, on_metadata)
        self._seen = self.beacon.generation

    def mark(self) -> None:
        self._seen = self.beacon.generation

    def wait(self, timeout: float) -> bool:
        return self.beacon.wait_past(self._seen, timeout)

    def close(self) -> None:
        if self._on_metadata is not None:
            self._store.notifier.unwatch_metadata(self._session_id, self._on_metadata)
            self._on_metadata = None
