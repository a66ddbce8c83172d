"""What both stream stores share (docs/durable-streams.md): the log's line format, and the
rules of create, append, close, delete, expiry and forks, written once over a few
primitives each store implements (files: ``store/files/streams.py``; Redis:
``store/redis/streams.py``).

A stream's log is a sequence of JSON lines, the same in both stores: ``{"text": ...}`` for
text streams, ``{"json": [values]}`` for JSON streams, ``{"base64": ...}`` otherwise, with
``"seq"`` (Stream-Seq) and ``"producer": [id, epoch, seq]`` when the append carried them,
and ``{"closed": true}`` for the close. An offset is a byte position in that sequence (after
the fork offset, for a fork), so both stores give the same offsets for the same appends.
"""

import base64
import json
import logging
import threading
import time
import urllib.parse
from typing import Optional

from hermes_web.store.logstore import StoreUnavailable
from hermes_web.store.streams import (
    DEFAULT_CONTENT_TYPE,
    Outcome,
    Producer,
    ProducerState,
    Read,
    Settings,
    StreamError,
    check_producer,
    format_offset,
    is_json,
    is_text,
    json_values,
    media_type,
    parse_time,
)

log = logging.getLogger(__name__)
SWEEP_SECONDS = 60.0
MAX_NAME_BYTES = 240


def name_segment(name: str) -> str:
    """A stream's name as one safe path segment (percent-encoded; a leading dot too), the
    form both stores measure against MAX_NAME_BYTES; StreamError 400 when it is too long."""
    encoded = urllib.parse.quote(name, safe="-_~.")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if not name or len(encoded) > MAX_NAME_BYTES:
        raise StreamError(400, "invalid_stream_name", f"a stream name is 1 to {MAX_NAME_BYTES} encoded bytes")
    return encoded


class StreamState:
    """What the rules need to know of one stream; each store keeps more beside it."""

    def __init__(self, name: str, settings: Settings):
        self.name = name
        self.settings = settings
        self.base = settings.fork_offset or 0
        self.size = 0  # bytes of the stream's own log
        self.data_end = 0  # where its last data line ends in its own log
        self.closed = False
        self.closed_by = None
        self.producers = {}
        self.last_seq = None
        self.gone = False
        self.removed = False
        self.last_access = time.time()

    @property
    def tail(self) -> int:
        return self.base + self.data_end

    def replay(self, entry: dict) -> bool:
        """Take one decoded log line into the state; True for a data line."""
        producer = entry.get("producer")
        if isinstance(producer, list) and len(producer) == 3:
            self.producers[producer[0]] = ProducerState(producer[1], producer[2])
        if entry.get("closed"):
            self.closed = True
            self.closed_by = tuple(producer) if isinstance(producer, list) else None
            return False
        if "seq" in entry:
            self.last_seq = entry["seq"]
        return True


