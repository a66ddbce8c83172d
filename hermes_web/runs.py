"""Runs: start, execute, cancel and end; the only code that writes journals.

A run is one user turn: ``run.started`` (durable before the API answers), the events its
agent yields, then exactly one terminal record (durable). One active run per session.
"""

import contextlib
import fcntl
import json
import logging
import os
import threading
import time

from hermes_web.agents import DEFAULT_AGENT, AgentRequest, UnknownAgent
from hermes_web.fsutil import FILE_MODE, ensure_dir
from hermes_web.ids import new_run_id
from hermes_web.journal import JournalWriter, is_terminal, journal_state, recover

log = logging.getLogger(__name__)

# Payloads above this are truncated with a visible marker so a record stays one bounded
# line (MAX_RECORD_BYTES) and the browser never has to render megabytes of tool output.
MAX_PAYLOAD_CHARS = 256 * 1024
CANCEL_WAIT_SECONDS = 2.0


class RunConflict(Exception):
    """The session already has an active run."""

    def __init__(self, run_id):
        super().__init__(run_id)
        self.run_id = run_id


class RunNotOwned(Exception):
    """The run is written by another live process."""


class ShuttingDown(Exception):
    """The server is stopping and starts no more runs."""


class _Run:
    __slots__ = ("run_id", "session_id", "writer", "cancel", "cancelled_by", "finishing", "done", "thread")

    def __init__(self, run_id, session_id, writer):
        self.run_id = run_id
        self.session_id = session_id
        self.writer = writer
        self.cancel = threading.Event()
        self.cancelled_by = None
        self.finishing = False
        self.done = threading.Event()
        self.thread = None


