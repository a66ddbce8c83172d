"""The ``hermes`` agent: Hermes Agent (PyPI ``hermes-agent``) behind durable runs.

Offered when the interpreter named by ``HERMES_WEB_HERMES_PYTHON`` (default: the server's
own) can import Hermes Agent. Each run is one worker process (``hermes_workers.py``) that
runs one turn of Hermes with the session's history, in the session's working directory
(``<data dir>/workspaces/<session_id>/``). What Hermes streams becomes the run's records
exactly as any agent's; its approvals of dangerous commands and its clarifying questions
wait for a person through the run's decisions. Hermes's own configuration
(``$HERMES_HOME``, by default ``~/.hermes``) chooses the provider, model and toolsets unless
the ``HERMES_WEB_HERMES_*`` settings say otherwise. Details: docs/agents.md.
"""

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import threading

from hermes_web.core.fsutil import ensure_dir
from hermes_web.core.ids import is_valid_id, new_call_id
from hermes_web.runs.agents.base import AgentRequest, title_for
from hermes_web.runs.agents.conversation import assistant_messages
from hermes_web.runs.agents.hermes_worker import STATES
from hermes_web.runs.agents.hermes_workers import ENDED, NOTHING, Worker, WorkerPool, worker_environment
from hermes_web.store.uploads import UnknownAttachment

AGENT_NAME = "hermes"
# How often a run looks at its cancel flag while Hermes works (the Agent contract: 100 ms).
POLL_SECONDS = 0.1
PROBE_TIMEOUT_SECONDS = 30.0
_MODEL_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_COPIED_ATTACHMENT_BYTES = 64 * 1024 * 1024
_PROBE = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('run_agent') else 3)"


class HermesFailed(Exception):
    """Hermes Agent, its provider or its worker process failed (the message says how)."""


@dataclasses.dataclass(frozen=True)
class HermesSettings:
    """What hermes_web tells Hermes; empty fields leave Hermes's own configuration in charge."""

    python: str = ""  # the interpreter that imports Hermes Agent ("" = the server's)
    base_url: str = ""  # an OpenAI-compatible endpoint instead of Hermes's configured provider
    model: str = ""
    api_key: str = dataclasses.field(default="", repr=False)
    toolsets: tuple = ()  # Hermes toolset names ("" = what Hermes's CLI enables)
    pass_env: tuple = ()  # more variables of the server's environment the worker may see
    stream: bool = True  # False: Hermes asks its provider without streaming

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable


