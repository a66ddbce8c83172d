"""A run as a read-only Durable Stream (docs/durable-streams.md): a JSON stream whose
messages are the run's journal records, whose offsets are the journal's byte-offset cursors
(PROTOCOL 1.2), and which is closed once its terminal record is written. A compacted run
reads from its archive; a damaged line reads as ``{"type": "record.damaged", "bytes": N}``.
"""

import dataclasses

from hermes_web.core.codec import decode_record
from hermes_web.core.records import is_terminal
from hermes_web.core.services import service
from hermes_web.store.logstore import LogNotFound
from hermes_web.store.streams import Message, Read, StreamError
from hermes_web.web.api import locate_run

MAX_READ_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass
class _Archive:
    """A compacted run's journal, whole, from its archive."""

    data: bytes

    def tail(self) -> tuple:
        end = self.data.rfind(b"\n") + 1
        lines = self.data[:end].split(b"\n")[:-1]
        return end, decode_record(lines[-1]) if lines else None

    def is_cursor(self, offset: int) -> bool:
        return offset == 0 or (0 < offset <= len(self.data) and self.data[offset - 1:offset] == b"\n")

    def read(self, after: int, max_bytes: int) -> list:
        lines, position = [], after
        end = self.data.rfind(b"\n") + 1
        while position < end and (not lines or position - after < max_bytes):
            line_end = self.data.index(b"\n", position) + 1
            lines.append((self.data[position:line_end - 1], line_end))
            position = line_end
        return lines

    def wait(self, after: int, timeout: float) -> bool:
        return True  # an archive never grows: the reader finds it closed

    def close(self) -> None:
        pass


class RunSource:
    """What the read loop needs of one run (see StreamSource)."""

    content_type = "application/json"

    def __init__(self, run_log, redaction):
        self.run_log = run_log
        self.redact = redaction.line if redaction.on_read else None

    @classmethod
    def open(cls, run_id: str) -> "RunSource":
        """The run's live log, or its archive once compacted; 404 unknown, 410 compacted
        without an archive."""
        location = locate_run(run_id)
        logs = service("logs")
        if not location.compacted:
            try:
                return cls(logs.open(run_id, location.session_id), service("redaction"))
            except LogNotFound:
                location = locate_run(run_id)  # compacted meanwhile
        data = logs.archived_journal(location.session_id, run_id)
        if data is None:
            raise StreamError(410, "run_compacted", "this run was compacted and its journal not archived")
        return cls(_Archive(data), service("redaction"))

    def tail(self) -> tuple:
        committed, last = self.run_log.tail()
        return committed, last is not None and is_terminal(last)

    def read(self, after: int) -> Read:
        if not self.run_log.is_cursor(after):
            raise StreamError(400, "invalid_offset", "the offset is not at a record boundary of this run")
        committed, last = self.run_log.tail()
        if after > committed:
            raise StreamError(400, "invalid_offset", "the offset is past the end of this run")
        lines = self.run_log.read(after, MAX_READ_BYTES)
        messages = [Message([self._record(line)], end) for line, end in lines]
        offset = messages[-1].offset if messages else after
        complete = offset >= committed
        closed = complete and last is not None and is_terminal(last)
        return Read(messages, offset, complete, closed)

    def _record(self, line: bytes):
        record = decode_record(line)
        if record is None:
            return {"type": "record.damaged", "bytes": len(line) + 1}
        if self.redact is not None:
            return decode_record(self.redact(line))
        return record

    def wait(self, after: int, timeout: float) -> bool:
        return self.run_log.wait(after, timeout)

    def ended(self) -> bool:
        return False

    def touch(self) -> None:
        pass  # a run has no TTL

    def close(self) -> None:
        self.run_log.close()
