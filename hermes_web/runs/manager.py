"""Runs: start, execute, cancel and end; the only code that writes run logs.

A run is one user turn: ``run.started`` (durable before the API answers), the events its
agent yields, then exactly one terminal record (durable). One active run per session.
"""

import dataclasses
import logging
import threading
import time

from hermes_web.core.codec import decode_record
from hermes_web.core.metrics import metrics
from hermes_web.core.ids import new_run_id
from hermes_web.core.records import bound_record
from hermes_web.runs.agents import AgentRequest, RunSettings, UnknownAgent
from hermes_web.runs.decisions import DEFAULT_TIMEOUT_SECONDS, RunDecisions, settled_in_view
from hermes_web.store.logstore import LogExists, LogNotFound, OwnershipLost, StoreFull, StoreUnavailable, is_terminal
from hermes_web.store.metadata import Damaged, NotFound

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 2.0
# The watchdog's limits (HERMES_WEB_RUN_TIMEOUT_S, HERMES_WEB_RUN_SILENCE_S): how long a
# run may last, and how long its agent may give no sign (no record, no heartbeat) while
# nobody is asked anything. Either ends the run failed and stops its agent.
DEFAULT_RUN_TIMEOUT_SECONDS = 1800.0
DEFAULT_SILENCE_SECONDS = 300.0
# After the watchdog stopped a run, how long its agent has to return before the watchdog
# writes the terminal record itself (an agent stuck in a call that ignores its cancel).
STOP_GRACE_SECONDS = 5.0
HEARTBEAT = "heartbeat"  # an agent's sign of life: never journaled
DISK_FULL = {"type": "DiskFull", "message": "the disk that holds the journals is full: the run stopped after "
             "what it had written. Free some space, then send the message again."}


class RunConflict(Exception):
    """The session already has an active run."""

    def __init__(self, run_id):
        super().__init__(run_id)
        self.run_id = run_id


class RunNotOwned(Exception):
    """The run is written by another live process that cannot be asked to stop."""


class ShuttingDown(Exception):
    """The server is stopping and starts no more runs."""


class InvalidReplaces(ValueError):
    """``replaces`` does not name a finished run on the session's active branch (PROTOCOL
    1.6); the message says which of these it is not."""


def check_replaces(tree, run_id: str) -> None:
    """InvalidReplaces unless ``run_id`` is a run of ``tree``'s active branch. A version
    that was itself replaced has nothing left to cut: the new run would only be added at
    the end, its ``replaces`` ignored."""
    if run_id not in tree:
        raise InvalidReplaces(f"no run {run_id} in this session")
    if run_id not in tree.active:
        raise InvalidReplaces(f"run {run_id} was replaced by a newer version: replace the version on the active branch")


@dataclasses.dataclass(frozen=True)
class RunLocation:
    """Where a run is and how it stands (``GET /api/runs/<rid>``)."""

    session_id: str
    status: str
    committed: int
    compacted: bool


class _Run:
    __slots__ = ("run_id", "session_id", "writer", "cancel", "cancelled_by", "finishing", "done", "thread", "answer",
                 "lock", "decisions", "filters", "started_at", "last_sign", "stopped", "stopped_at", "ended", "agent")

    def __init__(self, run_id, session_id, writer):
        self.run_id = run_id
        self.session_id = session_id
        self.writer = writer
        self.cancel = threading.Event()
        self.cancelled_by = None
        self.finishing = False
        self.done = threading.Event()
        self.thread = None
        self.answer = []  # the answer text as written (redacted), for the search index
        # Appends come from the run's thread and from whichever thread settles a decision.
        self.lock = threading.RLock()
        self.decisions = None
        self.filters = None
        self.started_at = self.last_sign = time.monotonic()
        self.stopped = None  # the watchdog's error, once it stopped the run
        self.stopped_at = None
        self.ended = False  # its terminal record is written (or given up on)
        self.agent = ""


