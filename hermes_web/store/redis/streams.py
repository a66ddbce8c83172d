"""Durable Streams in Redis, shared by every server of one store (docs/durable-streams.md).

A stream is a hash of its settings and state, a Redis stream of its log lines (entry id
``<end position>-0``, field ``l``, the same lines and positions as the file store's
``log.jsonl``) and a hash of its producers. A write is a Lua script that checks the
stream still ends where the writer read it (else the writer decides again: another server
wrote first), writes, and publishes the wake-up, in one step.
"""

import dataclasses
import json
import time
import urllib.parse
from typing import Optional

from hermes_web.store.redis.client import KEYS, reaching
from hermes_web.store.redis.notifier import message
from hermes_web.store.stream_store import StreamState, StreamStore, decode_entry, name_segment
from hermes_web.store.streams import Message, ProducerState, Settings, StreamError

READ_BATCH_ENTRIES = 512
RECHECK_SECONDS = 1.0  # a waiter rereads at least this often (a wake-up can be missed)
MAX_RETRIES = 50

# KEYS: meta, log, names, expiring, parent meta (or meta again)
# ARGV: settings, size, data_end, closed, closed_by, now_ms, name, expiring, has_parent,
#       channel, message, then (entry id, line) pairs
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'settings', ARGV[1], 'size', ARGV[2], 'data_end', ARGV[3], 'closed', ARGV[4],
           'closed_by', ARGV[5], 'last_access', ARGV[6], 'gone', '0', 'forks', '0')
for i = 12, #ARGV, 2 do redis.call('XADD', KEYS[2], ARGV[i], 'l', ARGV[i + 1]) end
redis.call('SADD', KEYS[3], ARGV[7])
if ARGV[8] == '1' then redis.call('SADD', KEYS[4], ARGV[7]) end
if ARGV[9] == '1' then redis.call('HINCRBY', KEYS[5], 'forks', 1) end
redis.call('PUBLISH', ARGV[10], ARGV[11])
return 1
"""

# KEYS: meta, log, producers
# ARGV: expected size, size, data_end, closed ('' = unchanged), closed_by, seq ('' = none,
#       else 's' .. seq), producer id ('' = none), producer state, now_ms, channel, message,
#       then (entry id, line) pairs
COMMIT = """
local state = redis.call('HMGET', KEYS[1], 'size', 'gone')
if not state[1] then return 'missing' end
if state[2] == '1' then return 'gone' end
if state[1] ~= ARGV[1] then return 'conflict' end
for i = 12, #ARGV, 2 do redis.call('XADD', KEYS[2], ARGV[i], 'l', ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'size', ARGV[2], 'data_end', ARGV[3], 'last_access', ARGV[9])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'closed', ARGV[4], 'closed_by', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'last_seq', string.sub(ARGV[6], 2)) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[3], ARGV[7], ARGV[8]) end
redis.call('PUBLISH', ARGV[10], ARGV[11])
return 'ok'
"""

# KEYS: meta, log, producers, names, expiring, parent meta (or meta again)
# ARGV: name, has_parent, channel, message
# Returns the parent's {forks, gone} after the decrement (or {-1, '0'} without a parent).
REMOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, '0'} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
if ARGV[2] ~= '1' or redis.call('EXISTS', KEYS[6]) == 0 then return {-1, '0'} end
local forks = redis.call('HINCRBY', KEYS[6], 'forks', -1)
return {forks, redis.call('HGET', KEYS[6], 'gone')}
"""


def _encoded(name: str) -> str:
    # No ':' in the key part, so one stream's keys never collide with another's.
    return urllib.parse.quote(name, safe="/-_.~")


def _meta(name: str) -> str:
    return f"{KEYS.prefix}stream:{_encoded(name)}"


def _log(name: str) -> str:
    return f"{KEYS.prefix}stream:{_encoded(name)}:log"


def _producers(name: str) -> str:
    return f"{KEYS.prefix}stream:{_encoded(name)}:producers"


