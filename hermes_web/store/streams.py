"""Durable Streams, the parts every stream store shares: offsets, content types, the
idempotent-producer rules and JSON-mode appends (docs/durable-streams.md).

A stream's offset is ``0000000000000000_<16-digit byte offset>``: the byte offset is where
a reader stands in the stream's log (PROTOCOL 1.2's cursor, for runs the journal's own), so
offsets sort as strings in the order they sort as numbers.
"""

import dataclasses
import datetime
import json
import re
from typing import Optional

OFFSET_DIGITS = 16
ZERO_OFFSET = "0" * OFFSET_DIGITS + "_" + "0" * OFFSET_DIGITS
_OFFSET = re.compile(r"^(\d{1,16})_(\d{1,16})$")
# Stream-TTL: a plain decimal, no sign, no leading zeros.
_TTL = re.compile(r"^(0|[1-9]\d{0,11})$")
_DECIMAL = re.compile(r"^\d{1,15}$")
_SUB_OFFSET = re.compile(r"^(0|[1-9][0-9]{0,14})$")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+")


class StreamError(Exception):
    """A request the stream cannot take: ``status`` and ``code`` say why (a 4xx)."""

    def __init__(self, status: int, code: str, message: str, headers: dict = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def format_offset(position: int) -> str:
    return "0" * OFFSET_DIGITS + "_" + str(position).rjust(OFFSET_DIGITS, "0")


def parse_offset(text: str) -> int:
    """The byte position of a well-formed offset; StreamError 400 otherwise."""
    match = _OFFSET.match(text or "")
    if not match:
        raise StreamError(400, "invalid_offset", "offset must be -1, now, or an offset this server gave")
    return int(match.group(2))


def media_type(content_type: Optional[str]) -> str:
    """``content_type`` without parameters, lower case: what two types are compared by."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    return media_type(content_type) == "application/json"


def is_text(content_type: str) -> bool:
    """Text and JSON streams are stored and served as text (and masked); others as bytes."""
    kind = media_type(content_type)
    return kind.startswith("text/") or kind == "application/json"


def creation_type(header: Optional[str]) -> Optional[str]:
    """The content type a PUT names, or None when it names none usable."""
    if header and header.strip() and _MEDIA_TYPE.match(header.strip()):
        return header.strip()
    return None


def parse_ttl(header: Optional[str]) -> Optional[int]:
    if header is None:
        return None
    if not _TTL.match(header):
        raise StreamError(400, "invalid_ttl", "Stream-TTL must be a whole number of seconds")
    return int(header)


def parse_sub_offset(header: Optional[str]) -> Optional[int]:
    """``Stream-Fork-Sub-Offset``: bytes (JSON: values) into the message after the fork offset."""
    if header is None:
        return None
    if not _SUB_OFFSET.match(header):
        raise StreamError(400, "invalid_fork", "Stream-Fork-Sub-Offset must be a non-negative integer")
    return int(header)


def parse_decimal(header: str, name: str) -> int:
    if not _DECIMAL.match(header):
        raise StreamError(400, "invalid_producer", f"{name} must be a non-negative integer")
    return int(header)


@dataclasses.dataclass(frozen=True)
class Producer:
    """One request's idempotent-producer headers."""

    producer_id: str
    epoch: int
    seq: int

    def as_list(self) -> list:
        return [self.producer_id, self.epoch, self.seq]


def parse_producer(producer_id, epoch, seq) -> Optional[Producer]:
    """The producer of a request: all three headers or none (StreamError 400)."""
    given = [value is not None for value in (producer_id, epoch, seq)]
    if not any(given):
        return None
    if not all(given):
        raise StreamError(400, "invalid_producer", "Producer-Id, Producer-Epoch and Producer-Seq go together")
    if producer_id == "":
        raise StreamError(400, "invalid_producer", "Producer-Id must not be empty")
    return Producer(producer_id, parse_decimal(epoch, "Producer-Epoch"), parse_decimal(seq, "Producer-Seq"))


@dataclasses.dataclass
class ProducerState:
    epoch: int
    last_seq: int


def check_producer(states: dict, producer: Producer) -> tuple:
    """``("accepted", new_state)``, ``("duplicate", last_seq)``, or StreamError.

    Kafka-style fencing: a lower epoch than the producer's is stale (403), a higher one
    must start again at sequence 0 (400), and within an epoch sequences go up by one; a
    sequence already taken is a retry (answered as success, written once), a gap is 409.
    """
    state = states.get(producer.producer_id)
    if state is None:
        if producer.seq != 0:
            raise _gap(0, producer.seq)
        return "accepted", ProducerState(producer.epoch, 0)
    if producer.epoch < state.epoch:
        raise StreamError(403, "stale_producer_epoch", "a newer epoch of this producer has written",
                          {"Producer-Epoch": str(state.epoch)})
    if producer.epoch > state.epoch:
        if producer.seq != 0:
            raise StreamError(400, "invalid_producer_seq", "a new producer epoch starts at sequence 0")
        return "accepted", ProducerState(producer.epoch, 0)
    if producer.seq <= state.last_seq:
        return "duplicate", state.last_seq
    if producer.seq != state.last_seq + 1:
        raise _gap(state.last_seq + 1, producer.seq)
    return "accepted", ProducerState(producer.epoch, producer.seq)


def _gap(expected: int, received: int) -> StreamError:
    return StreamError(409, "producer_sequence_gap", "producer sequence skipped a number",
                       {"Producer-Expected-Seq": str(expected), "Producer-Received-Seq": str(received)})


def json_values(body: bytes, creating: bool = False) -> list:
    """The values a JSON-mode body appends: an array's items (one level), else the value.

    An empty array appends nothing: allowed when creating, a 400 on an append.
    """
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise StreamError(400, "invalid_json", "the body is not valid JSON") from None
    if isinstance(value, list):
        if not value and not creating:
            raise StreamError(400, "empty_json_array", "an empty JSON array appends nothing")
        return value
    return [value]


def sse_data(payload: str) -> str:
    """``payload`` as the ``data:`` lines of one SSE event (each line its own field)."""
    lines = payload.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"data:{line}\n" for line in lines) + "\n"


