"""Cursor syntax (PROTOCOL 1.2): ``<run_id>:<offset>`` on the wire. Pure parsing only;
whether an offset lies on a line boundary is checked against the journal itself."""

import re

from hermes_web.core.ids import is_valid_id

_OFFSET = re.compile(r"(0|[1-9][0-9]{0,17})")


class CursorError(ValueError):
    """A cursor that cannot be honoured; the message says why."""


def parse_cursor(text: str, default_run_id: str = None):
    """``(run_id, offset)`` from ``run_id:offset`` (or a bare offset when a run is implied)."""
    if not isinstance(text, str) or not text or len(text) > 100:
        raise CursorError("cursor is empty or too long")
    run_id, separator, offset_text = text.rpartition(":")
    if not separator:
        if default_run_id is None:
            raise CursorError("cursor must be <run_id>:<offset>")
        run_id, offset_text = default_run_id, text
    if not is_valid_id(run_id):
        raise CursorError("cursor names an invalid run id")
    if not _OFFSET.fullmatch(offset_text):
        raise CursorError("cursor offset must be a non-negative integer")
    return run_id, int(offset_text)
