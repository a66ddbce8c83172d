"""The provider interface: one method that yields events."""

import dataclasses
import posixpath
import threading
from typing import Iterator, Protocol

from markdown_it import MarkdownIt

from hermes_web.core.attachment_markers import MARKER_PATTERN, attached_file_paths
from hermes_web.runs.decisions import NoDecisions


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
    # Where the agent asks a person: ``ask_approval(title, detail, choices, call_id) -> choice``
    # and ``ask_question(question, choices, call_id) -> answer`` block the agent's thread
    # until a decision (hermes_web.runs.decisions); outside a run nobody is asked.
    decisions: object = NoDecisions()


class Agent(Protocol):
    """A provider. ``stream`` yields non-terminal events as dicts with a ``type``
    (``text.delta``, ``reasoning.delta``, ``tool.started``, ``tool.finished``, ``tool.output``,
    ``title``, ``usage``, and ``status`` whenever it starts waiting on the model, a tool or a
    person); returning ends the run as completed, raising ends it as failed (the exception's
    message is shown). It must check ``cancel`` at least every 100 ms and return promptly
    once it is set. A ``heartbeat`` event is never journaled: it tells the run's watchdog
    the agent is alive while it has nothing to show (docs/agents.md).

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


TITLE_WORDS = 6
TITLE_MAX_CHARS = 80
# CommonMark plus the GitHub tables and strikethrough people type into chat boxes.
_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def title_for(text: str, attachments=()) -> str:
    """A session title from the first message, as a reader sees it: its first six words of
    prose without Markdown syntax, else of its code, else the first attachment's name."""
    prose, code = _plain_words(MARKER_PATTERN.sub(" ", text or ""))
    words = prose or code
    if words:
        title = " ".join(words[:TITLE_WORDS]) + ("…" if len(words) > TITLE_WORDS else "")
    else:
        title = _attachments_title(attachments, attached_file_paths(text))
    if len(title) > TITLE_MAX_CHARS:
        title = title[:TITLE_MAX_CHARS - 1].rstrip() + "…"
    return title or "Untitled"


def _plain_words(text: str):
    """``(prose_words, code_words)`` of Markdown ``text``: what its inline text and its code
    blocks read as once rendered (link text, image alt text, no markers, no raw HTML)."""
    prose, code = [], []
    for token in _MARKDOWN.parse(text):
        if token.type in ("fence", "code_block"):
            code.extend(token.content.split())
        elif token.type == "inline":
            pieces = []
            for child in token.children or ():
                if child.type in ("text", "code_inline"):
                    pieces.append(child.content)
                elif child.type == "image":
                    pieces.append(child.content)  # its alt text
                elif child.type in ("softbreak", "hardbreak"):
                    pieces.append(" ")
            prose.extend("".join(pieces).split())
    return prose, code


def _attachments_title(attachments, legacy_paths) -> str:
    """``photo.png``, or ``photo.png and 2 more`` for a message of several files."""
    names = [
        item["name"] for item in attachments
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip()
    ]
    names += [posixpath.basename(path.rstrip("/")) or path for path in legacy_paths]
    if not names:
        return ""
    first = " ".join(names[0].split())
    return f"{first} and {len(names) - 1} more" if len(names) > 1 else first