class StreamStore:
    """The rules; subclasses supply the primitives marked as such."""

    def __init__(self, redaction=None, clock=time.time):
        self.redaction = redaction
        self.clock = clock
        self._sweeper = None
        self._stopped = False

    # -- primitives ----------------------------------------------------------------------

    def _load(self, name: str) -> Optional[StreamState]:
        raise NotImplementedError

    def _fork_count(self, name: str) -> int:
        raise NotImplementedError

    def _write_new(self, name: str, settings: Settings, log_bytes: bytes) -> bool:
        """Create the stream with its first lines; False when the name was taken meanwhile."""
        raise NotImplementedError

    def _mutate(self, name: str, change):
        """``change(state)`` on the live stream, with writes it makes kept consistent."""
        raise NotImplementedError

    def _commit(self, state: StreamState, lines: list, close_line: Optional[bytes], producer, producer_state,
                seq) -> None:
        """Append ``lines`` (and the close) as one write, and update ``state``."""
        raise NotImplementedError

    def _own(self, state: StreamState, after: int, budget: int) -> tuple:
        """``(messages, complete)``: the stream's own messages past offset ``after``."""
        raise NotImplementedError

    def _mark_gone(self, state: StreamState) -> None:
        raise NotImplementedError

    def _remove(self, state: StreamState) -> None:
        raise NotImplementedError

    def names(self) -> list:
        raise NotImplementedError

    def _sweep_candidates(self) -> list:
        """The names the sweep looks at: at least every stream that can expire."""
        return self.names()

    def touch(self, state: StreamState) -> None:
        raise NotImplementedError

    def wait(self, name: str, after: int, timeout: float) -> bool:
        """Wait until the stream grows past ``after``, closes or goes; False on timeout."""
        raise NotImplementedError

    # -- lookup and expiry ---------------------------------------------------------------

    def _find(self, name: str, expire: bool = True) -> Optional[StreamState]:
        """The stream, None when there is none or it expired (a gone one is returned)."""
        state = self._load(name)
        if state is None or state.removed:
            return None
        if expire and self._expired(state):
            self._expire(state)
            return state if state.gone and not state.removed else None
        return state

    def _live(self, name: str) -> StreamState:
        state = self._find(name)
        if state is None:
            raise StreamError(404, "stream_not_found", "no such stream")
        if state.gone:
            raise StreamError(410, "stream_gone", "the stream was deleted; its forks still read it")
        return state

    def _expired(self, state: StreamState) -> bool:
        now = self.clock()
        settings = state.settings
        if settings.expires_at is not None:
            at = parse_time(settings.expires_at)
            if at is None or now >= at:
                return True
        return settings.ttl_seconds is not None and now >= state.last_access + settings.ttl_seconds

    def _expire(self, state: StreamState) -> None:
        if self._fork_count(state.name) > 0:
            self._mark_gone(state)
        else:
            self._remove(state)

    def current(self, name: str) -> Optional[StreamState]:
        """The stream's state now, None once it is deleted (for a reader that holds it)."""
        state = self._find(name, expire=False)
        return None if state is None or state.removed else state

    def head(self, name: str) -> StreamState:
        """The stream's settings and state now (no access is recorded)."""
        return self._live(name)

    def start_sweeper(self) -> None:
        """Expired streams go within a minute even when nobody asks for them again."""
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep_forever, name="stream-expiry", daemon=True)
            self._sweeper.start()

    def stop_sweeper(self) -> None:
        self._stopped = True

    def _sweep_forever(self) -> None:
        while not self._stopped:
            try:
                self.sweep()
            except (OSError, StreamError, StoreUnavailable) as error:
                log.warning("stream expiry sweep: %s", error)
            time.sleep(SWEEP_SECONDS)

    def sweep(self) -> int:
        """Remove every expired stream (one that forks read stays, gone); how many went."""
        removed = 0
        for name in self._sweep_candidates():
            state = self._find(name, expire=False)
            if state is not None and not state.gone and self._expired(state):
                self._expire(state)
                removed += state.removed
        return removed

    # -- writes --------------------------------------------------------------------------

    def create(self, name: str, settings: Settings, body: bytes) -> tuple:
        """``(state, created)``: made now, or the same stream made before (idempotent)."""
        for _ in range(3):
            existing = self._find(name)
            if existing is not None:
                if existing.gone:
                    raise StreamError(409, "stream_has_forks",
                                      "a deleted stream's name is taken until its forks are deleted")
                if not same_settings(existing.settings, settings, existing.closed):
                    raise StreamError(409, "stream_exists", "a stream with this name exists with other settings")
                return existing, False
            lines = []
            if settings.forked_from is not None:
                source = self._fork_source(settings)
                if settings.fork_sub_offset:
                    lines.append(self._sub_offset_line(source, settings))
            if body:
                lines.extend(self.data_lines(settings.content_type, body, creating=True))
            if settings.created_closed:
                lines.append(CLOSE_LINE)
            if self._write_new(name, settings, b"".join(lines)):
                return self._find(name, expire=False), True
        raise StreamError(409, "stream_exists", "the stream is being created and deleted at once; try again")

    def _fork_source(self, settings: Settings) -> StreamState:
        source = self._find(settings.forked_from)
        if source is None:
            raise StreamError(404, "source_not_found", "the stream to fork from does not exist")
        if source.gone:
            raise StreamError(409, "source_gone", "the stream to fork from was deleted")
        if settings.content_type is None:
            settings.content_type = source.settings.content_type
        elif media_type(settings.content_type) != media_type(source.settings.content_type):
            raise StreamError(409, "content_type_mismatch", "a fork has its source's content type")
        if settings.fork_offset is None:
            settings.fork_offset = source.tail
        if settings.fork_offset > source.tail:
            raise StreamError(400, "invalid_fork_offset", "the fork offset is past the end of the source")
        if settings.ttl_seconds is None and settings.expires_at is None:
            settings.ttl_seconds = source.settings.ttl_seconds
            settings.expires_at = source.settings.expires_at
        return source

    def _sub_offset_line(self, source: StreamState, settings: Settings) -> bytes:
        """A fork inside a message: its first bytes (or JSON values) become the fork's own
        first message."""
        after = self.read(source.name, settings.fork_offset, max_bytes=1, inherited=True)
        if not after.messages:
            raise StreamError(400, "invalid_fork_sub_offset", "no message follows the fork offset")
        payload = after.messages[0].payload
        if isinstance(payload, str):
            payload = payload.encode("utf-8")  # a sub-offset counts bytes (JSON: values)
        if settings.fork_sub_offset > len(payload):
            raise StreamError(400, "invalid_fork_sub_offset", "the sub-offset is past the end of the message")
        return encode_entry(payload_entry(settings.content_type, payload[:settings.fork_sub_offset]))

    def append(self, name: str, body: bytes, content_type: Optional[str], seq: Optional[str] = None,
               producer: Optional[Producer] = None, close: bool = False) -> Outcome:
        """Append ``body`` (closing the stream with ``close``): Stream-Seq and the
        producer's epoch and sequence decide whether it is written, once."""

        def change(state: StreamState) -> Outcome:
            if state.closed:
                if producer is not None and state.closed_by == tuple(producer.as_list()):
                    return Outcome(state.tail, True, duplicate=True, producer_seq=producer.seq)
                raise closed_error(state)
            if content_type is not None and media_type(content_type) != media_type(state.settings.content_type):
                raise StreamError(409, "content_type_mismatch", "the body's type is not the stream's type")
            producer_state = None
            if producer is not None:
                verdict, producer_state = check_producer(state.producers, producer)
                if verdict == "duplicate":
                    return Outcome(state.tail, False, duplicate=True, producer_seq=producer_state)
            if seq is not None and state.last_seq is not None and seq <= state.last_seq:
                raise StreamError(409, "stream_seq_conflict", "Stream-Seq must grow with every append")
            extra = {}
            if seq is not None:
                extra["seq"] = seq
            if producer is not None:
                extra["producer"] = producer.as_list()
            lines = self.data_lines(state.settings.content_type, body, extra=extra)
            self._commit(state, lines, close_line(producer) if close else None, producer, producer_state, seq)
            return Outcome(state.tail, state.closed, producer_seq=producer.seq if producer else None)

        return self._mutate(name, change)

    def close(self, name: str, producer: Optional[Producer] = None) -> Outcome:
        """Close the stream without appending (idempotent; with a producer, sequenced)."""

        def change(state: StreamState) -> Outcome:
            if state.closed:
                if producer is None:
                    return Outcome(state.tail, True)
                if state.closed_by == tuple(producer.as_list()):
                    return Outcome(state.tail, True, duplicate=True, producer_seq=producer.seq)
                raise closed_error(state)
            producer_state = None
            if producer is not None:
                verdict, producer_state = check_producer(state.producers, producer)
                if verdict == "duplicate":
                    return Outcome(state.tail, False, duplicate=True, producer_seq=producer_state)
            self._commit(state, [], close_line(producer), producer, producer_state, None)
            return Outcome(state.tail, True, producer_seq=producer.seq if producer else None)

        return self._mutate(name, change)

    def delete(self, name: str) -> None:
        """Delete the stream; one that forks read stays readable to them (gone)."""
        self._expire(self._live(name))

    # -- reads ---------------------------------------------------------------------------

    def read(self, name: str, after: int, max_bytes: int = 4 * 1024 * 1024, inherited: bool = False) -> Read:
        """The messages after offset ``after`` (a fork's first ones from its source), up to
        about ``max_bytes``; ``after`` at or past the tail reads nothing."""
        state = self._find(name, expire=False) if inherited else self._live(name)
        if state is None:
            return Read([], after, True, False)
        if not inherited:
            self.touch(state)
        messages = []
        if state.settings.forked_from is not None and after < state.base:
            source = self.read(state.settings.forked_from, after, max_bytes=max_bytes, inherited=True)
            messages = [message for message in source.messages if message.offset <= state.base]
            reached = source.complete or len(messages) < len(source.messages) or (
                messages and messages[-1].offset >= state.base)
            if not reached:  # the answer is full before the fork's own part: the next one
                return Read(messages, messages[-1].offset if messages else after, False, False)
        tail, closed = state.tail, state.closed
        budget = max(1, max_bytes - sum(payload_size(message.payload) for message in messages))
        own, complete = self._own(state, max(after, state.base), budget)
        messages.extend(own)
        offset = messages[-1].offset if messages else tail
        return Read(messages, offset, complete, closed and complete and offset >= tail)

    def served(self, content_type: str, entry: dict):
        """A log line's payload as a reader gets it (masked now when not masked at rest)."""
        mask = self.redaction is not None and self.redaction.on_read
        if "json" in entry:
            return self.redaction.value(entry["json"]) if mask else entry["json"]
        if "text" in entry:
            text = self.redaction.text(entry["text"]) if mask else entry["text"]
            return text if is_text(content_type) else text.encode("utf-8")
        return base64.b64decode(entry.get("base64", ""))

    def data_lines(self, content_type: str, body: bytes, creating: bool = False, extra: dict = None) -> list:
        """The log lines one append writes (none for an empty JSON array at creation)."""
        at_rest = self.redaction is not None and self.redaction.at_rest
        if is_json(content_type):
            values = json_values(body, creating)
            if not values:
                return []
            return [encode_entry({"json": self.redaction.value(values) if at_rest else values, **(extra or {})})]
        payload = body
        if is_text(content_type):
            try:
                payload = body.decode("utf-8")
            except UnicodeDecodeError:
                raise StreamError(400, "invalid_text", "a text stream takes UTF-8") from None
            payload = self.redaction.text(payload) if at_rest else payload
        return [encode_entry({**payload_entry(content_type, payload), **(extra or {})})]


