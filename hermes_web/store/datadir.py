"""The data directory: where each kind of file lives (PROTOCOL 1). Both stores keep uploads,
authentication and the agents' homes here; the file store keeps everything else here too."""

import os
from pathlib import Path

from hermes_web.core.fsutil import DIR_MODE, ensure_dir
from hermes_web.core.ids import is_valid_id
from hermes_web.core.startup import StartupError, path_failure

JOURNAL_SUFFIX = ".jsonl"
LAYOUT_DIRS = ("sessions", "journals", "transcripts", "uploads", "archive")


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

    def unborn_journal_path(self, session_id: str, run_id: str) -> Path:
        """Where a run's journal is written and locked before it is renamed into place."""
        path = self.journal_path(session_id, run_id)
        return path.with_name(f".{path.name}.new")

    def transcript_path(self, session_id: str) -> Path:
        return self.transcripts_dir / f"{_checked(session_id)}.jsonl"

    def start_lock_path(self, session_id: str) -> Path:
        """Held while a run of the session is being started, by whichever process starts it."""
        return self.journals_root / f".{_checked(session_id)}.start-lock"

    def uploads_dir(self, session_id: str) -> Path:
        return self.uploads_root / _checked(session_id)

    def archive_dir(self, session_id: str) -> Path:
        return self.archive_root / _checked(session_id)

    def archived_journal_path(self, session_id: str, run_id: str) -> Path:
        """Where compaction keeps a removed run's journal, gzipped."""
        return self.archive_dir(session_id) / f"{_checked(run_id)}.jsonl.gz"

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