CURSOR_EPOCH = 1728432000.0  # 2024-10-09T00:00:00Z, the epoch the protocol's clients expect
CURSOR_INTERVAL_SECONDS = 20
MAX_CURSOR_JITTER_SECONDS = 3600


def response_cursor(client_cursor: Optional[str], now: float, jitter: float) -> str:
    """The ``Stream-Cursor`` of a live response: the current 20-second interval, or, when
    the client already holds that one, a later one (``jitter`` in [0, 1) picks how much)
    so a cache in front never answers two rounds of long-polls with one response."""
    current = int((now - CURSOR_EPOCH) // CURSOR_INTERVAL_SECONDS)
    try:
        held = int(client_cursor) if client_cursor else None
    except ValueError:
        held = None
    if held is None or held < current:
        return str(current)
    seconds = 1 + int(jitter * MAX_CURSOR_JITTER_SECONDS)
    return str(held + max(1, -(-seconds // CURSOR_INTERVAL_SECONDS)))


@dataclasses.dataclass
class Message:
    """One append as read back: ``payload`` is text, bytes or a list of JSON values."""

    payload: object
    offset: int


@dataclasses.dataclass
class Outcome:
    """What an append or close did: the tail after it, and how the producer fared."""

    offset: int
    closed: bool
    duplicate: bool = False
    producer_seq: Optional[int] = None


@dataclasses.dataclass
class Settings:
    content_type: str
    ttl_seconds: Optional[int] = None
    expires_at: Optional[str] = None
    forked_from: Optional[str] = None
    fork_offset: int = 0
    fork_sub_offset: Optional[int] = None
    created_closed: bool = False


@dataclasses.dataclass
class Read:
    messages: list
    offset: int  # where the reader stands after these messages
    complete: bool  # nothing more to read now (the reader is up to date)
    closed: bool  # ... and nothing will ever follow


def parse_time(text: str) -> Optional[float]:
    """Seconds since the epoch of an RFC 3339 timestamp (UTC when it names no zone), or None."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def parse_expires_at(header: Optional[str]) -> Optional[str]:
    """The ``Stream-Expires-At`` header when it is a valid timestamp (StreamError 400)."""
    if header is None:
        return None
    if parse_time(header) is None:
        raise StreamError(400, "invalid_expires_at", "Stream-Expires-At must be an RFC 3339 timestamp")
    return header
