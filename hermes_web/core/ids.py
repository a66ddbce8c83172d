"""Identifier rules: every id is server-generated and checked before it touches a path."""

import re
import secrets
import threading
import time

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

_last_run_stamp = 0
_run_stamp_lock = threading.Lock()


def is_valid_id(value) -> bool:
    """True when ``value`` is a string matching ``^[A-Za-z0-9_-]{1,64}$``.

    Checked before any id from a request is joined to a path, which is what keeps
    ``..``, separators and NUL bytes out of the file system layer.
    """
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def new_session_id() -> str:
    """A random session id (hex, so it never starts with ``-`` on a command line)."""
    return secrets.token_hex(8)


# The session id a run id carries: at most this long, so the run id stays within 64.
MAX_CARRIED_SESSION_ID = 64 - len("00000000000000000-000000-")


def new_run_id(session_id: str = None) -> str:
    """A run id that sorts lexicographically in start order, and names its session.

    Fixed-width microseconds since the epoch, forced strictly increasing within the
    process, then a random suffix so two processes never collide, then the session id:
    the id itself is the run -> session index, so any run is located in O(1).
    """
    global _last_run_stamp
    with _run_stamp_lock:
        stamp = max(time.time_ns() // 1000, _last_run_stamp + 1)
        _last_run_stamp = stamp
    run_id = f"{stamp:017d}-{secrets.token_hex(3)}"
    if session_id is not None and is_valid_id(session_id) and len(session_id) <= MAX_CARRIED_SESSION_ID:
        run_id += f"-{session_id}"
    return run_id


def session_of_run(run_id: str):
    """The session id a run id carries, or None (ids made before runs carried it)."""
    if not is_valid_id(run_id):
        return None
    parts = run_id.split("-", 2)
    if len(parts) == 3 and len(parts[0]) == 17 and parts[0].isdigit() and len(parts[1]) == 6 and parts[2]:
        return parts[2]
    return None


def new_call_id() -> str:
    """An id for a tool call within a run."""
    return "call_" + secrets.token_hex(6)
