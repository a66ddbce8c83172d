"""The server's log: every line goes through the one redactor on its way to stderr.

A provider that echoes the request back in an error puts the server's own API key into an
exception message; a client may put a token into a URL. Neither may reach the log: the
formatter redacts each whole record (message, traceback, access-log line) after formatting
it, and :class:`RedactingStream` does the same for the few writers that bypass logging
(tracebacks the event loop prints itself).
"""

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """A formatter whose output has every secret masked."""

    def __init__(self, redactor, fmt: str = FORMAT):
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


class RedactingStream:
    """A text stream that writes whole lines, redacted, to ``stream``."""

    def __init__(self, stream, redactor):
        self.stream = stream
        self.redactor = redactor
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition("\n")
            self.stream.write(self.redactor.redact(complete + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(self.redactor.redact(self._pending))
            self._pending = ""
        self.stream.flush()


def configure(redactor, level: int = logging.INFO, stream=None) -> logging.Handler:
    """Send every logger's records to ``stream`` (stderr), redacted; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
