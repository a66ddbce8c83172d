"""The Hermes Agent worker: one run of Hermes Agent in a plain Python process of its own.

Started by :mod:`hermes_web.runs.agents.hermes` as ``python -I hermes_worker.py`` with the
interpreter that has Hermes Agent installed (standard library only here, so that interpreter
needs nothing of hermes_web). It talks JSON lines: jobs, decisions and ``interrupt`` on stdin;
events on the protocol stream, a duplicate of the stdout it was given. Its own fd 1 points at
stderr, because Hermes prints to stdout even in quiet mode and a stray print must never be
taken for an event.

The protocol (one JSON object per line):

- worker → server: ``ready`` (Hermes is imported; ``model``, ``version``), ``text`` and
  ``reasoning`` (``text``), ``tool.started`` (``call_id``, ``name``, ``args``),
  ``tool.finished`` (``call_id``, ``result``, ``is_error``, ``duration_ms``), ``approval``
  (``id``, ``call_id``, ``title``, ``detail``, ``choices``) and ``question`` (``id``,
  ``call_id``, ``question``, ``choices``), which wait for a ``decision``; ``status``
  (``state``, ``detail``, ``call_id``: what Hermes waits on now, see STATES); ``alive``
  every HEARTBEAT_SECONDS while a job runs; then ``done`` (``usage``, ``interrupted``,
  ``failed``, ``error``) or ``error`` (``message``).
- server → worker: ``run`` (the job), ``decision`` (``id``, ``value``), ``interrupt``.
  End of input means the server is gone: the run is interrupted and the worker exits.
"""

import contextvars
import json
import os
import sys
import threading
import time

# What a status event says Hermes waits on: the model (its main requests and the auxiliary
# one that judges a flagged command), a tool, or a person.
STATES = ("waiting_for_model", "running_tool", "waiting_for_approval", "waiting_for_answer")
# A job's worker says it is alive this often, so a worker that stopped (wedged, stopped by
# a signal, its pipe stuck) is told apart from one whose model takes long.
HEARTBEAT_SECONDS = 2.0
# Hermes's "smart" approvals ask its auxiliary model whether a flagged command is safe; with
# its SDK's own timeout and retries a provider that never answers that request holds the
# command for 90 s and more. Past this bound the command is put to the person instead.
SMART_APPROVAL_SECONDS = 10.0
CLARIFY_UNANSWERED = ("The user did not provide a response within the time limit. "
                      "Use your best judgement to make the choice and proceed.")


