"""Where the one redactor meets journal records (PROTOCOL 2.4).

At rest (the default) every record is redacted on its way into the journal, so the file,
every stream, view and transcript carry masked text. With ``HERMES_WEB_REDACT_AT_REST=0``
records are written raw and redacted on their way out instead. A secret split across
deltas cannot be recognised one raw record at a time, so in that mode each raw delta also
carries ``text_redacted``: what the streaming redactor released for it, which is what a
stream sends as its ``text``.
"""


from hermes_web.core.codec import decode_record, encode_record

STREAMED_TYPES = ("text.delta", "reasoning.delta", "tool.output")
# Structural fields never carry user or model text; leaving them alone keeps ids intact.
STRUCTURAL_FIELDS = frozenset({"type", "ts", "run_id", "session_id", "call_id", "duration_ms", "is_error",
                               "approval_id", "question_id", "by"})
REDACTED_TEXT_FIELD = "text_redacted"


class RecordRedaction:
    """Redaction policy for a server: what happens on write and on read."""

    def __init__(self, redactor, at_rest: bool = True):
        self.redactor = redactor
        self.at_rest = at_rest

    def for_run(self) -> "RunRedaction":
        """A per-run filter for the writer."""
        return RunRedaction(self.redactor, keep_raw=not self.at_rest)

    @property
    def on_read(self) -> bool:
        """True when responses must be redacted as they are read (raw journals)."""
        return not self.at_rest

    def record(self, record: dict) -> dict:
        """One record with every payload string redacted."""
        return redact_record(self.redactor, record)

    def line(self, line: bytes) -> bytes:
        """A raw journal line (no newline) redacted for a response. A damaged line is
        redacted as the text it holds."""
        record = decode_record(line)
        if record is None:
            return self.text(line.decode("utf-8", "replace")).encode("utf-8", "replace")
        return self.record_line(record)

    def record_line(self, record: dict) -> bytes:
        """A raw record, decoded, as the redacted line (no newline) a response carries."""
        if REDACTED_TEXT_FIELD in record:
            record = dict(record)
            record["text"] = record.pop(REDACTED_TEXT_FIELD)
        return encode_record(self.record(record))[:-1]

    def text(self, text: str) -> str:
        return self.redactor.redact(text)

    def value(self, value):
        return self.redactor.redact_value(value)


def redact_record(redactor, record: dict) -> dict:
    payload = {key: value for key, value in record.items() if key not in STRUCTURAL_FIELDS}
    redacted = redactor.redact_value(payload)
    return {key: (redacted[key] if key in redacted else value) for key, value in record.items()}


class RunRedaction:
    """Redacts one run's records in write order.

    Deltas go through a streaming redactor per stream (text, reasoning, each tool's
    output), so a secret split across deltas is still masked; text that could still turn
    into a secret is held back until the next delta of the same stream, and any other
    record first releases everything held, so order is never changed.
    """

    def __init__(self, redactor, keep_raw: bool = False):
        self._redactor = redactor
        self._keep_raw = keep_raw
        # Any record but the next delta of the same stream releases what a stream holds, so
        # at most one stream is open: its type and call_id, redactor and template record.
        self._kind = self._call_id = None
        self._stream = None
        self._feed = None  # the open stream's feed
        self._template = None

    def process(self, record: dict) -> list:
        kind = record.get("type")
        if kind not in STREAMED_TYPES:
            return self._release() + [record if self._keep_raw else redact_record(self._redactor, record)]
        call_id = record.get("call_id")
        released = [] if kind == self._kind and call_id == self._call_id else self._open(kind, call_id, record)
        raw = record.get("text") or ""
        text = self._feed(raw)
        if self._keep_raw:
            released.append(dict(record, **{REDACTED_TEXT_FIELD: text}))
        elif text:  # the record as it came when nothing was masked or held back
            released.append(record if text == raw else dict(record, text=text))
        return released

    def finish(self) -> list:
        """Release whatever is still held back (before the terminal record)."""
        return self._release()

    def _open(self, kind: str, call_id, record: dict) -> list:
        """Release the open stream and open the one ``record`` belongs to."""
        released = self._release()
        self._kind, self._call_id, self._stream, self._template = kind, call_id, self._redactor.stream(), record
        self._feed = self._stream.feed
        return released

    def _release(self) -> list:
        if self._stream is None:
            return []
        text = self._stream.flush()
        template = self._template
        self._kind = self._call_id = self._stream = self._feed = self._template = None
        if not text:
            return []
        if self._keep_raw:
            return [dict(template, text="", **{REDACTED_TEXT_FIELD: text})]
        return [dict(template, text=text)]
