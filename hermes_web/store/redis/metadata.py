"""Session metadata and transcripts in Redis: the same interfaces as ``store.SessionStore``
and ``transcripts.TranscriptStore``, shared by every server.

Metadata is one JSON string per session (the bytes the file store would write) and a sorted
set of session ids by last activity. Every change publishes ``m <origin> <session_id>`` in
the same transaction, so a rename on one server reaches session streams on every other as
``session.updated``. Updates are optimistic transactions (WATCH/MULTI): two servers
touching one session at once never lose either change.

A transcript is one string of JSONL (the file store's ``transcripts/<sid>.jsonl``) and a
version counter bumped with every change; readers parse it once per version.
"""

import time

import redis

from hermes_web.core.codec import decode_line, encode_line
from hermes_web.store.metadata import Damaged, NotFound, sort_time, updated_meta
from hermes_web.store.redis.client import KEYS, reaching
from hermes_web.store.redis.notifier import message
from hermes_web.store.transcripts import EMPTY, TranscriptCache, parse_transcript

LIST_BATCH = 500
MAX_UPDATE_ATTEMPTS = 20


class RedisSessionStore:
    """Session metadata (``hermes:session:<id>``) and the activity index."""

    def __init__(self, client, origin: str):
        self.client = client
        self.origin = origin

    @reaching
    def create(self, session_id: str, title: str = "New chat", **fields) -> dict:
        now = time.time()
        meta = {"id": session_id, "title": title, "created_at": now, "updated_at": now, **fields}
        pipeline = self.client.pipeline(transaction=True)
        self._write(pipeline, meta)
        pipeline.execute()
        return meta

    @reaching
    def get(self, session_id: str) -> dict:
        return _decoded(session_id, self.client.get(KEYS.session(session_id)))

    @reaching
    def exists(self, session_id: str) -> bool:
        return bool(self.client.exists(KEYS.session(session_id)))

    @reaching
    def update(self, session_id: str, **changes) -> dict:
        """As ``SessionStore.update``; retried when another server changed it meanwhile."""
        key = KEYS.session(session_id)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipeline:
                try:
                    pipeline.watch(key)
                    meta = updated_meta(lambda: _decoded(session_id, pipeline.get(key)), changes)
                    pipeline.multi()
                    self._write(pipeline, meta)
                    pipeline.execute()
                    return meta
                except redis.WatchError:
                    continue
        raise redis.exceptions.ConnectionError("session metadata kept changing")  # pragma: no cover

    @reaching
    def list(self) -> list:
        session_ids = [value.decode() for value in self.client.zrevrange(KEYS.sessions, 0, -1)]
        sessions = []
        for start in range(0, len(session_ids), LIST_BATCH):
            batch = session_ids[start:start + LIST_BATCH]
            for session_id, data in zip(batch, self.client.mget([KEYS.session(sid) for sid in batch])):
                try:
                    sessions.append(_decoded(session_id, data))
                except NotFound:
                    continue  # deleted while listing
                except Damaged as damaged:
                    sessions.append(damaged.placeholder)
        sessions.sort(key=sort_time, reverse=True)
        return sessions

    @reaching
    def delete(self, session_id: str) -> None:
        pipeline = self.client.pipeline(transaction=True)
        pipeline.delete(KEYS.session(session_id))
        pipeline.zrem(KEYS.sessions, session_id)
        pipeline.publish(KEYS.channel, message("m", self.origin, session_id))
        deleted, _, _ = pipeline.execute()
        if not deleted:
            raise NotFound(session_id)

    def _write(self, pipeline, meta: dict) -> None:
        pipeline.set(KEYS.session(meta["id"]), encode_line(meta)[:-1])
        pipeline.zadd(KEYS.sessions, {meta["id"]: sort_time(meta)})
        pipeline.publish(KEYS.channel, message("m", self.origin, meta["id"]))


def _decoded(session_id: str, data) -> dict:
    if data is None:
        raise NotFound(session_id)
    try:
        meta = decode_line(data)
    except ValueError:
        raise Damaged(session_id, "its metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("id") != session_id or not isinstance(meta.get("title"), str):
        raise Damaged(session_id, "its metadata is not a session object")
    return meta


class RedisTranscriptStore:
    """Transcripts in Redis, each parsed once per version (LRU of recent ones)."""

    def __init__(self, client):
        self.client = client
        self._cache = TranscriptCache()

    @reaching
    def read(self, session_id: str):
        version = self.client.get(KEYS.transcript_version(session_id))
        if version is None:
            self.forget(session_id)
            return EMPTY
        cached = self._cache.get(session_id, version)
        if cached is not None:
            return cached
        version, data = self.client.mget(KEYS.transcript_version(session_id), KEYS.transcript(session_id))
        transcript = parse_transcript(data or b"")
        self._cache.put(session_id, version, transcript)
        return transcript

    @reaching
    def create(self, session_id: str, messages) -> None:
        """The transcript of a new (imported) session."""
        pipeline = self.client.pipeline(transaction=True)
        pipeline.set(KEYS.transcript(session_id), b"".join(encode_line(message) for message in messages))
        pipeline.incr(KEYS.transcript_version(session_id))
        pipeline.execute()

    @reaching
    def delete(self, session_id: str) -> None:
        """Remove the session's transcript and the journals compaction archived for it."""
        archived = [f"{session_id}/{run_id.decode()}" for run_id in self.client.hkeys(KEYS.archive(session_id))]
        pipeline = self.client.pipeline(transaction=True)
        pipeline.delete(KEYS.transcript(session_id), KEYS.transcript_version(session_id), KEYS.archive(session_id))
        if archived:
            pipeline.zrem(KEYS.archived, *archived)
        pipeline.execute()
        self.forget(session_id)

    def forget(self, session_id: str) -> None:
        self._cache.forget(session_id)
