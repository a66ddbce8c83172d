"""The provider interface: one method that yields events."""

import dataclasses
import threading
from typing import Iterator, Protocol


class UnknownAgent(LookupError):
    """No agent of that name is configured."""


class UnknownModel(LookupError):
    """The agent does not offer that model."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Per-session settings a run is started with (empty: the agent's defaults)."""

    system_prompt: str = ""
    temperature: float = None


@dataclasses.dataclass(frozen=True)
class AgentRequest:
    """What an agent is given for one run. Attachments carry metadata only, never paths."""

    session_id: str
    run_id: str
    text: str
    attachments: tuple = ()  # ({id, name, mime, size}, ...)
    # Earlier messages of the active branch, as in the session view; empty for an agent
    # whose ``uses_history`` is False (it is never built for it).
    history: tuple = ()
    first_turn: bool = True  # nothing precedes this turn on its branch (title it)
    model: str = ""  # the model chosen for this run ("" = the agent's default)
    settings: RunSettings = RunSettings()


class Agent(Protocol):
    """A provider. ``stream`` yields non-terminal events as dicts with a ``type``
    (``text.delta``, ``reasoning.delta``, ``tool.started``, ``tool.finished``, ``tool.output``,
    ``title``, ``usage``); returning ends the run as completed, raising ends it as failed
    (the exception's message is shown). It must check ``cancel`` at least every 100 ms and
    return promptly once it is set.

    ``model`` is the default model; ``models()`` lists the ones a run may name (it may ask
    the provider, so it may take a moment) and ``accepts(model)`` says whether a run may
    name one that is not listed."""

    name: str
    model: str
    uses_history: bool  # False: the run never builds the session history for this agent

    def models(self) -> list:
        ...

    def accepts(self, model: str) -> bool:
        ...

    def stream(self, request: AgentRequest, cancel: threading.Event) -> Iterator[dict]:
        ...


def title_for(text: str) -> str:
    """A session title from the first message: its first six words."""
    words = text.split()
    title = " ".join(words[:6])
    if len(words) > 6:
        title += "…"
    return title[:80] or "Untitled"
