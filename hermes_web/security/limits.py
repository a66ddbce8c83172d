"""Counting what each client holds: connections, streams, failed logins (PROTOCOL 2.5).

Pure bookkeeping with ordinary locks; the serve entry point and the web layer decide what
a refusal looks like. Defaults and settings are in docs/security.md.
"""

import collections
import ipaddress
import resource
import threading
import time

# File descriptors kept out of the connection budget: journals being written, uploads,
# the inotify watcher, log files, the listening socket.
RESERVED_FILES = 256
# Each stream holds its socket and its journal open; a request holds only its socket.
FILES_PER_STREAM = 2
DEFAULT_MAX_CONNECTIONS = 10_000
# Streams may hold at most this share of all connections: the rest is kept for API
# requests, so a crowd of viewers never locks out sending a message or a cancel.
STREAM_SHARE = 0.875
# Failed-login windows are forgotten past this many clients (oldest first).
MAX_TRACKED_CLIENTS = 100_000


def client_key(address: str) -> str:
    """Who a peer address counts as: the address, or its /64 for IPv6.

    One IPv6 host is routinely given a whole /64 to pick addresses from; counting each
    address apart would let it open 2**64 "clients".
    """
    try:
        parsed = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return address or "-"
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def max_connections(config) -> int:
    """The total connection cap: configured, else what the open-file limit leaves room for."""
    if config.max_connections:
        return config.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, min(DEFAULT_MAX_CONNECTIONS, (soft - RESERVED_FILES) // FILES_PER_STREAM))


def max_streams(config) -> int:
    """Streams across all clients: the connection cap less the room kept for the API."""
    return max(1, int(max_connections(config) * STREAM_SHARE))


class Slots:
    """Counted slots with a cap per client and a cap in total.

    ``acquire`` answers None (granted), ``"client"`` (this client holds its share) or
    ``"total"`` (the server is full); every grant is returned with ``release``.
    """

    def __init__(self, per_client: int, total: int):
        self.per_client = per_client
        self.total = total
        self.held = 0
        self._by_client = {}
        self._lock = threading.Lock()

    def acquire(self, key: str):
        with self._lock:
            held = self._by_client.get(key, 0)
            if held >= self.per_client:
                return "client"
            if self.held >= self.total:
                return "total"
            self._by_client[key] = held + 1
            self.held += 1
            return None

    def release(self, key: str) -> None:
        with self._lock:
            held = self._by_client.get(key, 0)
            if held <= 0:
                return
            self.held -= 1
            if held == 1:
                del self._by_client[key]
            else:
                self._by_client[key] = held - 1

    def held_by(self, key: str) -> int:
        with self._lock:
            return self._by_client.get(key, 0)


class FailureWindow:
    """At most ``attempts`` failures per client in any ``window`` seconds (a sliding window)."""

    def __init__(self, attempts: int, window: float, clock=time.monotonic):
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._failures = collections.OrderedDict()  # key -> deque of failure times
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            failures = self._recent(key, now)
            if failures is None or len(failures) < self.attempts:
                return 0.0
            return max(0.0, failures[0] + self.window - now)

    def record_failure(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            failures = self._recent(key, now)
            if failures is None:
                failures = self._failures[key] = collections.deque(maxlen=self.attempts)
                while len(self._failures) > MAX_TRACKED_CLIENTS:
                    self._failures.popitem(last=False)
            failures.append(now)
            self._failures.move_to_end(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float):
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] + self.window <= now:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures
