"""Session metadata files: ``sessions/<id>.json``, each replaced atomically (PROTOCOL 1.4)."""

import json
import os
import time

from hermes_web.core.codec import encode_line
from hermes_web.core.fsutil import atomic_write, ensure_dir
from hermes_web.core.ids import is_valid_id
from hermes_web.store.datadir import DataDir
from hermes_web.store.metadata import Damaged, NotFound, sort_time, updated_meta

# Metadata read this long after its file last changed is cached by that file's identity;
# younger files are read again (timestamps are coarse: two writes within one clock tick
# can leave the same signature).
METADATA_SETTLE_NS = 100_000_000


class SessionStore:
    """Session metadata files (``sessions/<id>.json``), each replaced atomically."""

    def __init__(self, data_dir: DataDir):
        self.data_dir = data_dir
        self._cache = {}  # session_id -> (signature, meta)

    def create(self, session_id: str, title: str = "New chat", **fields) -> dict:
        now = time.time()
        meta = {"id": session_id, "title": title, "created_at": now, "updated_at": now, **fields}
        ensure_dir(self.data_dir.sessions_dir)
        self._write(meta)
        return meta

    def get(self, session_id: str) -> dict:
        """The metadata; NotFound when there is none, Damaged when it cannot be read."""
        return dict(self._read(session_id, os.fspath(self.data_dir.session_path(session_id))))

    def _read(self, session_id: str, path: str, listed_signature=None) -> dict:
        """The cached or freshly read metadata at ``path`` (not a copy). With the
        signature a directory listing gave, an unchanged file is not even opened."""
        cached = self._cache.get(session_id)
        if listed_signature is not None and cached is not None and cached[0] == listed_signature:
            return cached[1]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._cache.pop(session_id, None)
            raise NotFound(session_id) from None
        except OSError as error:
            raise Damaged(session_id, error.strerror or str(error)) from None
        try:
            stat = os.fstat(fd)
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if cached is not None and cached[0] == signature:
                return cached[1]
            data = os.read(fd, max(stat.st_size, 1) + 1)
        except OSError as error:
            raise Damaged(session_id, error.strerror or str(error)) from None
        finally:
            os.close(fd)
        try:
            meta = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise Damaged(session_id, "its metadata is not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("id") != session_id or not isinstance(meta.get("title"), str):
            raise Damaged(session_id, "its metadata is not a session object")
        if time.time_ns() - stat.st_mtime_ns > METADATA_SETTLE_NS:
            self._cache[session_id] = (signature, meta)
        return meta

    def exists(self, session_id: str) -> bool:
        return self.data_dir.session_path(session_id).exists()

    def update(self, session_id: str, **changes) -> dict:
        """Apply ``changes`` and bump ``updated_at`` (last activity). Damaged metadata is
        left as it is (Damaged is raised) unless the change names a new title, which
        rewrites it whole."""
        meta = updated_meta(lambda: self.get(session_id), changes)
        self._write(meta)
        return meta

    def list(self) -> list:
        """All sessions, newest activity first; damaged ones as their placeholder. The
        dicts are shared with the cache: copy before changing one.

        One directory scan; a file whose listed identity (inode, size, mtime) matches the
        cached copy is not opened, so listing costs a stat per session.
        """
        sessions = []
        try:
            entries = os.scandir(self.data_dir.sessions_dir)
        except FileNotFoundError:
            return []
        with entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or not is_valid_id(name[:-5]):
                    continue
                session_id = name[:-5]
                try:
                    stat = entry.stat(follow_symlinks=False)
                    sessions.append(self._read(session_id, entry.path, (stat.st_ino, stat.st_size, stat.st_mtime_ns)))
                except (NotFound, FileNotFoundError):
                    continue  # deleted while listing
                except Damaged as damaged:
                    sessions.append(damaged.placeholder)
                except OSError as error:
                    sessions.append(Damaged(session_id, error.strerror or str(error)).placeholder)
        sessions.sort(key=sort_time, reverse=True)
        return sessions

    def delete(self, session_id: str) -> None:
        self._cache.pop(session_id, None)
        try:
            os.unlink(self.data_dir.session_path(session_id))
        except FileNotFoundError:
            raise NotFound(session_id) from None

    def _write(self, meta: dict) -> None:
        self._cache.pop(meta["id"], None)
        atomic_write(self.data_dir.session_path(meta["id"]), encode_line(meta)[:-1])