class RunManager:
    """Owns this process's active runs and their journal writers."""

    def __init__(self, data_dir, sessions, durability, beacons, agents, redaction, history, on_session_changed):
        self.data_dir = data_dir
        self.sessions = sessions
        self.durability = durability
        self.beacons = beacons
        self.agents = agents
        self.redaction = redaction
        self.history = history  # (session_id, before_run) -> earlier messages, for the agent
        self.on_session_changed = on_session_changed  # session_id -> None
        self._lock = threading.Lock()
        self._runs = {}  # run_id -> _Run
        self._by_session = {}  # session_id -> run_id
        self._shutting_down = False

    # ------------------------------------------------------------ queries

    def is_local(self, run_id: str) -> bool:
        return run_id in self._runs

    def active_run_id(self, session_id: str):
        """The session's active run: this process's, or one a live process still writes.

        A non-terminal journal whose lock is free is recovered on the way (its writer died).
        """
        run_id = self._by_session.get(session_id)
        if run_id is not None:
            return run_id
        run_ids = self.data_dir.run_ids(session_id)
        if not run_ids:
            return None
        last = run_ids[-1]
        path = self.data_dir.journal_path(session_id, last)
        try:
            _, record = journal_state(path)
        except FileNotFoundError:
            return None
        if record is not None and is_terminal(record):
            return None
        return last if recover(path) == "locked" else None

    # ------------------------------------------------------------ lifecycle

    def start(self, session_id: str, text: str, attachments=(), agent_name: str = DEFAULT_AGENT) -> dict:
        """Start a run; return ``{run_id, cursor}`` once ``run.started`` is durable."""
        agent = self.agents.get(agent_name)
        if agent is None:
            raise UnknownAgent(agent_name)
        previous = self._runs.get(self._by_session.get(session_id))
        if previous is not None and previous.finishing:
            # Its terminal record is being written: a client that saw it may already send
            # the next message, which must not be refused as a conflict.
            previous.done.wait(CANCEL_WAIT_SECONDS)
        with self._lock, self._starting(session_id):
            if self._shutting_down:
                raise ShuttingDown()
            active = self.active_run_id(session_id)
            if active is not None:
                raise RunConflict(active)
            run_id = new_run_id()
            existing = self.data_dir.run_ids(session_id)
            while existing and run_id <= existing[-1]:
                run_id = new_run_id()  # another process's clock ran ahead: stay sorted
            filters = self.redaction.for_run()
            started = {
                "type": "run.started",
                "ts": time.time(),
                "run_id": run_id,
                "session_id": session_id,
                "user": {"id": f"{run_id}-user", "text": text, "attachments": list(attachments)},
                "agent": {"name": agent.name, "model": agent.model},
            }
            (record,) = filters.process(started)
            writer = self._create_journal(session_id, run_id, record)
            run = _Run(run_id, session_id, writer)
            self._runs[run_id] = run
            self._by_session[session_id] = run_id
        self.sessions.update(session_id)
        self._fire(run)
        request = AgentRequest(
            session_id=session_id,
            run_id=run_id,
            text=text,
            attachments=tuple(
                {key: item.get(key) for key in ("id", "name", "mime", "size")} for item in attachments
            ),
            history=tuple(self.history(session_id, before_run=run_id)),
        )
        run.thread = threading.Thread(
            target=self._execute, args=(run, agent, request, filters), name=f"run-{run_id}", daemon=True
        )
        run.thread.start()
        return {"run_id": run_id, "cursor": f"{run_id}:0"}

    @contextlib.contextmanager
    def _starting(self, session_id: str):
        """Exclusive across processes while a run of the session starts: a second ``serve``
        on the same data dir sees the first one's run (its journal, locked) or waits."""
        path = self.data_dir.start_lock_path(session_id)
        ensure_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.005)  # held for one start (milliseconds); never block the loop
            yield
        finally:
            os.close(fd)

    def _create_journal(self, session_id: str, run_id: str, record: dict) -> JournalWriter:
        path = self.data_dir.journal_path(session_id, run_id)
        for attempt in (1, 2):
            ensure_dir(path.parent)
            try:
                return JournalWriter.create(path, record, self.durability)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                # compaction removed the emptied journal directory in between: make it again

    def cancel(self, run_id: str, by: str = "user") -> None:
        """Ask a local run to stop and wait (bounded) until its terminal record is written.

        Idempotent: cancelling a finished run does nothing. A dead run is recovered.
        """
        run = self._runs.get(run_id)
        if run is not None:
            if run.cancelled_by is None:
                run.cancelled_by = by
            run.cancel.set()
            run.done.wait(CANCEL_WAIT_SECONDS)
            return
        session_id = self.data_dir.find_run_session(run_id)
        if session_id is None:
            return
        path = self.data_dir.journal_path(session_id, run_id)
        _, record = journal_state(path)
        if record is not None and is_terminal(record):
            return
        if recover(path) == "locked":
            raise RunNotOwned(run_id)

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
        self.durability.stop()

    # ------------------------------------------------------------ execution

    def _execute(self, run: _Run, agent, request: AgentRequest, filters) -> None:
        terminal = None
        try:
            for event in agent.stream(request, run.cancel):
                if run.cancel.is_set():
                    break
                if not isinstance(event, dict) or is_terminal(event) or event.get("type") == "run.started":
                    raise TypeError(f"agent yielded an invalid event: {event!r:.200}")
                self._append(run, filters, event)
        except Exception as exc:  # the agent or provider failed: the run says why
            log.warning("run %s failed: %s", run.run_id, exc)
            terminal = {"type": "run.failed", "error": {"type": type(exc).__name__, "message": str(exc)}}
        try:
            for record in filters.finish():
                self._write(run, record)
            if terminal is None:
                if run.cancel.is_set() and run.cancelled_by is None:
                    terminal = {"type": "run.interrupted", "reason": "server shutdown"}
                elif run.cancel.is_set():
                    terminal = {"type": "run.cancelled", "by": run.cancelled_by}
                else:
                    terminal = {"type": "run.completed"}
            terminal["ts"] = time.time()
            # Metadata first: whoever sees the terminal record sees the final activity time.
            self._touch_session(run.session_id)
            run.finishing = True
            for record in filters.process(terminal):
                self._write(run, record, durable=True)
        except Exception:
            log.exception("run %s: could not write its terminal record", run.run_id)
        finally:
            run.writer.close()
            with self._lock:
                self._runs.pop(run.run_id, None)
                if self._by_session.get(run.session_id) == run.run_id:
                    del self._by_session[run.session_id]
            run.done.set()
            self._fire(run)

    def _touch_session(self, session_id: str) -> None:
        try:
            self.sessions.update(session_id)
        except Exception:  # deleted meanwhile
            pass

    def _append(self, run: _Run, filters, event: dict) -> None:
        record = {"type": event["type"], "ts": time.time()}
        record.update((key, value) for key, value in event.items() if key not in ("type", "ts"))
        for bounded in bound_record(record):
            for ready in filters.process(bounded):
                self._write(run, ready)
                if ready["type"] == "title" and ready.get("title"):
                    try:
                        self.sessions.update(run.session_id, title=ready["title"])
                    except Exception:  # the session was deleted meanwhile
                        continue
                    self.on_session_changed(run.session_id)

    def _write(self, run: _Run, record: dict, durable: bool = False) -> None:
        run.writer.append(record, durable=durable)
        self._fire(run)

    def _fire(self, run: _Run) -> None:
        self.beacons.fire(("run", run.run_id))
        self.beacons.fire(("session", run.session_id))


def bound_record(record: dict) -> list:
    """Keep records bounded: long deltas are split, oversized payloads truncated visibly."""
    kind = record["type"]
    if kind in ("text.delta", "reasoning.delta", "tool.output"):
        text = record.get("text") or ""
        if len(text) <= MAX_PAYLOAD_CHARS:
            return [record]
        return [
            dict(record, text=text[start:start + MAX_PAYLOAD_CHARS])
            for start in range(0, len(text), MAX_PAYLOAD_CHARS)
        ]
    for field in ("args", "result"):
        if field in record:
            record[field] = _truncate_payload(record[field])
    return [record]


def _truncate_payload(value):
    if isinstance(value, str):
        if len(value) <= MAX_PAYLOAD_CHARS:
            return value
        return value[:MAX_PAYLOAD_CHARS] + f"\n…[truncated: {len(value) - MAX_PAYLOAD_CHARS} more characters]"
    encoded = json.dumps(value, ensure_ascii=False, default=str)
    if len(encoded) <= MAX_PAYLOAD_CHARS:
        return value
    return encoded[:MAX_PAYLOAD_CHARS] + f"\n…[truncated: {len(encoded) - MAX_PAYLOAD_CHARS} more characters]"
