"""Sessions: create, list, rename and delete, across metadata, run logs, transcripts and
uploads. The one place that knows everything a session owns."""

import shutil

from hermes_web.core.ids import new_session_id
from hermes_web.runs.manager import RunNotOwned
from hermes_web.store.metadata import Damaged, NotFound


class Sessions:
    """The session service of an app."""

    def __init__(self, metadata, logs, transcripts, runs, views, streams, data_dir, search=None):
        self.metadata = metadata
        self.search = search
        self.logs = logs
        self.transcripts = transcripts
        self.runs = runs
        self.views = views
        self.streams = streams
        self.data_dir = data_dir

    def init_app(self, app) -> None:
        from hermes_web.core.services import register

        register(app, "sessions", self)

    def create(self, title: str = "New chat", session_id: str = None, **fields) -> dict:
        meta = self.metadata.create(session_id or new_session_id(), title, **fields)
        self._index_title(meta)
        return meta

    def _index_title(self, meta: dict) -> None:
        if self.search is not None:
            self.search.add(meta["id"], "", "title", meta.get("title") or "", meta.get("updated_at") or 0)

    def get(self, session_id: str) -> dict:
        """The metadata (a placeholder for damaged metadata); NotFound when there is none."""
        try:
            return self.metadata.get(session_id)
        except Damaged as damaged:
            return damaged.placeholder

    def exists(self, session_id: str) -> bool:
        return self.metadata.exists(session_id)

    def list(self) -> list:
        """Every session, newest activity first, each with ``active_run``."""
        active = self.runs.active_runs()
        return [
            dict(meta, active_run={"id": active[meta["id"]]} if meta["id"] in active else None)
            for meta in self.metadata.list()
        ]

    def update(self, session_id: str, **changes) -> dict:
        """Change metadata fields (a new title repairs damaged metadata); streams hear it."""
        meta = self.metadata.update(session_id, **changes)
        self.streams.note_session_changed(session_id)
        if "title" in changes:
            self._index_title(meta)
        return meta

    def delete(self, session_id: str) -> None:
        """Delete a session with its runs, transcript, uploads and archives.

        Under the session lock, so a run cannot start and compaction cannot write the
        transcript while it goes (no resurrected data, no orphan journal). Its active run
        is cancelled first; RunNotOwned when another process runs it and cannot be asked
        (or, asked, did not end in time).
        """
        with self.logs.session_lock(session_id):
            active = self.runs.active_run_id(session_id)
            if active is not None:
                local = self.runs.is_local(active)
                self.runs.cancel(active, by="delete")
                if not local and self.runs.active_run_id(session_id) == active:
                    raise RunNotOwned(active)
            try:
                compacted = [run_id for run_id, _ in self.transcripts.read(session_id).runs]
            except OSError:
                compacted = []
            try:
                self.metadata.delete(session_id)
            except NotFound:
                pass
            self.logs.delete_session(session_id, compacted)
            self.transcripts.delete(session_id)
            shutil.rmtree(self.data_dir.uploads_dir(session_id), ignore_errors=True)
            shutil.rmtree(self.data_dir.workspace_dir(session_id), ignore_errors=True)
        self.data_dir.start_lock_path(session_id).unlink(missing_ok=True)
        self.views.forget_session(session_id)
        self.streams.note_session_changed(session_id)
        if self.search is not None:
            self.search.remove_session(session_id)