NAMES = KEYS.prefix + "streams"  # set of every stream's name
EXPIRING = KEYS.prefix + "streams:expiring"  # the names with a TTL or an expiry time


class RedisStreams(StreamStore):
    """Every generic stream of one Redis store."""

    def __init__(self, client, beacons, origin: str, redaction=None, clock=time.time):
        super().__init__(redaction, clock)
        self.client = client
        self.beacons = beacons
        self.origin = origin
        self._create = client.register_script(CREATE)
        self._commit_script = client.register_script(COMMIT)
        self._remove_script = client.register_script(REMOVE)

    def _check_name(self, name: str) -> None:
        name_segment(name)  # the same limit as the file store's

    def _wake(self, name: str) -> bytes:
        """The wake-up other servers hear (this one's waiters are woken after the write)."""
        return message("d", self.origin, _encoded(name))

    @reaching
    def names(self) -> list:
        return sorted(member.decode("utf-8") for member in self.client.smembers(NAMES))

    @reaching
    def _sweep_candidates(self) -> list:
        return [member.decode("utf-8") for member in self.client.smembers(EXPIRING)]

    @reaching
    def _load(self, name: str) -> Optional[StreamState]:
        self._check_name(name)
        self.start_sweeper()
        pipeline = self.client.pipeline(transaction=False)
        pipeline.hgetall(_meta(name))
        pipeline.hgetall(_producers(name))
        meta, producers = pipeline.execute()
        if not meta:
            return None
        state = StreamState(name, Settings(**json.loads(meta[b"settings"])))
        state.size = int(meta[b"size"])
        state.data_end = int(meta[b"data_end"])
        state.closed = meta.get(b"closed") == b"1"
        closed_by = meta.get(b"closed_by") or b""
        state.closed_by = tuple(json.loads(closed_by)) if closed_by else None
        state.last_seq = meta[b"last_seq"].decode("utf-8") if b"last_seq" in meta else None
        state.gone = meta.get(b"gone") == b"1"
        state.last_access = int(meta.get(b"last_access", b"0")) / 1000
        for producer_id, value in producers.items():
            epoch, seq = value.split(b" ")
            state.producers[producer_id.decode("utf-8")] = ProducerState(int(epoch), int(seq))
        return state

    @reaching
    def _fork_count(self, name: str) -> int:
        return int(self.client.hget(_meta(name), "forks") or 0)

    @reaching
    def touch(self, state: StreamState) -> None:
        if state.settings.ttl_seconds is not None:  # only a sliding TTL needs the time
            state.last_access = self.clock()
            self.client.hset(_meta(state.name), "last_access", int(state.last_access * 1000))

    # -- writes --------------------------------------------------------------------------

    def create(self, name: str, settings: Settings, body: bytes) -> tuple:
        self._check_name(name)
        return super().create(name, settings, body)

    @reaching
    def _write_new(self, name: str, settings: Settings, log_bytes: bytes) -> bool:
        pairs, size, data_end, closed = [], 0, 0, "0"
        for line in log_bytes.splitlines(keepends=True):
            size += len(line)
            pairs += [f"{size}-0", line[:-1]]
            if decode_entry(line[:-1]).get("closed"):
                closed = "1"
            else:
                data_end = size
        parent = settings.forked_from
        expiring = settings.ttl_seconds is not None or settings.expires_at is not None
        created = self._create(
            keys=[_meta(name), _log(name), NAMES, EXPIRING, _meta(parent) if parent is not None else _meta(name)],
            args=[json.dumps(dataclasses.asdict(settings)), size, data_end, closed, "", int(self.clock() * 1000),
                  name, "1" if expiring else "0", "1" if parent is not None else "0", KEYS.channel,
                  self._wake(name), *pairs])
        self.beacons.fire(("stream", name))
        return bool(created)

    def _mutate(self, name: str, change):
        for _ in range(MAX_RETRIES):
            state = self._live(name)
            try:
                return change(state)
            except _Retry:
                continue
        raise StreamError(503, "stream_busy", "the stream is being written too fast to append; try again")

    @reaching
    def _commit(self, state: StreamState, lines: list, close_line, producer, producer_state, seq) -> None:
        pairs, size, data_end = [], state.size, state.data_end
        for line in lines:
            size += len(line)
            data_end = size
            pairs += [f"{size}-0", line[:-1]]
        if close_line is not None:
            size += len(close_line)
            pairs += [f"{size}-0", close_line[:-1]]
        closed_by = json.dumps(producer.as_list()) if close_line is not None and producer is not None else ""
        verdict = self._commit_script(
            keys=[_meta(state.name), _log(state.name), _producers(state.name)],
            args=[state.size, size, data_end, "1" if close_line is not None else "", closed_by,
                  "s" + seq if seq is not None else "", producer.producer_id if producer is not None else "",
                  f"{producer_state.epoch} {producer_state.last_seq}" if producer is not None else "",
                  int(self.clock() * 1000), KEYS.channel, self._wake(state.name), *pairs])
        if verdict == b"conflict":
            raise _Retry()
        if verdict == b"missing":
            raise StreamError(404, "stream_not_found", "no such stream")
        if verdict == b"gone":
            raise StreamError(410, "stream_gone", "the stream was deleted; its forks still read it")
        state.size, state.data_end = size, data_end
        if close_line is not None:
            state.closed = True
        self.beacons.fire(("stream", state.name))

    @reaching
    def _mark_gone(self, state: StreamState) -> None:
        pipeline = self.client.pipeline()
        pipeline.hset(_meta(state.name), "gone", "1")
        pipeline.publish(KEYS.channel, self._wake(state.name))
        pipeline.execute()
        state.gone = True
        self.beacons.fire(("stream", state.name))

    @reaching
    def _remove(self, state: StreamState) -> None:
        parent = state.settings.forked_from
        forks, gone = self._remove_script(
            keys=[_meta(state.name), _log(state.name), _producers(state.name), NAMES, EXPIRING,
                  _meta(parent) if parent is not None else _meta(state.name)],
            args=[state.name, "1" if parent is not None else "0", KEYS.channel, self._wake(state.name)])
        state.removed = True
        self.beacons.fire(("stream", state.name))
        if parent is not None and int(forks) == 0 and gone == b"1":
            source = self._find(parent, expire=False)
            if source is not None:
                self._remove(source)  # the last fork of a deleted stream: it goes too

    # -- reads ---------------------------------------------------------------------------

    @reaching
    def _own(self, state: StreamState, after: int, budget: int) -> tuple:
        start = after - state.base
        messages, total = [], 0
        minimum = f"({start}-0" if start > 0 else "-"
        while True:
            entries = self.client.xrange(_log(state.name), min=minimum, max="+", count=READ_BATCH_ENTRIES)
            for entry_id, fields in entries:
                line = fields[b"l"]
                end = int(entry_id.split(b"-", 1)[0])
                if messages and total + len(line) + 1 > budget:
                    return messages, False
                entry = decode_entry(line)
                if entry is not None and not entry.get("closed"):
                    messages.append(Message(self.served(state.settings.content_type, entry), state.base + end))
                    total += len(line) + 1
                minimum = f"({end}-0"
            if len(entries) < READ_BATCH_ENTRIES:
                return messages, True

    def wait(self, name: str, after: int, timeout: float) -> bool:
        beacon = self.beacons.get(("stream", name))
        deadline = time.monotonic() + timeout
        while True:
            generation = beacon.generation
            state = self.current(name)
            if state is None or state.gone or state.closed or state.tail > after:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            beacon.wait_past(generation, min(remaining, RECHECK_SECONDS))

    def close_all(self) -> None:
        self.stop_sweeper()  # Redis holds every write already


class _Retry(Exception):
    """Another server wrote to the stream between this one's read and write."""