class Protocol:
    """The event stream (thread-safe: Hermes calls back from several threads) and the
    answers to what was asked."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self._answers = {}  # request id -> [threading.Event, value]
        self._next_id = 0
        self.gone = threading.Event()  # the server closed our input

    def emit(self, **event) -> None:
        line = json.dumps(event, ensure_ascii=False, default=str)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                self.gone.set()

    def ask(self, kind: str, default: str, **fields) -> str:
        """Ask the server (a person) and wait for the decision; ``default`` if it went away."""
        with self._lock:
            self._next_id += 1
            request_id = str(self._next_id)
            waiter = self._answers[request_id] = [threading.Event(), default]
        self.emit(type=kind, id=request_id, **fields)
        while not waiter[0].wait(0.2):
            if self.gone.is_set():
                break
        with self._lock:
            self._answers.pop(request_id, None)
        return waiter[1]

    def decide(self, request_id, value) -> None:
        with self._lock:
            waiter = self._answers.get(str(request_id))
        if waiter is not None and isinstance(value, str):
            waiter[1] = value
            waiter[0].set()


# Hermes's CPU work (its imports, building its agent, its commands) yields to the server's:
# on a machine with few cores a busy worker would otherwise delay every other request.
NICENESS = 10


def main() -> int:
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    protocol_stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    protocol = Protocol(protocol_stream)
    _quiet_probes()
    _import_ahead()
    protocol.emit(type="ready", version=_version(), model=_configured_model())
    line = sys.stdin.readline()
    if not line:
        return 0  # a spare nobody needed
    job = json.loads(line)
    return run_job(job, protocol)


def run_job(job: dict, protocol: Protocol) -> int:
    from tools import approval, terminal_tool

    os.chdir(job["cwd"])
    state = {"agent": None, "interrupted": False}
    started = {}  # call_id -> (tool name, monotonic start) of the calls in flight
    completed = {}  # thread id -> (name, is_error): what tool.completed said, for the next call
    streamed = {"text": False}  # whether any answer text came through the stream callback

    def interrupt(reason: str) -> None:
        state["interrupted"] = True
        if state["agent"] is not None:
            state["agent"].interrupt(reason)

    def read_input() -> None:
        for raw in sys.stdin:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if message.get("type") == "decision":
                protocol.decide(message.get("id"), message.get("value"))
            elif message.get("type") == "interrupt":
                interrupt("stopped from hermes_web")
        protocol.gone.set()
        interrupt("hermes_web went away")

    def status(state, detail="", call_id=None):
        protocol.emit(type="status", state=state, detail=detail, call_id=call_id)

    def on_step(api_call_count=None, *_):
        number = f" (request {api_call_count})" if isinstance(api_call_count, int) and api_call_count > 1 else ""
        status("waiting_for_model", f"waiting for the model{number}")

    def on_lifecycle(kind=None, message=None, *_):
        # Hermes's own words about a wait: a retry, a fallback, a compression of the context.
        if isinstance(message, str) and message.strip():
            status("waiting_for_model", " ".join(message.split())[:200])

    def on_text(text):
        if text:
            streamed["text"] = True
            protocol.emit(type="text", text=text)

    def on_reasoning(text):
        if text:
            protocol.emit(type="reasoning", text=text)

    def call_of(tool_names):
        """The call a callback belongs to: the one Hermes bound to this context, else the
        latest call in flight of one of ``tool_names``."""
        bound = _current_call_id(approval)
        if bound:
            return bound
        matching = [call_id for call_id, (name, _) in list(started.items()) if name in tool_names]
        return matching[-1] if matching else None

    def on_tool_start(call_id, name, args):
        started[call_id] = (name, time.monotonic())
        protocol.emit(type="tool.started", call_id=call_id, name=name, args=args)
        status("running_tool", f"running {name}", call_id)

    def on_progress(event, name=None, preview=None, args=None, **details):
        if event == "tool.completed":
            completed[threading.get_ident()] = (name, bool(details.get("is_error")))

    def on_tool_complete(call_id, name, args, result):
        said = completed.pop(threading.get_ident(), None)
        is_error = said[1] if said and said[0] == name else _looks_failed(result)
        duration = time.monotonic() - started.pop(call_id, (name, time.monotonic()))[1]
        protocol.emit(type="tool.finished", call_id=call_id, result=result, is_error=is_error,
                      duration_ms=round(duration * 1000))

    def on_approval(command, description, *, allow_permanent=True, smart_denied=False, **_):
        if smart_denied:
            choices = ["once", "deny"]
        elif allow_permanent:
            choices = ["once", "session", "always", "deny"]
        else:
            choices = ["once", "session", "deny"]
        call_id = call_of(("terminal", "execute_code"))
        status("waiting_for_approval", "waiting for a person to approve a command", call_id)
        choice = protocol.ask("approval", "deny", call_id=call_id, title=description or "",
                              detail=command or "", choices=choices)
        return choice if choice in choices else "deny"

    def on_clarify(question, choices):
        call_id = call_of(("clarify",))
        status("waiting_for_answer", "waiting for a person to answer a question", call_id)
        answer = protocol.ask("question", "", call_id=call_id, question=question or "",
                              choices=list(choices or []))
        return answer if answer.strip() else CLARIFY_UNANSWERED

    threading.Thread(target=read_input, name="hermes-web-input", daemon=True).start()
    threading.Thread(target=_heartbeat, args=(protocol,), name="hermes-web-alive", daemon=True).start()
    _bound_smart_approval(approval, status)
    status("waiting_for_model", "preparing the turn (Hermes asks the provider about the model first)")
    try:
        agent = _build_agent(job, dict(
            stream_delta_callback=on_text, reasoning_callback=on_reasoning, tool_start_callback=on_tool_start,
            tool_complete_callback=on_tool_complete, tool_progress_callback=on_progress, clarify_callback=on_clarify,
            step_callback=on_step, status_callback=on_lifecycle,
        ))
        # Both, on the thread that runs the turn (Hermes hands them on to its tool threads):
        # without the interactive context a dangerous command runs with no callback at all.
        terminal_tool.set_approval_callback(on_approval)
        approval.set_hermes_interactive_context(True)
        task_id = job.get("task_id") or None
        if task_id:
            terminal_tool.register_task_env_overrides(task_id, {"cwd": job["cwd"]})
        state["agent"] = agent
        if state["interrupted"]:
            agent.interrupt("stopped from hermes_web")
        result = agent.run_conversation(job["text"], conversation_history=job.get("history") or [], task_id=task_id)
    except Exception as error:  # Hermes or its provider failed: the run says why
        protocol.emit(type="error", message=f"{type(error).__name__}: {error}")
        return 0
    result = result or {}
    final = result.get("final_response")
    if not streamed["text"] and not result.get("failed") and isinstance(final, str) and final:
        protocol.emit(type="text", text=final)  # not streamed (a provider that cannot): the answer, whole
    protocol.emit(
        type="done",
        usage={"input_tokens": result.get("input_tokens") or 0, "output_tokens": result.get("output_tokens") or 0},
        interrupted=bool(result.get("interrupted") or state["interrupted"]),
        failed=bool(result.get("failed")),
        error=result.get("error") or (result.get("final_response") if result.get("failed") else None),
    )
    return 0


def _heartbeat(protocol: Protocol) -> None:
    while not protocol.gone.wait(HEARTBEAT_SECONDS):
        protocol.emit(type="alive")


def _bound_smart_approval(approval_module, status) -> None:
    """Hermes's smart approval, said in a status and bounded by SMART_APPROVAL_SECONDS: past
    that its verdict is "escalate" (a person decides) while its request is left to end on
    its own."""
    judge = getattr(approval_module, "_smart_approve", None)
    if judge is None or getattr(judge, "bounded", False):
        return

    def bounded(command, description, *args, **kwargs):
        status("waiting_for_model", "asking the model whether a flagged command is safe to run")
        verdict = ["escalate"]
        context = contextvars.copy_context()  # Hermes keeps the turn's runtime in context variables

        def ask():
            try:
                verdict[0] = context.run(judge, command, description, *args, **kwargs)
            except Exception:  # its own failures escalate too
                pass

        asking = threading.Thread(target=ask, name="hermes-web-smart-approval", daemon=True)
        asking.start()
        asking.join(SMART_APPROVAL_SECONDS)
        if asking.is_alive():
            return "escalate"
        if verdict[0] == "approve":
            call_id = _current_call_id(approval_module)
            status("running_tool", "running the command the model judged safe", call_id)
        return verdict[0]

    bounded.bounded = True
    approval_module._smart_approve = bounded


def _build_agent(job: dict, callbacks: dict):
    """An AIAgent as Hermes's own configuration makes it, with what hermes_web overrides."""
    from run_agent import AIAgent

    settings = job.get("agent") or {}
    kwargs = dict(
        quiet_mode=True,
        enabled_toolsets=settings.get("toolsets") or _configured_toolsets(),
        ephemeral_system_prompt=settings.get("system_prompt") or None,
        **callbacks,
    )
    if settings.get("base_url"):
        kwargs.update(base_url=settings["base_url"], api_key=settings.get("api_key") or "no-key",
                      provider="custom", api_mode="chat_completions")
    else:
        from hermes_cli.runtime_provider import resolve_runtime_provider

        runtime = resolve_runtime_provider(requested=_configured_provider())
        kwargs.update(provider=runtime.get("provider"), api_mode=runtime.get("api_mode"),
                      base_url=runtime.get("base_url"), api_key=settings.get("api_key") or runtime.get("api_key"))
        if runtime.get("command"):
            kwargs.update(command=runtime["command"], args=list(runtime.get("args") or []))
    kwargs["model"] = settings.get("model") or _configured_model()
    agent = AIAgent(**kwargs)
    agent._environment_probe = False  # see _quiet_probes
    if settings.get("stream") is False:
        agent._disable_streaming = True  # what Hermes sets itself once a provider says it cannot stream
    return agent


