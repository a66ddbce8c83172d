"""Transcript files: ``transcripts/<session_id>.jsonl``, one session-view message per line."""

import os
import shutil

from hermes_web.core.codec import encode_line
from hermes_web.core.fsutil import atomic_write, ensure_dir
from hermes_web.store.transcripts import EMPTY, Transcript, TranscriptCache, parse_transcript


def transcript_run_ids(path) -> list:
    """The run ids a transcript file holds (for indexing), in order."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    return [run_id for run_id, _ in parse_transcript(data).runs]


class TranscriptStore:
    """Reads transcripts, each parsed once per version of the file (LRU of recent ones)."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self._cache = TranscriptCache()

    def read(self, session_id: str) -> Transcript:
        """The session's transcript (EMPTY when it has none). OSError when unreadable."""
        path = self.data_dir.transcript_path(session_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.forget(session_id)
            return EMPTY
        try:
            stat = os.fstat(fd)
            signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            cached = self._cache.get(session_id, signature)
            if cached is not None:
                return cached
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        transcript = parse_transcript(b"".join(chunks))
        self._cache.put(session_id, signature, transcript)
        return transcript

    def create(self, session_id: str, messages) -> None:
        """The transcript of a new (imported) session, in place at once or not at all."""
        ensure_dir(self.data_dir.transcripts_dir)
        atomic_write(self.data_dir.transcript_path(session_id), b"".join(encode_line(message) for message in messages))

    def delete(self, session_id: str) -> None:
        """Remove the session's transcript and the journals compaction archived for it."""
        self.data_dir.transcript_path(session_id).unlink(missing_ok=True)
        shutil.rmtree(self.data_dir.archive_dir(session_id), ignore_errors=True)
        self.forget(session_id)

    def forget(self, session_id: str) -> None:
        self._cache.forget(session_id)