def hermes_importable(python: str) -> bool:
    """True when ``python`` can import Hermes Agent (without importing it here)."""
    # Not realpath: every venv's python links to the same base interpreter.
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return importlib.util.find_spec("run_agent") is not None
    try:
        return subprocess.run([python, "-I", "-c", _PROBE], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_SECONDS).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class HermesAgent:
    """The ``hermes`` agent of a server."""

    name = AGENT_NAME
    uses_history = True

    def __init__(self, settings: HermesSettings, workspaces_root, uploads=None, environ=None, warm: bool = True):
        self.settings = settings
        self.model = settings.model
        self.workspaces_root = workspaces_root
        self._uploads = uploads
        environment = worker_environment(os.environ if environ is None else environ, settings.pass_env)
        self._pool = WorkerPool(lambda: Worker(settings.interpreter, environment), on_ready=self._note_ready)
        self.version = ""
        if warm:
            self._pool.warm()

    def _note_ready(self, info: dict) -> None:
        self.version = str(info.get("version") or "")
        if not self.settings.model and isinstance(info.get("model"), str) and _MODEL_NAME.fullmatch(info["model"]):
            self.model = info["model"]  # what Hermes is configured with, once a worker said

    def models(self) -> list:
        return [self.model] if self.model else []

    def accepts(self, model: str) -> bool:
        """Any model name: Hermes's provider decides what it serves."""
        return isinstance(model, str) and bool(_MODEL_NAME.fullmatch(model))

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------ a run

    def stream(self, request: AgentRequest, cancel: threading.Event):
        if request.first_turn:
            yield {"type": "title", "title": title_for(request.text)}
        workspace = ensure_dir(self.workspaces_root / request.session_id)
        job = {
            "type": "run",
            "cwd": str(workspace),
            "task_id": request.session_id,
            "text": self._user_text(request.text, self._copied(workspace, request.session_id, request.attachments)),
            "history": self._history(request, workspace),
            "agent": {
                "base_url": self.settings.base_url,
                "api_key": self.settings.api_key,
                "model": request.model or self.settings.model,
                "toolsets": list(self.settings.toolsets),
                "system_prompt": request.settings.system_prompt,
                "stream": self.settings.stream,
            },
        }
        try:
            worker = self._pool.take()
        except OSError as error:
            raise HermesFailed(f"could not start {self.settings.interpreter} for Hermes Agent: {error}") from None
        call_ids = {}  # Hermes's call id -> the run's
        try:
            worker.send(job)
            while not cancel.is_set():
                event = worker.next_event(POLL_SECONDS)
                if event is NOTHING:
                    continue
                if event is ENDED:
                    raise HermesFailed(worker.failure())
                kind = event.get("type")
                if kind == "text":
                    yield {"type": "text.delta", "text": str(event.get("text") or "")}
                elif kind == "reasoning":
                    yield {"type": "reasoning.delta", "text": str(event.get("text") or "")}
                elif kind == "alive":
                    yield {"type": "heartbeat"}  # the worker works: the run's silence limit starts over
                elif kind == "status":
                    status = _status(event, call_ids)
                    if status is not None:
                        yield status
                elif kind == "tool.started":
                    call_id = _run_call_id(event.get("call_id"), call_ids)
                    yield {"type": "tool.started", "call_id": call_id, "name": event.get("name"), "args": event.get("args")}
                elif kind == "tool.finished":
                    call_id = call_ids.get(event.get("call_id")) or _run_call_id(event.get("call_id"), call_ids)
                    yield {"type": "tool.finished", "call_id": call_id, "result": event.get("result"),
                           "is_error": bool(event.get("is_error")), "duration_ms": event.get("duration_ms")}
                elif kind == "approval":
                    choice = request.decisions.ask_approval(
                        str(event.get("title") or "Hermes asks before running this"), str(event.get("detail") or ""),
                        [choice for choice in event.get("choices") or () if isinstance(choice, str)],
                        call_ids.get(event.get("call_id")))
                    worker.send({"type": "decision", "id": event.get("id"), "value": choice})
                elif kind == "question":
                    answer = request.decisions.ask_question(
                        str(event.get("question") or ""),
                        [choice for choice in event.get("choices") or () if isinstance(choice, str)],
                        call_ids.get(event.get("call_id")))
                    worker.send({"type": "decision", "id": event.get("id"), "value": answer})
                elif kind == "done":
                    usage = event.get("usage") or {}
                    yield {"type": "usage", "input_tokens": usage.get("input_tokens") or 0,
                           "output_tokens": usage.get("output_tokens") or 0}
                    if event.get("failed") and not cancel.is_set():
                        raise HermesFailed(_explained(str(event.get("error") or "Hermes Agent reported that the turn failed"),
                                                      self.settings.stream))
                    return
                elif kind == "error":
                    raise HermesFailed(str(event.get("message") or "Hermes Agent failed"))
        finally:
            worker.stop_later()  # interrupts a turn still running; the run does not wait for it

    def _history(self, request: AgentRequest, workspace) -> list:
        """The session's active branch as chat messages (tool turns included)."""
        messages = []
        for message in request.history:
            if message.get("role") == "user":
                copied = self._copied(workspace, request.session_id, message.get("attachments") or ())
                messages.append({"role": "user", "content": self._user_text(message.get("text") or "", copied)})
            elif message.get("role") == "assistant":
                messages += assistant_messages(message)
        return messages

    @staticmethod
    def _user_text(text: str, copied: list) -> str:
        if not copied:
            return text
        listing = "\n".join(f"- {path} ({item.get('mime')}, {item.get('size')} bytes)" for path, item in copied)
        note = f"Attached files, copied into your working directory:\n{listing}"
        return f"{text}\n\n{note}" if text else note

    def _copied(self, workspace, session_id: str, attachments) -> list:
        """``[(relative path, attachment)]``: each attachment copied into ``attachments/`` of the
        workspace (once), so Hermes's file tools can read it."""
        if self._uploads is None:
            return []
        copied = []
        for item in attachments:
            attachment_id = item.get("id") if isinstance(item, dict) else None
            if not is_valid_id(attachment_id):
                continue
            name = _SAFE_NAME.sub("_", str(item.get("name") or "file")).lstrip(".")[:100] or "file"
            relative = f"attachments/{attachment_id}-{name}"
            target = workspace / relative
            try:
                if not target.exists():
                    self._copy_upload(session_id, attachment_id, target)
            except (UnknownAttachment, OSError):
                continue  # deleted since it was sent
            copied.append((relative, item))
        return copied

    def _copy_upload(self, session_id: str, attachment_id: str, target) -> None:
        meta = self._uploads.get(session_id, attachment_id)
        ensure_dir(target.parent)
        source = self._uploads.open_blob(session_id, meta)
        partial = target.with_name(target.name + ".part")
        try:
            with os.fdopen(source, "rb") as reader, open(partial, "wb") as writer:
                while True:
                    chunk = reader.read(1 << 20)
                    if not chunk:
                        break
                    writer.write(chunk)
                    if writer.tell() > MAX_COPIED_ATTACHMENT_BYTES:
                        raise OSError("attachment too large to copy")
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()


def _explained(error: str, streaming: bool) -> str:
    """Hermes's own words, with what to do when they mean the provider cannot stream."""
    if streaming and "empty stream" in error.lower():
        return (f"{error} (a provider that cannot stream answers a streamed request with one JSON body: "
                "set HERMES_WEB_HERMES_STREAM=0 for it)")
    return error


def _status(event: dict, call_ids: dict):
    """The run's ``status`` record for a worker's status event (None for an unknown state)."""
    if event.get("state") not in STATES:
        return None
    status = {"type": "status", "state": event["state"], "detail": str(event.get("detail") or "")[:200]}
    call_id = call_ids.get(event.get("call_id"))
    if call_id:
        status["call_id"] = call_id
    return status


def _run_call_id(provider_id, call_ids: dict) -> str:
    """The run's id for a Hermes call: the provider's when it is a well-formed id not used yet
    in this run, else a new one."""
    used = set(call_ids.values())
    call_id = provider_id if is_valid_id(provider_id) and provider_id not in used else new_call_id()
    call_ids[provider_id] = call_id
    return call_id