# Imported before any job, so a spare worker is warm: Hermes imports most of these lazily on
# the first turn, the OpenAI SDK alone taking seconds.
WARM_IMPORTS = ("run_agent", "openai", "model_tools", "tools.terminal_tool", "tools.approval", "tools.clarify_tool",
                "agent.conversation_loop", "agent.tool_executor", "hermes_cli.config", "hermes_cli.runtime_provider")


def _import_ahead() -> None:
    import importlib

    importlib.import_module("run_agent")  # this one must be there
    for name in WARM_IMPORTS[1:]:
        try:
            importlib.import_module(name)
        except Exception:  # moved in another Hermes version: imported when it is needed
            pass


def _quiet_probes() -> None:
    """What Hermes does on its own that a worker must not: probing the toolchain with
    subprocesses on the first turn (seconds on a busy machine, for one line of prompt), and
    downloading the tirith scanner in the background (no network is assumed; an installed
    tirith is still used)."""
    try:
        from tools import env_probe

        env_probe.warm_environment_probe_async = lambda *args, **kwargs: None
        env_probe.get_environment_probe_line = lambda *args, **kwargs: ""
    except Exception:  # an older Hermes without the probe
        pass
    if "TIRITH_ENABLED" not in os.environ:
        import shutil

        home = os.environ.get("HERMES_HOME") or os.path.expanduser("~/.hermes")
        installed = shutil.which("tirith") or os.access(os.path.join(home, "bin", "tirith"), os.X_OK)
        if not installed:
            os.environ["TIRITH_ENABLED"] = "0"


