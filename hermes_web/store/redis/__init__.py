"""The Redis store: run logs, session metadata, transcripts and locks in one Redis shared
by several ``hermes-web serve`` processes (``HERMES_WEB_STORE=redis://host:port/db``).

``logs.py`` is the log store (PROTOCOL 1.5), ``metadata.py`` the session and transcript
stores, ``auth.py`` the login state, ``leases.py`` ownership, ``notifier.py`` wake-ups
across servers (compaction is ``hermes_web.compaction.redis``). docs/redis.md is the
deployment guide.
"""

import dataclasses
import logging

from hermes_web.store.redis.auth import RedisAuthState, RedisFailureWindow
from hermes_web.store.redis.client import connect, is_unavailable
from hermes_web.store.redis.logs import RedisLogStore
from hermes_web.store.redis.metadata import RedisSessionStore, RedisTranscriptStore

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RedisStores:
    """The stores of one process, over one connection pool."""

    logs: RedisLogStore
    metadata: RedisSessionStore
    transcripts: RedisTranscriptStore
    auth: RedisAuthState
    login_failures: RedisFailureWindow


def open_stores(config, durability, beacons=None) -> RedisStores:
    """The stores of the Redis at ``config.store_url`` (nothing is contacted yet)."""
    client = connect(config.store_url)
    logs = RedisLogStore(client, durability, config.redis_lease_seconds, beacons)
    return RedisStores(logs, RedisSessionStore(client, logs.origin), RedisTranscriptStore(client),
                       RedisAuthState(client), login_failures(client, config))


def open_auth_state(config) -> RedisAuthState:
    """The login state alone, for the command line (nothing is contacted yet)."""
    return RedisAuthState(connect(config.store_url))


def login_failures(client, config) -> RedisFailureWindow:
    """Failed logins counted across every server, with the limits of ``config``."""
    return RedisFailureWindow(client, config.login_attempts, config.login_window_seconds)


def durability_warnings(client, policy: str) -> list:
    """How Redis's settings fall short of ``HERMES_WEB_FSYNC`` (docs/redis.md): ``record``
    needs ``appendfsync always``; ``interval`` and ``terminal`` an append-only file synced
    at least every second; and Redis must never evict keys to make room."""
    import redis

    try:
        settings = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy"):
            settings.update({_text(key): _text(value) for key, value in client.config_get(name).items()})
    except redis.RedisError as error:
        if is_unavailable(error):
            return ["Redis cannot be reached yet: its persistence settings were not checked"]
        return ["Redis does not let CONFIG GET show its persistence settings: check them by hand (docs/redis.md)"]
    warnings = []
    if settings.get("maxmemory-policy", "noeviction") != "noeviction":
        warnings.append(f"Redis has maxmemory-policy {settings['maxmemory-policy']}: it may evict run logs and "
                        "sessions when memory is full; set maxmemory-policy noeviction (writes then fail with 503)")
    fsync = settings.get("appendfsync")
    if settings.get("appendonly") != "yes":
        warnings.append("Redis keeps no append-only file (appendonly no): a Redis restart loses every record "
                        "since its last snapshot; set appendonly yes (docs/redis.md)")
    elif policy == "record" and fsync != "always":
        warnings.append(f"HERMES_WEB_FSYNC=record asks for every record on disk, but Redis has appendfsync {fsync}: "
                        "set appendfsync always, or HERMES_WEB_FSYNC=interval")
    elif fsync == "no":
        warnings.append("Redis has appendfsync no: the OS decides when records reach the disk (about 30 s); "
                        "set appendfsync everysec or always")
    return warnings


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
