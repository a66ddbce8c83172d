"""Session metadata (PROTOCOL 1.4) as both stores keep it: what "not found" and "damaged"
mean, and how a change is applied."""

import time


class NotFound(LookupError):
    """A session or run does not exist."""


class Damaged(Exception):
    """Session metadata that cannot be read or decoded (PROTOCOL 1.4); ``placeholder`` is
    what the session is shown as: its id, a placeholder title and ``damaged: true``."""

    def __init__(self, session_id: str, reason: str):
        super().__init__(f"session {session_id}: {reason}")
        self.reason = reason
        self.placeholder = {
            "id": session_id, "title": "Unreadable chat", "created_at": 0, "updated_at": 0, "damaged": True,
        }


def updated_meta(read, changes: dict) -> dict:
    """The metadata ``read()`` returns with ``changes`` applied and ``updated_at`` (last
    activity) bumped. Damaged metadata stays as it is (``read`` raises Damaged) unless the
    change names a new title, which rewrites it whole from the placeholder."""
    try:
        meta = read()
    except Damaged as damaged:
        if "title" not in changes:
            raise
        meta = {key: value for key, value in damaged.placeholder.items() if key != "damaged"}
        meta["created_at"] = meta["updated_at"] = time.time()
    meta.update(changes)
    meta["updated_at"] = max(time.time(), meta.get("updated_at", 0))
    return meta


def sort_time(meta: dict) -> float:
    value = meta.get("updated_at")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
