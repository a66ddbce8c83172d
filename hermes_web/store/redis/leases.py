"""Leases: the owner renews its runs' leases; every server ends runs whose lease lapsed.

A lease is a key with a TTL (``lease_seconds``) that holds the owning writer's token. The
keeper renews every local writer's lease three times per period, in one pipelined round
trip, and hears pending cancel requests on the way (a request whose pub/sub message was
missed is acted on at the next renewal). Once per period it also looks at the unfinished
runs of every server and ends, with one atomic script each, those whose lease is gone:
a run whose server was killed is finished within about two periods even if nobody views it.
"""

import logging
import threading

import redis

from hermes_web.store.logstore import StoreUnavailable
from hermes_web.store.redis.client import KEYS, is_unavailable

log = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    """The background thread of one process's store."""

    def __init__(self, store, lease_seconds: float):
        self.store = store
        self.lease_seconds = lease_seconds
        self._stopped = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="redis-leases", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        interval = self.lease_seconds / RENEWALS_PER_LEASE
        beat = 0
        while not self._stopped.wait(interval):
            beat += 1
            try:
                self.renew()
                if beat % RENEWALS_PER_LEASE == 0:
                    self.store.recover_unfinished()
            except StoreUnavailable:
                continue  # renewal resumes with Redis; a lapsed lease is taken back if nobody ended the run
            except redis.RedisError as error:
                if not is_unavailable(error):
                    log.exception("lease renewal failed")
            except Exception:
                log.exception("lease renewal failed")

    def renew(self) -> None:
        """Renew every local writer's lease in one round trip; deliver cancel requests."""
        writers = self.store.local_writers()
        if not writers:
            return
        pipeline = self.store.client.pipeline(transaction=False)
        lease_ms = int(self.lease_seconds * 1000)
        for writer in writers:
            self.store.renew(keys=[KEYS.lease(writer.run_id), KEYS.run(writer.run_id), KEYS.cancel(writer.run_id)],
                             args=[writer.token, lease_ms], client=pipeline)
        try:
            results = pipeline.execute()
        except redis.RedisError as error:
            if is_unavailable(error):
                raise StoreUnavailable(str(error)) from None
            raise
        for writer, result in zip(writers, results):
            outcome = result[0].decode()
            if outcome == "cancel" and writer.on_cancel is not None:
                writer.on_cancel(result[1].decode())
            elif outcome in ("ended", "lost", "missing"):
                writer.lost = True