def _config() -> dict:
    try:
        from hermes_cli.config import load_config

        return load_config() or {}
    except Exception:
        return {}


def _configured_model() -> str:
    model = _config().get("model")
    if isinstance(model, dict):
        return str(model.get("default") or "")
    return model.strip() if isinstance(model, str) else ""


def _configured_provider():
    model = _config().get("model")
    return model.get("provider") if isinstance(model, dict) else None


def _configured_toolsets() -> list:
    """The toolsets Hermes's own CLI would enable (``hermes tools``), else its CLI default."""
    try:
        from hermes_cli.tools_config import _get_platform_tools

        return sorted(_get_platform_tools(_config(), "cli"))
    except Exception:
        return ["hermes-cli"]


def _current_call_id(approval_module):
    """The tool call a callback belongs to, when this Hermes says (it binds it per call)."""
    variable = getattr(approval_module, "_approval_tool_call_id", None)
    try:
        return variable.get() or None if variable is not None else None
    except LookupError:
        return None


def _looks_failed(result) -> bool:
    try:
        decoded = json.loads(result) if isinstance(result, str) else result
    except ValueError:
        return False
    return isinstance(decoded, dict) and bool(decoded.get("error") or decoded.get("status") == "blocked")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hermes-agent")
    except Exception:
        return ""


if __name__ == "__main__":
    sys.exit(main())
