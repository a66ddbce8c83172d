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


def new_run_id() -> str:
    """A run id that sorts lexicographically in start order.

    Fixed-width microseconds since the epoch, forced strictly increasing within the
    process, then a random suffix so two processes never collide.
    """
    global _last_run_stamp
    with _run_stamp_lock:
        stamp = max(time.time_ns() // 1000, _last_run_stamp + 1)
        _last_run_stamp = stamp
    return f"{stamp:017d}-{secrets.token_hex(3)}"


def new_call_id() -> str:
    """An id for a tool call within a run."""
    return "call_" + secrets.token_hex(6)
