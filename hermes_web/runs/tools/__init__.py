"""Tools an agent can call: one small interface, a toolset per run, and the built-in tools.

A tool is anything with a ``name``, a ``description``, a JSON-schema ``parameters`` object
and ``run(args, context)``, which returns a JSON-able value or raises :class:`ToolError`.
Tools reach the outside world only through the :class:`ToolContext` they are given (the
session's attachments, read through the upload store), never through a path or a name the
model chose. An agent with tools of its own builds a :class:`Toolset` from them.
"""

import dataclasses
import json
import logging
import time
from typing import Any, Callable, Iterable, Protocol

log = logging.getLogger(__name__)

# Arguments the model sends are parsed once; more than this is not a tool call but a flood.
MAX_ARGUMENT_CHARS = 64 * 1024


class ToolError(Exception):
    """A tool could not do what was asked; the message is shown to the model and the person."""


class Tool(Protocol):
    """One tool: what the model is told about it, and what it does."""

    name: str
    description: str
    parameters: dict  # a JSON schema of type "object"

    def run(self, args: dict, context: "ToolContext") -> Any:
        ...


@dataclasses.dataclass(frozen=True)
class ToolContext:
    """What a tool may use during one run. ``attachments`` is confined to the session."""

    session_id: str
    run_id: str
    attachments: Any  # hermes_web.runs.tools.attachments.SessionAttachments
    vision: bool = True  # whether images reach the model with the message they came in
    clock: Callable[[], float] = time.time


@dataclasses.dataclass(frozen=True)
class ToolOutcome:
    """One call as journaled: the arguments (parsed, or the raw text when they were not
    JSON), the result and whether it is an error."""

    args: Any
    result: Any
    is_error: bool


class Toolset:
    """The tools offered in one run, by name."""

    def __init__(self, tools: Iterable[Tool] = ()):
        self._tools = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list:
        return list(self._tools)

    def schemas(self) -> list:
        """The ``tools`` parameter of a chat-completions request."""
        return [
            {"type": "function",
             "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}}
            for tool in self._tools.values()
        ]

    def call(self, name: str, arguments, context: ToolContext) -> ToolOutcome:
        """Run one call. Never raises: a bad call, a tool error or a bug is an error result."""
        args, problem = parse_arguments(arguments)
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            return ToolOutcome(args, {"error": f"there is no tool named {name!r} (available: {available})"}, True)
        if problem is not None:
            return ToolOutcome(args, {"error": problem}, True)
        try:
            return ToolOutcome(args, tool.run(args, context), False)
        except ToolError as error:
            return ToolOutcome(args, {"error": str(error)}, True)
        except Exception as error:  # a bug in a tool must not end the run
            log.exception("tool %s failed", name)
            return ToolOutcome(args, {"error": f"the tool failed unexpectedly ({type(error).__name__})"}, True)


def parse_arguments(arguments) -> tuple:
    """``(args, problem)``: the arguments as an object, or as given with what is wrong."""
    if isinstance(arguments, dict):
        return arguments, None
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}, None  # a call without parameters often sends ""
    if not isinstance(arguments, str):
        return arguments, "the arguments must be a JSON object"
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return arguments[:200] + "…", f"the arguments are longer than {MAX_ARGUMENT_CHARS} characters"
    try:
        parsed = json.loads(arguments)
    except ValueError as error:
        return arguments, f"the arguments are not valid JSON ({error})"
    if not isinstance(parsed, dict):
        return parsed, "the arguments must be a JSON object"
    return parsed, None


def builtin_toolset() -> Toolset:
    """The tools every OpenAI-compatible agent offers."""
    from hermes_web.runs.tools.attachments import ListAttachments, ReadAttachment
    from hermes_web.runs.tools.calculator import Calculator
    from hermes_web.runs.tools.clock import CurrentTime

    return Toolset([ListAttachments(), ReadAttachment(), CurrentTime(), Calculator()])


__all__ = ["Tool", "ToolContext", "ToolError", "ToolOutcome", "Toolset", "builtin_toolset", "parse_arguments"]
