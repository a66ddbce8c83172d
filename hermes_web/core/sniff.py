"""Content types from magic bytes, checked against the allow-list of served types.

The type a client declares and the extension of the file name are never trusted on
their own: a ``.png`` that holds HTML must not reach a browser as anything HTML-like.
"""

import codecs
import posixpath

OCTET_STREAM = "application/octet-stream"

# Every type the server ever names in Content-Type. Anything else is served as
# application/octet-stream, which a browser downloads instead of rendering.
ALLOWED_MIME = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
    "text/plain", "text/markdown", "application/json", "text/csv", "application/zip",
    OCTET_STREAM,
})

# Types shown in the browser (with nosniff and a sandboxing CSP); everything else is
# sent with ``Content-Disposition: attachment``.
INLINE_MIME = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
    "text/plain", "text/markdown", "application/json", "text/csv",
})

TEXT_MIME = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})

# How many leading bytes sniffing looks at.
HEAD_BYTES = 1024

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"PK\x07\x08", "application/zip"),
)

_TEXT_BY_EXTENSION = {
    ".txt": "text/plain", ".text": "text/plain", ".log": "text/plain",
    ".md": "text/markdown", ".markdown": "text/markdown",
    ".json": "application/json", ".csv": "text/csv",
}

_BINARY_BY_EXTENSION = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".pdf": "application/pdf", ".zip": "application/zip",
}

# Leading tags for which browsers sniff HTML (WHATWG MIME Sniffing, 7.1), plus XML and
# SVG: text that starts like markup is never given a text type a browser might render.
_MARKUP_PREFIXES = (
    b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div", b"<font",
    b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p", b"<!--", b"<?xml",
    b"<svg", b"<xsl", b"<math", b"<object", b"<embed", b"<meta", b"<link", b"<img", b"<form",
)

# C0 controls that plain text does not contain (tab, LF, FF, CR and ESC are allowed).
_CONTROL_BYTES = bytes(set(range(32)) - {9, 10, 12, 13, 27}) + b"\x7f"


class TextDetector:
    """Fed a file chunk by chunk; tells whether all of it is UTF-8 text without controls."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.is_text = True

    def feed(self, data: bytes) -> None:
        if not self.is_text:
            return
        if data.translate(None, _CONTROL_BYTES) != data:
            self.is_text = False
            return
        try:
            self._decoder.decode(data)
        except UnicodeDecodeError:
            self.is_text = False

    def finish(self) -> bool:
        """True if everything fed was complete UTF-8 text (call once, at the end)."""
        if self.is_text:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.is_text = False
        return self.is_text


def sniff_mime(head: bytes, is_text: bool, name: str = "") -> str:
    """The allow-listed type of content starting with ``head``.

    ``is_text`` says whether the whole content is UTF-8 text; ``name`` (display name,
    never a path) only picks between the text types, never makes bytes "text".
    """
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if not is_text:
        return OCTET_STREAM
    if looks_like_markup(head):
        return OCTET_STREAM
    return _TEXT_BY_EXTENSION.get(_extension(name), "text/plain")


def looks_like_markup(head: bytes) -> bool:
    """True when a browser ignoring the declared type could take ``head`` for HTML/XML/SVG."""
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\n\r\x0c").lower()
    for prefix in _MARKUP_PREFIXES:
        if stripped.startswith(prefix):
            rest = stripped[len(prefix):len(prefix) + 1]
            if prefix in (b"<!--", b"<?xml") or rest in (b"", b" ", b">", b"\t", b"\n", b"\r", b"\x0c", b"/"):
                return True
    return False


def mime_from_name(name: str) -> str:
    """An allow-listed guess from a file name alone (for chips of legacy markers)."""
    extension = _extension(name)
    return _BINARY_BY_EXTENSION.get(extension) or _TEXT_BY_EXTENSION.get(extension) or OCTET_STREAM


def served_content_type(mime: str) -> str:
    """The Content-Type header for a stored type; unknown types degrade to octet-stream."""
    if mime not in ALLOWED_MIME:
        mime = OCTET_STREAM
    if mime.startswith("text/"):
        return f"{mime}; charset=utf-8"
    return mime


def is_inline(mime: str) -> bool:
    return mime in INLINE_MIME


def _extension(name: str) -> str:
    return posixpath.splitext((name or "").lower())[1]