def decode_entry(line: bytes) -> Optional[dict]:
    """A log line's entry, or None for a damaged line (skipped, never served)."""
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def payload_entry(content_type: str, payload) -> dict:
    if is_json(content_type):
        return {"json": list(payload)}
    if isinstance(payload, str):
        return {"text": payload}
    if is_text(content_type):
        return {"text": bytes(payload).decode("utf-8", "replace")}
    return {"base64": base64.b64encode(bytes(payload)).decode("ascii")}


def encode_entry(entry: dict) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


CLOSE_LINE = encode_entry({"closed": True})


def close_line(producer: Optional[Producer]) -> bytes:
    return encode_entry({"closed": True, "producer": producer.as_list()}) if producer else CLOSE_LINE


def payload_size(payload) -> int:
    return len(payload) if isinstance(payload, (str, bytes)) else len(json.dumps(payload))


def closed_error(state: StreamState) -> StreamError:
    return StreamError(409, "stream_closed", "the stream is closed",
                       {"Stream-Closed": "true", "Stream-Next-Offset": format_offset(state.tail)})


def same_settings(existing: Settings, requested: Settings, closed: bool) -> bool:
    """Whether a PUT asks for the stream that exists (then it is answered 200, not 409)."""
    requested_type = requested.content_type
    if requested_type is None and requested.forked_from is not None:
        requested_type = existing.content_type
    return (media_type(requested_type or DEFAULT_CONTENT_TYPE) == media_type(existing.content_type)
            and requested.ttl_seconds == existing.ttl_seconds
            and requested.expires_at == existing.expires_at
            and requested.created_closed == closed
            and requested.forked_from == existing.forked_from
            and (requested.fork_offset is None or requested.forked_from is None
                 or requested.fork_offset == existing.fork_offset)
            and (requested.fork_sub_offset or 0) == (existing.fork_sub_offset or 0))

