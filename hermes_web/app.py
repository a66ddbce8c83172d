"""The application factory: the one place that wires the services together."""

import dataclasses
import logging
import shutil

from flask import Flask

from hermes_web.agents import build_agents
from hermes_web.config import Config
from hermes_web.journal import Durability, TERMINAL_TYPES, journal_state, recover, writer_alive_at
from hermes_web.record_redaction import RecordRedaction
from hermes_web.redact import Redactor
from hermes_web.runs import RunManager, RunNotOwned
from hermes_web.store import DataDir, NotFound, SessionStore
from hermes_web.streams import Streams
from hermes_web.uploads import UploadStore
from hermes_web.views import SessionViews
from hermes_web.web.json_provider import JournalJSONProvider
from hermes_web.wakeup import Beacons, Watcher

log = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class RunLocation:
    session_id: str
    status: str
    committed: int
    compacted: bool


class Hermes:
    """The services of one server process, built from a :class:`Config`."""

    def __init__(self, config: Config, offload=None):
        self.config = config
        self.data_dir = DataDir(config.data_dir).create()
        self.sessions = SessionStore(self.data_dir)
        self.durability = Durability(config.fsync_policy, config.fsync_interval, offload)
        self.beacons = Beacons()
        self.watcher = Watcher()
        self.redaction = RecordRedaction(Redactor(config.known_secrets), at_rest=config.redact_at_rest)
        self.uploads = UploadStore(self.data_dir, config)
        self.runs = RunManager(
            self.data_dir,
            self.sessions,
            self.durability,
            self.beacons,
            build_agents(config),
            self.redaction,
            history=lambda session_id, before_run: self.views.history(session_id, before_run),
            on_session_changed=lambda session_id: self.streams.note_session_changed(session_id),
        )
        self.views = SessionViews(self.data_dir, self.sessions, self.runs)
        self.streams = Streams(
            self.data_dir, self.sessions, self.runs, self.beacons, self.watcher, self.redaction, config
        )

    def recover_all(self) -> int:
        """Recover every journal left without a terminal record by a dead process."""
        recovered = 0
        for session_dir in sorted(self.data_dir.journals_root.iterdir()):
            if not session_dir.is_dir():
                continue
            for unborn in session_dir.glob(".*.jsonl.new"):
                # A run whose creator died before renaming it into place was never
                # acknowledged: nothing refers to it.
                if not writer_alive_at(unborn):
                    unborn.unlink(missing_ok=True)
            for run_id in self.data_dir.run_ids(session_dir.name):
                path = session_dir / f"{run_id}.jsonl"
                _, last = journal_state(path)
                if (last is None or last.get("type") not in TERMINAL_TYPES) and recover(path) == "recovered":
                    recovered += 1
        return recovered

    def locate_run(self, run_id: str) -> RunLocation:
        """Where a run lives: its journal, or the transcript it was compacted into.

        Raises NotFound for a run that is in neither.
        """
        session_id = self.data_dir.find_run_session(run_id)
        if session_id is not None:
            path = self.data_dir.journal_path(session_id, run_id)
            try:
                committed, last = journal_state(path)
            except FileNotFoundError:
                session_id = None
            else:
                status = "running"
                if last is not None and last.get("type") in TERMINAL_TYPES:
                    status = last["type"].split(".", 1)[1]
                elif not self.runs.is_local(run_id) and recover(path) == "recovered":
                    committed, last = journal_state(path)
                    status = "interrupted"
                return RunLocation(session_id, status, committed, compacted=False)
        for session_id in self.data_dir.session_ids():
            for message in self.views.transcript(session_id):
                if message.get("run_id") == run_id and message.get("role") == "assistant":
                    offset = int(str(message.get("cursor", ":0")).rsplit(":", 1)[1])
                    return RunLocation(session_id, message.get("status"), offset, compacted=True)
        raise NotFound(run_id)

    def delete_session(self, session_id: str) -> None:
        """Delete a session with its journals, transcript, uploads and archives."""
        active = self.runs.active_run_id(session_id)
        if active is not None:
            if not self.runs.is_local(active):
                raise RunNotOwned(active)
            self.runs.cancel(active, by="delete")
        try:
            self.sessions.delete(session_id)
        except NotFound:
            pass
        for path in (
            self.data_dir.journals_dir(session_id),
            self.data_dir.uploads_dir(session_id),
            self.data_dir.archive_dir(session_id),
        ):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.data_dir.transcript_path(session_id), self.data_dir.start_lock_path(session_id)):
            path.unlink(missing_ok=True)
        self.views.forget_session(session_id)
        self.streams.note_session_changed(session_id)


def create_app(config: Config = None, offload=None) -> Flask:
    """Build the Flask app. ``offload`` runs blocking fsyncs (the server passes a thread pool)."""
    config = config or Config.from_env()
    app = Flask(__name__, static_folder=None)
    app.json = JournalJSONProvider(app)
    hermes = Hermes(config, offload)
    app.extensions["hermes"] = hermes
    recovered = hermes.recover_all()
    if recovered:
        log.warning("recovered %d interrupted run(s)", recovered)

    from hermes_web.web import api, errors, events, ui, uploads

    errors.init_app(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(uploads.blueprint)
    app.register_blueprint(ui.blueprint)
    return app
