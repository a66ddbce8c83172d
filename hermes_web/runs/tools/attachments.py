"""The session's attachments as tools see them: ``list_attachments`` and ``read_attachment``.

:class:`SessionAttachments` is the only way a tool reaches a file: it knows the attachments
of one session's conversation (by id, from the messages), looks each up in the upload store
and opens its content beneath the upload root. A name or an id from the model is only ever
compared with that list; it never becomes a path.
"""

import io
import os

from hermes_web.runs.tools import ToolError
from hermes_web.store.uploads import UnknownAttachment, public_metadata

# What one read_attachment call returns by default, and at most: about 4k and 16k tokens.
DEFAULT_READ_CHARS = 16_000
MAX_READ_CHARS = 64_000
IMAGE_MIME_PREFIX = "image/"
LISTED_FIELDS = ("id", "name", "mime", "size")


class SessionAttachments:
    """The attachments of one session's conversation, read through the upload store."""

    def __init__(self, uploads, session_id: str, attachment_ids=()):
        self._uploads = uploads
        self._session_id = session_id
        self._ids = list(dict.fromkeys(attachment_ids))  # conversation order, once each

    @classmethod
    def of_conversation(cls, uploads, session_id: str, history, current=()) -> "SessionAttachments":
        """The attachments named by the session's user messages and by the new message."""
        ids = [
            item.get("id")
            for message in history
            if message.get("role") == "user"
            for item in message.get("attachments") or ()
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        ]
        ids += [item.get("id") for item in current if isinstance(item.get("id"), str)]
        return cls(uploads, session_id, ids)

    def list(self) -> list:
        """Metadata of every attachment still stored, in conversation order."""
        found = []
        for attachment_id in self._ids:
            try:
                found.append(public_metadata(self._uploads.get(self._session_id, attachment_id)))
            except UnknownAttachment:
                continue  # deleted since it was sent
        return found

    def find(self, name=None, attachment_id=None) -> dict:
        """One attachment by id or by name (the latest of that name); ToolError otherwise."""
        attachments = self.list()
        if attachment_id is not None:
            match = [item for item in attachments if item["id"] == attachment_id]
        else:
            match = [item for item in attachments if item["name"] == name]
            if not match and isinstance(name, str):
                match = [item for item in attachments if item["name"].casefold() == name.casefold()]
        if not match:
            wanted = f"id {attachment_id!r}" if attachment_id is not None else f"name {name!r}"
            names = ", ".join(item["name"] for item in attachments) or "none"
            raise ToolError(f"no attachment with {wanted} in this conversation (attachments: {names})")
        return match[-1]

    def read_bytes(self, meta: dict, limit: int) -> bytes:
        """Up to ``limit`` bytes of an attachment's content; UnknownAttachment if it is gone."""
        fd = self._uploads.open_blob(self._session_id, self._uploads.get(self._session_id, meta["id"]))
        with os.fdopen(fd, "rb") as handle:
            return handle.read(limit)

    def open_text(self, meta: dict):
        """The attachment's content as UTF-8 text, decoded as it is read."""
        fd = self._uploads.open_blob(self._session_id, self._uploads.get(self._session_id, meta["id"]))
        return io.TextIOWrapper(os.fdopen(fd, "rb"), encoding="utf-8", errors="strict", newline="")


def _listed(meta: dict) -> dict:
    return {key: meta.get(key) for key in LISTED_FIELDS}


class ListAttachments:
    name = "list_attachments"
    description = "List the files attached to this conversation: id, name, type and size of each."
    parameters = {"type": "object", "properties": {}, "additionalProperties": False}

    def run(self, args: dict, context) -> dict:
        return {"attachments": [_listed(meta) for meta in context.attachments.list()]}


class ReadAttachment:
    name = "read_attachment"
    description = (
        "Read a text file attached to this conversation, by name or by id. Long files come in "
        f"parts of up to {DEFAULT_READ_CHARS} characters: ask again with offset set to next_offset."
    )
    parameters = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "the file name, as list_attachments shows it"},
            "id": {"type": "string", "description": "the attachment id (att_...)"},
            "offset": {"type": "integer", "minimum": 0, "description": "characters to skip; default 0"},
            "max_chars": {"type": "integer", "minimum": 1, "maximum": MAX_READ_CHARS,
                          "description": f"at most this many characters; default {DEFAULT_READ_CHARS}"},
        },
        "additionalProperties": False,
    }

    def run(self, args: dict, context) -> dict:
        name, attachment_id = args.get("name"), args.get("id")
        if attachment_id is None and name is None:
            raise ToolError("give the attachment's name or its id")
        for value, field in ((name, "name"), (attachment_id, "id")):
            if value is not None and (not isinstance(value, str) or not value):
                raise ToolError(f"{field} must be a non-empty string")
        offset = _whole_number(args.get("offset", 0), "offset", 0, None)
        limit = _whole_number(args.get("max_chars", DEFAULT_READ_CHARS), "max_chars", 1, MAX_READ_CHARS)
        meta = context.attachments.find(name=name, attachment_id=attachment_id)
        if (meta.get("mime") or "").startswith(IMAGE_MIME_PREFIX):
            seen = ("it was given to you as an image with the message it came in" if context.vision
                    else "this model is not sent images")
            raise ToolError(f"{meta['name']} is an image ({meta['mime']}), not text: {seen}")
        try:
            with context.attachments.open_text(meta) as text:
                skipped = len(text.read(offset)) if offset else 0
                chunk = text.read(limit + 1)
        except UnknownAttachment:
            raise ToolError(f"{meta['name']} is no longer stored") from None
        except UnicodeDecodeError:
            raise ToolError(f"{meta['name']} ({meta['mime']}) is not a UTF-8 text file") from None
        if "\x00" in chunk:
            raise ToolError(f"{meta['name']} ({meta['mime']}) is a binary file, not text")
        truncated = len(chunk) > limit
        chunk = chunk[:limit]
        return dict(
            _listed(meta),
            offset=skipped,
            text=chunk,
            truncated=truncated,
            next_offset=skipped + len(chunk) if truncated else None,
        )


def _whole_number(value, field: str, low: int, high):
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # some models write every number as 10.0
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low}" + (f" to {high}" if high is not None else "")
        raise ToolError(f"{field} must be a whole number {bounds}")
    return value
