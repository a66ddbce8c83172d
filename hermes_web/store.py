"""The data directory: where each kind of file lives, and session metadata."""

import json
import os
import time
from pathlib import Path

from hermes_web.fsutil import DIR_MODE, atomic_write, ensure_dir
from hermes_web.ids import is_valid_id

JOURNAL_SUFFIX = ".jsonl"


class NotFound(LookupError):
    """A session or run does not exist."""


class DataDir:
    """Paths of the on-disk layout (PROTOCOL 1). Every id is validated before use."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def create(self) -> "DataDir":
        """Create the layout's directories (0700), and make the data root itself private."""
        ensure_dir(self.root)
        if os.stat(self.root).st_mode & 0o077:
            # A checkout's var/ arrives 0755: nobody else needs to list the sessions.
            os.chmod(self.root, DIR_MODE)
        for sub in ("sessions", "journals", "transcripts", "uploads", "archive"):
            ensure_dir(self.root / sub)
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
        return self.root / "uploads"

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

    def find_run_session(self, run_id: str):
        """The session whose journal directory holds ``run_id``, or None."""
        name = f"{_checked(run_id)}{JOURNAL_SUFFIX}"
        try:
            session_ids = os.listdir(self.journals_root)
        except FileNotFoundError:
            return None
        for session_id in session_ids:
            if is_valid_id(session_id) and os.path.exists(self.journals_root / session_id / name):
                return session_id
        return None


def _checked(identifier: str) -> str:
    if not is_valid_id(identifier):
        raise ValueError(f"invalid id: {identifier!r}")
    return identifier


class SessionStore:
    """Session metadata files (``sessions/<id>.json``), each replaced atomically."""

    def __init__(self, data_dir: DataDir):
        self.data_dir = data_dir

    def create(self, session_id: str, title: str = "New chat") -> dict:
        now = time.time()
        meta = {"id": session_id, "title": title, "created_at": now, "updated_at": now}
        ensure_dir(self.data_dir.sessions_dir)
        self._write(meta)
        return meta

    def get(self, session_id: str) -> dict:
        """The metadata, or NotFound."""
        try:
            with open(self.data_dir.session_path(session_id), "rb") as handle:
                return json.loads(handle.read())
        except (FileNotFoundError, ValueError):
            raise NotFound(session_id) from None

    def exists(self, session_id: str) -> bool:
        return self.data_dir.session_path(session_id).exists()

    def update(self, session_id: str, **changes) -> dict:
        """Apply ``changes`` and bump ``updated_at`` (last activity)."""
        meta = self.get(session_id)
        meta.update(changes)
        meta["updated_at"] = max(time.time(), meta.get("updated_at", 0))
        self._write(meta)
        return meta

    def list(self) -> list:
        """All sessions, newest activity first."""
        sessions = []
        for session_id in self.data_dir.session_ids():
            try:
                sessions.append(self.get(session_id))
            except NotFound:
                continue  # deleted while listing
        sessions.sort(key=lambda meta: meta.get("updated_at", 0), reverse=True)
        return sessions

    def delete(self, session_id: str) -> None:
        try:
            os.unlink(self.data_dir.session_path(session_id))
        except FileNotFoundError:
            raise NotFound(session_id) from None

    def _write(self, meta: dict) -> None:
        data = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
        atomic_write(self.data_dir.session_path(meta["id"]), data)
