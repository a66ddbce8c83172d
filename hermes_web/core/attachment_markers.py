"""Legacy ``[Attached files: /abs/path, ...]`` markers in user text.

Older transcripts written by other tools name their attachments only this way. The fold
turns each named file into an attachment chip served by the compatibility route
(``/api/file/raw``), and that route serves a path only if a marker of the same session
names it (PROTOCOL 2). Pure functions.
"""

import posixpath
import re
import urllib.parse

from hermes_web.core.sniff import mime_from_name

MARKER_PATTERN = re.compile(r"\[Attached files: ([^\]\n]*)\]")


def attached_file_paths(text) -> list:
    """The absolute paths named by every marker in ``text``, in order, without duplicates."""
    if not isinstance(text, str) or "[Attached files:" not in text:
        return []
    paths = []
    for match in MARKER_PATTERN.finditer(text):
        for raw in match.group(1).split(","):
            path = raw.strip()
            if path.startswith("/") and path not in paths:
                paths.append(path)
    return paths


def raw_file_url(session_id: str, path: str) -> str:
    query = urllib.parse.urlencode({"session_id": session_id, "path": path}, quote_via=urllib.parse.quote)
    return f"/api/file/raw?{query}"


def legacy_attachment_chips(session_id: str, text) -> list:
    """Attachment entries (``id`` and ``size`` null) for the files a marker names."""
    chips = []
    for path in attached_file_paths(text):
        name = posixpath.basename(path.rstrip("/")) or path
        chips.append({
            "id": None,
            "name": name,
            "mime": mime_from_name(name),
            "size": None,
            "url": raw_file_url(session_id, path),
        })
    return chips
