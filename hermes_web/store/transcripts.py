"""Durable transcripts, one session-view message per line (a file of the file store, a key of
the Redis store): their parsing and a bounded cache, shared by both stores. Written by
compaction (PROTOCOL 1.3) and read by the session view, run lookups and search.

A line that does not decode to a message (bit rot, a hand edit, a cut-off write) is skipped
and counted (PROTOCOL 1.4): the session shows what is whole and says how much is not.
"""

import collections
import threading

from hermes_web.core.codec import decode_line

# Parsed transcripts kept in memory, bounded by the bytes they were parsed from: a lookup
# never pins every session's history.
MAX_CACHED_TRANSCRIPT_BYTES = 32 * 1024 * 1024


class Transcript:
    """One session's transcript, grouped by run: the pairs of messages each run made."""

    __slots__ = ("runs", "by_run", "damaged", "size")

    def __init__(self, runs=(), damaged: int = 0, size: int = 0):
        self.runs = list(runs)  # [(run_id, [message, ...]), ...] in order
        self.by_run = {run_id: messages for run_id, messages in self.runs}
        self.damaged = damaged
        self.size = size

    @property
    def messages(self) -> list:
        return [message for _, messages in self.runs for message in messages]

    def assistant(self, run_id: str):
        """The assistant message of ``run_id``, or None."""
        for message in self.by_run.get(run_id, ()):
            if message.get("role") == "assistant":
                return message
        return None


EMPTY = Transcript()


def parse_transcript(data: bytes) -> Transcript:
    """Group a transcript's messages by run; count the lines that are not messages."""
    runs = []
    current_run = None
    damaged = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        damaged += 1  # a last line without its newline was cut off mid-write
        lines.pop()
    for line in lines:
        if not line.strip():
            continue
        try:
            message = decode_line(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("run_id"), str):
            damaged += 1
            continue
        run_id = message["run_id"]
        if current_run is None or current_run[0] != run_id:
            current_run = (run_id, [])
            runs.append(current_run)
        current_run[1].append(message)
    return Transcript(runs, damaged, len(data))


class TranscriptCache:
    """Parsed transcripts by session, each under the version it was parsed from (a file's
    identity, a Redis counter): least recently used first out, bounded by the bytes parsed."""

    def __init__(self, max_bytes: int = MAX_CACHED_TRANSCRIPT_BYTES):
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries = collections.OrderedDict()  # session_id -> (version, Transcript)
        self._bytes = 0

    def get(self, session_id: str, version):
        """The transcript cached for exactly this version, or None."""
        with self._lock:
            cached = self._entries.get(session_id)
            if cached is None or cached[0] != version:
                return None
            self._entries.move_to_end(session_id)
            return cached[1]

    def put(self, session_id: str, version, transcript: Transcript) -> None:
        with self._lock:
            self._drop(session_id)
            self._entries[session_id] = (version, transcript)
            self._bytes += transcript.size
            while self._bytes > self._max_bytes and len(self._entries) > 1:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._drop(session_id)

    def _drop(self, session_id: str) -> None:
        previous = self._entries.pop(session_id, None)
        if previous is not None:
            self._bytes -= previous[1].size