class RunManager:
    """Owns this process's active runs and their writers."""

    def __init__(self, logs, sessions, transcripts, views, agents, redaction, on_session_changed,
                 default_agent: str = "demo", search=None, decision_timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 run_timeout: float = DEFAULT_RUN_TIMEOUT_SECONDS, silence_limit: float = DEFAULT_SILENCE_SECONDS):
        self.logs = logs
        self.sessions = sessions
        self.transcripts = transcripts
        self.views = views
        self.agents = agents
        self.default_agent = default_agent
        self.redaction = redaction
        self.on_session_changed = on_session_changed  # session_id -> None
        self.search = search
        self.decision_timeout = decision_timeout
        self.run_timeout = run_timeout
        self.silence_limit = silence_limit
        self._watchdog = None
        self._lock = threading.Lock()
        self._runs = {}  # run_id -> _Run
        self._by_session = {}  # session_id -> run_id
        self._shutting_down = False

    def init_app(self, app) -> None:
        from hermes_web.core.services import register

        register(app, "runs", self)

    # ------------------------------------------------------------ queries

    def is_local(self, run_id: str) -> bool:
        return run_id in self._runs

    def active_run_id(self, session_id: str):
        """The session's active run: this process's, or one a live process still writes.

        A run whose writer died is finished on the way (its log settles).
        """
        run_id = self._by_session.get(session_id)
        if run_id is not None:
            return run_id
        run_ids = self.logs.runs(session_id)
        if not run_ids:
            return None
        return run_ids[-1] if self._running(session_id, run_ids[-1]) else None

    def active_runs(self) -> dict:
        """``{session_id: run_id}`` of every active run, from the store's unfinished runs
        (no scan of the sessions)."""
        active = {}
        for session_id, run_id in self.logs.unfinished():
            if session_id in active:
                continue
            if run_id in self._runs or self._running(session_id, run_id):
                active[session_id] = run_id
        return active

    def _running(self, session_id: str, run_id: str) -> bool:
        try:
            with self.logs.open(run_id, session_id) as run_log:
                _, last = run_log.tail()
        except (LogNotFound, OSError):
            return False
        return not is_terminal(last)

    def locate(self, run_id: str) -> RunLocation:
        """Where a run lives: its log, or the transcript it was compacted into. O(1) in the
        number of sessions: the store knows a run's session. NotFound when in neither."""
        session_id = self.logs.locate(run_id)
        if session_id is None:
            raise NotFound(run_id)
        try:
            with self.logs.open(run_id, session_id) as run_log:
                committed, last = run_log.tail()
        except LogNotFound:
            pass
        else:
            status = last["type"].split(".", 1)[1] if is_terminal(last) else "running"
            return RunLocation(session_id, status, committed, compacted=False)
        try:
            assistant = self.transcripts.read(session_id).assistant(run_id)
        except OSError:
            assistant = None
        if assistant is None:
            raise NotFound(run_id)
        try:
            offset = int(str(assistant.get("cursor", ":0")).rsplit(":", 1)[1])
        except ValueError:
            offset = 0
        return RunLocation(session_id, assistant.get("status"), offset, compacted=True)

    # ------------------------------------------------------------ lifecycle

    def start(self, session_id: str, text: str, attachments=(), agent_name: str = None, replaces: str = None,
              model: str = None, settings: RunSettings = RunSettings()) -> dict:
        """Start a run; return ``{run_id, cursor}`` once ``run.started`` is durable.

        ``agent_name`` defaults to the default agent, ``model`` to the agent's default model;
        the session remembers both for its next run.
        """
        agent = self.agents.get(agent_name or self.default_agent)
        if agent is None:
            raise UnknownAgent(agent_name)
        model = model or agent.model
        previous = self._runs.get(self._by_session.get(session_id))
        if previous is not None and previous.finishing:
            # Its terminal record is being written: a client that saw it may already send
            # the next message, which must not be refused as a conflict.
            previous.done.wait(CANCEL_WAIT_SECONDS)
        with self._lock, self.logs.session_lock(session_id):
            if self._shutting_down:
                raise ShuttingDown()
            if not self.sessions.exists(session_id):
                raise NotFound(session_id)  # deleted meanwhile: never a journal without a session
            active = self.active_run_id(session_id)
            if active is not None:
                raise RunConflict(active)
            if replaces is not None:
                check_replaces(self.views.session_runs(session_id).tree, replaces)
            run_id = new_run_id(session_id)
            existing = self.logs.runs(session_id)
            while existing and run_id <= existing[-1]:
                run_id = new_run_id(session_id)  # another process's clock ran ahead: stay sorted
            filters = self.redaction.for_run()
            started = {
                "type": "run.started",
                "ts": time.time(),
                "run_id": run_id,
                "session_id": session_id,
                "user": {"id": f"{run_id}-user", "text": text, "attachments": list(attachments)},
                "agent": {"name": agent.name, "model": model},
            }
            if replaces is not None:
                started["replaces"] = replaces
            (record,) = filters.process(started)
            try:
                writer = self.logs.create(session_id, run_id, record)
            except LogExists:
                raise RunConflict(run_id) from None
            run = _Run(run_id, session_id, writer)
            run.filters = filters
            run.decisions = RunDecisions(lambda record: self._append(run, filters, record), run.cancel, self.decision_timeout)
            writer.on_cancel = lambda by, run=run: self._request_local_cancel(run, by)
            run.agent = agent.name
            self._runs[run_id] = run
            self._by_session[session_id] = run_id
            metrics.run_started(agent.name)
            self._start_watchdog()
        # From here on the run exists: any failure before its thread runs still ends it.
        try:
            self._touch_session(session_id, agent=agent.name, model=model)
            if self.search is not None:
                self.search.add(session_id, run_id, "user", text, started["ts"])
            tree = self.views.session_runs(session_id).tree
            first_turn = run_id not in tree or not tree.before(run_id)
            history = ()
            if getattr(agent, "uses_history", True):
                history = tuple(self.views.history(session_id, before_run=run_id))
            request = AgentRequest(
                session_id=session_id,
                run_id=run_id,
                text=text,
                attachments=tuple(
                    {key: item.get(key) for key in ("id", "name", "mime", "size")} for item in attachments
                ),
                history=history,
                first_turn=first_turn,
                model=model,
                settings=settings,
                decisions=run.decisions,
            )
            run.thread = threading.Thread(
                target=self._execute, args=(run, agent, request, filters), name=f"run-{run_id}", daemon=True
            )
            run.thread.start()
        except BaseException as error:
            log.exception("run %s could not start", run_id)
            self._end(run, filters, {"type": "run.failed", "error": {
                "type": type(error).__name__, "message": f"the run could not start: {error}"}})
            raise
        return {"run_id": run_id, "cursor": f"{run_id}:0"}

    def cancel(self, run_id: str, by: str = "user") -> None:
        """Ask a run to stop and wait (bounded) until its terminal record is written.

        A local run is told directly; another process's run through the store
        (``LogStore.request_cancel``), RunNotOwned when the store cannot reach it.
        Idempotent: cancelling a finished run does nothing. A dead run is finished.
        """
        run = self._runs.get(run_id)
        if run is not None:
            self._request_local_cancel(run, by)
            run.done.wait(CANCEL_WAIT_SECONDS)
            return
        try:
            with self.logs.open(run_id) as run_log:
                committed, last = run_log.tail()
                if is_terminal(last) or not run_log.owner_alive():
                    return
                if not self.logs.request_cancel(run_id, by):
                    raise RunNotOwned(run_id)
                _wait_for_end(run_log, committed, CANCEL_WAIT_SECONDS)
        except LogNotFound:
            return

    def _request_local_cancel(self, run: _Run, by: str) -> None:
        if run.cancelled_by is None:
            run.cancelled_by = by
        run.cancel.set()

    def answer(self, run_id: str, kind: str, decision_id: str, value) -> dict:
        """Settle a pending approval or question of a run with a person's answer; its settling
        record once journaled (see :meth:`RunDecisions.answer` for what it raises).

        A finished run's requests are looked up in its journal or transcript: settled ones
        raise AlreadySettled, ones its dead server left waiting DecisionExpired. RunNotOwned
        when another live process runs it (only the owner writes its journal); NotFound for
        an unknown run.
        """
        run = self._runs.get(run_id)
        if run is not None:
            return run.decisions.answer(kind, decision_id, value)
        location = self.locate(run_id)
        if location.status == "running":
            raise RunNotOwned(run_id)
        messages = self.views.run_messages(location.session_id, run_id)
        return settled_in_view(messages[-1] if messages else {}, kind, decision_id)

    def shutdown(self, timeout: float = 3.0) -> None:
        """End every local run with a terminal record (``run.interrupted``, reason shutdown)."""
        with self._lock:
            self._shutting_down = True
            runs = list(self._runs.values())
        for run in runs:
            run.cancel.set()
        deadline = time.monotonic() + timeout
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ execution

    def _execute(self, run: _Run, agent, request: AgentRequest, filters) -> None:
        terminal = None
        try:
            for event in agent.stream(request, run.cancel):
                run.last_sign = time.monotonic()
                if run.cancel.is_set():
                    break
                if not isinstance(event, dict) or is_terminal(event) or event.get("type") == "run.started":
                    raise TypeError(f"agent yielded an invalid event: {event!r:.200}")
                if event.get("type") == HEARTBEAT:
                    continue
                self._append(run, filters, event)
        except StoreFull as full:
            log.warning("run %s stopped: the journal's disk is full (%s)", run.run_id, full)
            terminal = {"type": "run.failed", "error": dict(DISK_FULL)}
        except Exception as exc:  # the agent or provider failed: the run says why
            log.warning("run %s failed: %s", run.run_id, exc)
            terminal = {"type": "run.failed", "error": {"type": type(exc).__name__, "message": str(exc)}}
        if run.stopped is not None:
            terminal = {"type": "run.failed", "error": dict(run.stopped)}  # what the agent said next is moot
        if terminal is None:
            if run.cancel.is_set() and run.cancelled_by is None:
                terminal = {"type": "run.interrupted", "reason": "server shutdown"}
            elif run.cancel.is_set():
                terminal = {"type": "run.cancelled", "by": run.cancelled_by}
            else:
                terminal = {"type": "run.completed"}
        self._end(run, filters, terminal)

    # ------------------------------------------------------------ the watchdog

    def _start_watchdog(self) -> None:
        """One thread for all runs of this process, started with the first run."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="run-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        tick = max(0.05, min(1.0, self.run_timeout / 10, self.silence_limit / 10))
        while True:
            time.sleep(tick)
            for run in list(self._runs.values()):
                try:
                    self._check(run, time.monotonic())
                except Exception:
                    log.exception("run %s: the watchdog could not check it", run.run_id)

    def _check(self, run: _Run, now: float) -> None:
        if run.ended:
            return
        if run.stopped is not None:
            if not run.done.is_set() and now - run.stopped_at >= STOP_GRACE_SECONDS:
                log.warning("run %s: its agent did not stop within %g s; ending it without it", run.run_id,
                            STOP_GRACE_SECONDS)
                self._end(run, run.filters, {"type": "run.failed", "error": dict(run.stopped)})
            return
        if run.cancel.is_set():
            return  # a cancel or a shutdown is ending it already
        if run.decisions is not None and run.decisions.pending():
            run.last_sign = now  # a person is asked: that wait has its own timeout
        if now - run.started_at >= self.run_timeout:
            error = {"type": "RunTimedOut", "message": (
                f"the run was stopped after {self.run_timeout:g} s, the longest a run may last "
                "(HERMES_WEB_RUN_TIMEOUT_S); what it had written is kept")}
        elif now - run.last_sign >= self.silence_limit:
            error = {"type": "AgentSilent", "message": (
                f"the agent gave no sign of life for {self.silence_limit:g} s (HERMES_WEB_RUN_SILENCE_S), "
                "so the run was stopped; what it had written is kept")}
        else:
            return
        log.warning("run %s: %s", run.run_id, error["message"])
        run.stopped, run.stopped_at = error, now
        run.cancel.set()  # the agent stops (a Hermes worker is killed if it does not)

    def _end(self, run: _Run, filters, terminal: dict) -> None:
        """Settle what still waits for a decision, write the terminal record (durably), close
        the writer, forget the run. Once: a later call (the run's own thread, after the
        watchdog ended it without it) does nothing."""
        with run.lock:
            if run.ended:
                return
            run.ended = True
        try:
            run.decisions.close()
        except Exception:
            log.exception("run %s: could not settle its pending decisions", run.run_id)
        run.lock.acquire()
        try:
            try:
                for record in filters.finish():
                    _write(run, record)
                    if record["type"] == "text.delta":
                        run.answer.append(record.get("text_redacted", record.get("text")) or "")
            except StoreFull:
                terminal = {"type": "run.failed", "error": dict(DISK_FULL)}
            if self.search is not None:
                # Before the terminal record: whoever sees the run end can find its answer.
                self.search.add(run.session_id, run.run_id, "answer", "".join(run.answer), time.time())
            terminal["ts"] = time.time()
            # Metadata first: whoever sees the terminal record sees the final activity time.
            self._touch_session(run.session_id)
            run.finishing = True
            for record in filters.process(terminal):
                _write(run, record, durable=True)
        except (StoreUnavailable, OwnershipLost) as error:
            # The store's own recovery ends the run (run.interrupted once the lease lapses).
            log.warning("run %s: could not write its terminal record: %s", run.run_id, error)
        except Exception:
            log.exception("run %s: could not write its terminal record", run.run_id)
        finally:
            run.lock.release()
            try:
                run.writer.close()
            except OSError:
                log.exception("run %s: could not close its log", run.run_id)
            with self._lock:
                self._runs.pop(run.run_id, None)
                if self._by_session.get(run.session_id) == run.run_id:
                    del self._by_session[run.session_id]
            metrics.run_finished(run.agent, terminal["type"])
            run.done.set()
            self.logs.notify_session(run.session_id)

    def _touch_session(self, session_id: str, **changes) -> None:
        try:
            self.sessions.update(session_id, **changes)
        except (NotFound, Damaged, OSError, StoreUnavailable):  # deleted or unreadable meanwhile
            pass

    def _append(self, run: _Run, filters, event: dict) -> None:
        with run.lock:
            if run.finishing:
                raise RuntimeError(f"run {run.run_id} has ended: nothing may follow its terminal record")
            self._append_locked(run, filters, event)

    def _append_locked(self, run: _Run, filters, event: dict) -> None:
        record = {"type": event["type"], "ts": time.time()}
        record.update((key, value) for key, value in event.items() if key not in ("type", "ts"))
        for bounded in bound_record(record):
            for ready in filters.process(bounded):
                _write(run, ready)
                kind = ready["type"]
                if kind == "text.delta":
                    run.answer.append(ready.get("text_redacted", ready.get("text")) or "")
                elif kind == "title" and ready.get("title"):
                    try:
                        self.sessions.update(run.session_id, title=ready["title"])
                    except (NotFound, Damaged, OSError):  # deleted or unreadable meanwhile
                        continue
                    self.on_session_changed(run.session_id)
                    if self.search is not None:
                        self.search.add(run.session_id, "", "title", ready["title"], time.time())


def _wait_for_end(run_log, offset: int, timeout: float) -> None:
    """Follow ``run_log`` from ``offset`` until a terminal record or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for line, end_offset in run_log.read(offset):
            offset = end_offset
            if is_terminal(decode_record(line)):
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        run_log.wait(offset, min(remaining, 0.25))


def _write(run: _Run, record: dict, durable: bool = False) -> None:
    """Append one record to the run's log, timed for ``/metrics``."""
    started = time.perf_counter()
    run.writer.append(record, durable=durable)
    metrics.appended(time.perf_counter() - started)
