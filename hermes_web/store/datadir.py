"""The data directory: where each kind of file lives, and session metadata."""

import json
import os
import time
from pathlib import Path

from hermes_web.core.codec import encode_line
from hermes_web.core.fsutil import DIR_MODE, atomic_write, ensure_dir
from hermes_web.core.ids import is_valid_id
from hermes_web.core.startup import StartupError, path_failure

JOURNAL_SUFFIX = ".jsonl"
LAYOUT_DIRS = ("sessions", "journals", "transcripts", "uploads", "archive")


class NotFound(LookupError):
    """A session or run does not exist."""


class DataDir:
    """Paths of the on-disk layout (PROTOCOL 1). Every id is validated before use."""

    def __init__(self, root: Path, uploads_root: Path = None):
        self.root = Path(root)
        # Elsewhere when several servers share one upload directory (HERMES_WEB_UPLOADS_DIR).
        self._uploads_root = Path(uploads_root) if uploads_root is not None else None

    def create(self) -> "DataDir":
        """Create the layout's directories (0700), and make the data root itself private.

        Raises :class:`StartupError` if they cannot be created, or read and written.
        """
        what = f"the data dir {self.root.absolute()}"
        hint = "; choose another with --data-dir or HERMES_WEB_DATA_DIR"
        try:
            directories = [self.root] + [self.root / sub for sub in LAYOUT_DIRS if sub != "uploads"]
            for directory in directories + [self.uploads_root]:
                ensure_dir(directory)
                if directory == self.root and os.stat(self.root).st_mode & 0o077:
                    # A checkout's var/ arrives 0755: nobody else needs to list the sessions.
                    os.chmod(self.root, DIR_MODE)
                # Found now rather than as a 500 on the first request that writes there.
                if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
                    raise StartupError(f"cannot use {what}: {directory} is not readable and writable by this user{hint}")
        except OSError as error:
            raise path_failure(what, error, hint) from None
        return self

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def journals_root(self) -> Path:
        return self.root / "journals"

    @property
    def transcripts_dir(self) -> Path:
        return self.root / "transcripts"

    @property
    def uploads_root(self) -> Path:
        return self._uploads_root if self._uploads_root is not None else self.root / "uploads"

    @property
    def archive_root(self) -> Path:
        return self.root / "archive"

    def session_path(self, session_id: str) -> Path:
        return self.sessions_dir / f"{_checked(session_id)}.json"

    def journals_dir(self, session_id: str) -> Path:
        return self.journals_root / _checked(session_id)

    def journal_path(self, session_id: str, run_id: str) -> Path:
        return self.journals_dir(session_id) / f"{_checked(run_id)}{JOURNAL_SUFFIX}"

    def transcript_path(self, session_id: str) -> Path:
        return self.transcripts_dir / f"{_checked(session_id)}.jsonl"

    def start_lock_path(self, session_id: str) -> Path:
        """Held while a run of the session is being started, by whichever process starts it."""
        return self.journals_root / f".{_checked(session_id)}.start-lock"

    def uploads_dir(self, session_id: str) -> Path:
        return self.uploads_root / _checked(session_id)

    def archive_dir(self, session_id: str) -> Path:
        return self.archive_root / _checked(session_id)

    @property
    def workspaces_root(self) -> Path:
        """Working directories of agents that work on files (made when first used)."""
        return self.root / "workspaces"

    def workspace_dir(self, session_id: str) -> Path:
        return self.workspaces_root / _checked(session_id)

    def run_ids(self, session_id: str) -> list:
        """Run ids with a journal in this session, in start order."""
        try:
            names = os.listdir(self.journals_dir(session_id))
        except FileNotFoundError:
            return []
        return sorted(
            name[: -len(JOURNAL_SUFFIX)]
            for name in names
            if name.endswith(JOURNAL_SUFFIX) and is_valid_id(name[: -len(JOURNAL_SUFFIX)])
        )

    def session_ids(self) -> list:
        """Every session with a metadata file."""
        try:
            names = os.listdir(self.sessions_dir)
        except FileNotFoundError:
            return []
        return [name[:-5] for name in names if name.endswith(".json") and is_valid_id(name[:-5])]


def _checked(identifier: str) -> str:
    if not is_valid_id(identifier):
        raise ValueError(f"invalid id: {identifier!r}")
    return identifier


class Damaged(Exception):
    """Session metadata that cannot be read or decoded (PROTOCOL 1.4); ``placeholder`` is
    what the session is shown as: its id, a placeholder title and ``damaged: true``."""

    def __init__(self, session_id: str, reason: str):
        super().__init__(f"session {session_id}: {reason}")
        self.reason = reason
        self.placeholder = {
            "id": session_id, "title": "Unreadable chat", "created_at": 0, "updated_at": 0, "damaged": True,
        }


# Metadata read this long after its file last changed is cached by that file's identity;
# younger files are read again (timestamps are coarse: two writes within one clock tick
# can leave the same signature).
METADATA_SETTLE_NS = 100_000_000


def updated_meta(read, changes: dict) -> dict:
    """The metadata ``read()`` returns with ``changes`` applied and ``updated_at`` (last
    activity) bumped. Damaged metadata stays as it is (``read`` raises Damaged) unless the
    change names a new title, which rewrites it whole from the placeholder."""
    try:
        meta = read()
    except Damaged as damaged:
        if "title" not in changes:
            raise
        meta = {key: value for key, value in damaged.placeholder.items() if key != "damaged"}
        meta["created_at"] = meta["updated_at"] = time.time()
    meta.update(changes)
    meta["updated_at"] = max(time.time(), meta.get("updated_at", 0))
    return meta


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
        sessions.sort(key=_sort_time, reverse=True)
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


def _sort_time(meta: dict) -> float:
    value = meta.get("updated_at")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
