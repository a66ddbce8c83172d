"""The application factory: the one place that wires the services together."""

import logging
import threading

from flask import Flask

from hermes_web.core.config import Config
from hermes_web.core.fsutil import ensure_dir
from hermes_web.core.services import register
from hermes_web.read.search import SearchIndex
from hermes_web.read.streams import Streams
from hermes_web.read.views import SessionViews
from hermes_web.redaction.records import RecordRedaction
from hermes_web.redaction.redactor import Redactor
from hermes_web.runs.agents import build_agents
from hermes_web.runs.manager import RunManager
from hermes_web.runs.sessions import Sessions
from hermes_web.security.auth_state import FileAuthState
from hermes_web.security.limits import FailureWindow
from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.logs import FileLogStore
from hermes_web.store.files.streams import FileStreams
from hermes_web.store.files.metadata import SessionStore
from hermes_web.store.files.transcripts import TranscriptStore
from hermes_web.store.logstore import StoreUnavailable
from hermes_web.store.uploads import UploadStore
from hermes_web.web.json_provider import JournalJSONProvider

log = logging.getLogger(__name__)


def create_app(config: Config = None, offload=None) -> Flask:
    """Build the Flask app. ``offload`` runs blocking fsyncs (the server passes a thread pool)."""
    config = config or Config.from_env()
    app = Flask(__name__, static_folder=None)
    app.json = JournalJSONProvider(app)
    register(app, "config", config)

    data_dir = DataDir(config.data_dir, config.uploads_dir).create()
    register(app, "data_dir", data_dir)
    durability = Durability(config.fsync_policy, config.fsync_interval, offload)
    logs, metadata, transcripts, auth_state, login_failures = _open_stores(config, data_dir, durability)
    register(app, "logs", logs)
    register(app, "transcripts", transcripts)
    redaction = RecordRedaction(Redactor(config.known_secrets), at_rest=config.redact_at_rest)
    register(app, "redaction", redaction)

    views = SessionViews(logs, transcripts, metadata)
    register(app, "views", views)
    # Local to each server, also with a shared store (docs/redis.md).
    search = SearchIndex(ensure_dir(data_dir.root / "index") / "search.sqlite", redaction.text)
    search.init_app(app)
    streams = Streams(logs, metadata, redaction, config)
    streams.init_app(app)
    upload_store = UploadStore(data_dir, config)
    upload_store.init_app(app)
    agents = build_agents(config, uploads=upload_store)  # tools read attachments through the store
    runs = RunManager(logs, metadata, transcripts, views, agents, redaction,
                      on_session_changed=streams.note_session_changed,
                      default_agent=agents.default, search=search, decision_timeout=config.approval_timeout,
                      run_timeout=config.run_timeout, silence_limit=config.run_silence)
    runs.init_app(app)
    sessions = Sessions(metadata, logs, transcripts, runs, views, streams, data_dir, search)
    sessions.init_app(app)
    # Durable Streams' generic streams live where the runs do (docs/durable-streams.md).
    ds_streams = _open_stream_store(config, data_dir, durability, redaction, logs)
    ds_streams.start_sweeper()
    register(app, "ds_streams", ds_streams)

    try:
        recovered = logs.recover_unfinished()
    except StoreUnavailable as error:
        # Answer 503s until the store is back rather than not start: the store's own
        # background work finishes what start-up could not.
        log.warning("%s; requests get 503 store_unavailable until it answers", error)
        recovered = 0
    if recovered:
        log.warning("recovered %d interrupted run(s)", recovered)
    if config.store_url:
        from hermes_web.read.search_feed import SearchFeed

        SearchFeed(search, sessions, views).follow(logs.notifier)
    if search.needs_build():
        # An older data dir (or a deleted index): index what it holds, in the background.
        threading.Thread(target=_build_search, args=(search, sessions, views), name="search-index", daemon=True).start()

    from hermes_web.web import (
        api,
        decisions,
        durable_streams,
        errors,
        events,
        exchange,
        guard,
        health,
        login,
        stream_limits,
        ui,
        uploads,
    )

    errors.init_app(app)
    guard.init_app(app, config, auth_state)
    login.init_app(app, login_failures, offload)
    stream_limits.init_app(app, config)
    health.init_app(app, config, data_dir)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(decisions.blueprint)
    app.register_blueprint(exchange.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(uploads.blueprint)
    app.register_blueprint(durable_streams.blueprint)
    app.register_blueprint(ui.blueprint)
    return app


def _open_stores(config, data_dir, durability):
    """``(logs, metadata, transcripts, auth_state, login_failures)``: the data dir's files
    (and this process's own failed-login windows), or the shared Redis of ``HERMES_WEB_STORE``."""
    if not config.store_url:
        return (FileLogStore(data_dir, durability).open_index(), SessionStore(data_dir), TranscriptStore(data_dir),
                FileAuthState(data_dir.root), FailureWindow(config.login_attempts, config.login_window_seconds))
    from hermes_web.store.redis import durability_warnings, open_stores

    stores = open_stores(config, durability)
    for warning in durability_warnings(stores.logs.client, config.fsync_policy):
        log.warning("%s", warning)
    stores.logs.start()
    return stores.logs, stores.metadata, stores.transcripts, stores.auth, stores.login_failures


def _open_stream_store(config, data_dir, durability, redaction, logs):
    if not config.store_url:
        return FileStreams(data_dir, durability, redaction)
    from hermes_web.store.redis.streams import RedisStreams

    return RedisStreams(logs.client, logs.beacons, logs.origin, redaction)


def open_auth_state(config):
    """The login state the server of ``config`` uses: the data dir's ``auth/`` files, or the
    shared Redis of ``HERMES_WEB_STORE`` (docs/security.md). For the command line."""
    if not config.store_url:
        return FileAuthState(config.data_dir)
    from hermes_web.store.redis import open_auth_state as open_redis_auth_state

    return open_redis_auth_state(config)


def _build_search(search, sessions, views) -> None:
    try:
        count = search.build(sessions, views)
    except Exception:
        log.exception("could not build the search index")
    else:
        if count:
            log.info("search index built: %d message(s)", count)


def shutdown(app) -> None:
    """End every running run (``run.interrupted``) and flush the journals."""
    from hermes_web.core.services import find_service

    runs = find_service(app, "runs")
    runs.shutdown()
    for agent in runs.agents.values():
        if hasattr(agent, "close"):
            agent.close()  # its idle worker processes
    find_service(app, "ds_streams").close_all()
    find_service(app, "logs").durability.stop()
