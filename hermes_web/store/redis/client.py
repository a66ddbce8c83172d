"""The Redis connection of a process: one bounded pool, short timeouts, one key layout, and
the one translation of "Redis cannot be reached" into :class:`StoreUnavailable`.

Every request that touches Redis borrows a connection from a blocking pool (at most
``MAX_CONNECTIONS``; a request that cannot get one within ``POOL_WAIT_SECONDS`` fails), and
every command has a socket timeout, so a lost or frozen Redis turns into a prompt 503, never
a hang. redis-py uses the standard ``socket`` module, so under the server's gevent
monkey-patching every wait on Redis blocks only its own greenlet.
"""

import functools
import inspect

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from hermes_web.store.logstore import StoreUnavailable

MAX_CONNECTIONS = 64
POOL_WAIT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 3.0
# One quick retry covers a connection the server closed while it sat idle in the pool.
RETRIES = 1

# What "Redis cannot serve this right now" looks like: refused or lost connections,
# timeouts, a server still loading its data after a restart, a replica that is read-only
# after a failover, a server out of memory or unable to persist (MISCONF).
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError,
)
_UNAVAILABLE_REPLIES = ("MISCONF", "NOREPLICAS", "LOADING", "MASTERDOWN")


def connect(url: str) -> redis.Redis:
    """A client of the Redis at ``url`` (redis://host:port/db, rediss://, unix://)."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES),
    )
    return redis.Redis(connection_pool=pool)


def is_unavailable(error: Exception) -> bool:
    """True for an error that means Redis cannot be reached or cannot serve now."""
    if isinstance(error, _UNAVAILABLE):
        return True
    return isinstance(error, redis.exceptions.ResponseError) and str(error).startswith(_UNAVAILABLE_REPLIES)


def unavailable(error: Exception) -> StoreUnavailable:
    # The message names no host: it ends up in API errors, and the URL may carry a password.
    return StoreUnavailable(f"the shared store (Redis) cannot be reached: {type(error).__name__}")


def reaching(function):
    """Decorate a store method: a Redis that cannot be reached raises StoreUnavailable
    (generators too)."""
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except redis.exceptions.RedisError as error:
                if is_unavailable(error):
                    raise unavailable(error) from None
                raise
        return generator

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except redis.exceptions.RedisError as error:
            if is_unavailable(error):
                raise unavailable(error) from None
            raise
    return wrapper


class Keys:
    """The key layout (docs/redis.md). Ids are validated before they get here."""

    prefix = "hermes:"
    channel = prefix + "wake"  # the one pub/sub channel of wake-ups and cancel requests
    unfinished = prefix + "unfinished"  # hash run_id -> session_id of runs not yet ended
    run_sessions = prefix + "run-sessions"  # hash run_id -> session_id for ids not carrying it
    sessions = prefix + "sessions"  # sorted set of session ids by last activity
    archived = prefix + "archived"  # sorted set "<session_id>/<run_id>" by archive time
    compaction_lock = prefix + "compaction-lock"
    # The login state (docs/security.md), the same for every server.
    password = prefix + "auth:password"  # string: the scrypt hash
    signing_key = prefix + "auth:signing-key"  # string: the bytes that sign login cookies
    tokens = prefix + "auth:tokens"  # hash token sha256 -> name (the per-request lookup)
    token_names = prefix + "auth:token-names"  # hash name -> {"sha256", "created_at"} JSON

    def run(self, run_id: str) -> str:
        """Hash: session, committed offset, terminal type ("" while running), nonce."""
        return f"{self.prefix}run:{run_id}"

    def log(self, run_id: str) -> str:
        """Stream: one entry per record, id ``<end offset>-0``, field ``l`` = the line."""
        return f"{self.prefix}run:{run_id}:log"

    def lease(self, run_id: str) -> str:
        """String with a TTL: the owner's token while the owner lives."""
        return f"{self.prefix}run:{run_id}:lease"

    def cancel(self, run_id: str) -> str:
        """String: who asked the run's owner to cancel it."""
        return f"{self.prefix}run:{run_id}:cancel"

    def session(self, session_id: str) -> str:
        """String: the session's metadata JSON."""
        return f"{self.prefix}session:{session_id}"

    def session_runs(self, session_id: str) -> str:
        """Sorted set (all scores 0, so in id order): runs of the session with a log."""
        return f"{self.prefix}session:{session_id}:runs"

    def session_lock(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}:lock"

    def transcript(self, session_id: str) -> str:
        """String: the transcript's JSONL bytes."""
        return f"{self.prefix}session:{session_id}:transcript"

    def transcript_version(self, session_id: str) -> str:
        """Counter bumped by every transcript change (readers' cache key)."""
        return f"{self.prefix}session:{session_id}:transcript-version"

    def ended_login(self, login_id: str) -> str:
        """String expiring with the cookie: that login was logged out."""
        return f"{self.prefix}auth:ended:{login_id}"

    def login_failures(self, client: str) -> str:
        """Sorted set of one client's failed logins (Redis time, ms), expiring with the window."""
        return f"{self.prefix}auth:failures:{client}"

    def archive(self, session_id: str) -> str:
        """Hash run_id -> the gzipped journal of a compacted run (``compact --archive``)."""
        return f"{self.prefix}session:{session_id}:archive"


KEYS = Keys()
