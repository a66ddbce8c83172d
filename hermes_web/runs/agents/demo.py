"""The built-in ``demo`` agent: offline, deterministic, slow enough to walk away from.

For any message it streams reasoning, three tool calls with real results computed from
the message (word count, the clock, the attachment list) and a multi-paragraph markdown
answer quoting the message, pausing ``delay_seconds`` between deltas.

Two messages show how a run waits for a person instead: ``/approval [command]`` asks to
approve a (pretend) shell command, ``/question`` asks a clarifying question; the answer
says what was decided. Nothing is ever run.
"""

import datetime
import re
import threading
import time

from hermes_web.core.ids import new_call_id
from hermes_web.runs.agents.base import AgentRequest, title_for

_TOKEN = re.compile(r"\S+\s*|\s+")
# Long messages are quoted in bigger pieces so a run stays within tens of seconds.
_MAX_QUOTE_DELTAS = 60
# Each tool "works" this many delays: with the default 40 ms a run lasts 10-20 s.
_TOOL_PAUSES = 15


class DemoAgent:
    name = "demo"
    model = "demo"
    uses_history = False  # it answers each message on its own

    def __init__(self, delay_seconds: float = 0.04):
        self.delay_seconds = delay_seconds

    def models(self) -> list:
        return [self.model]

    def accepts(self, model: str) -> bool:
        return model == self.model

    def stream(self, request: AgentRequest, cancel: threading.Event):
        if request.first_turn:
            yield {"type": "title", "title": title_for(request.text, request.attachments)}
        words = request.text.split()
        if words and words[0] in ("/approval", "/question"):
            yield from self._ask(request, words[0], request.text.strip()[len(words[0]):].strip())
            return
        reasoning = (
            f"The user sent a message of {len(words)} words"
            f"{' with ' + str(len(request.attachments)) + ' attachment(s)' if request.attachments else ''}. "
            "I will count its words, read the clock and list the attachments, "
            "then answer in markdown and quote the message back."
        )
        for piece in _pieces(reasoning):
            if self._pause(cancel):
                return
            yield {"type": "reasoning.delta", "text": piece}

        word_count = {"words": len(words), "characters": len(request.text), "lines": request.text.count("\n") + 1}
        clock = {"utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        attachments = [
            {"name": item.get("name"), "mime": item.get("mime"), "size": item.get("size")}
            for item in request.attachments
        ]
        tools = [
            ("word_count", {"text": request.text[:200]}, word_count),
            ("clock", {"timezone": "UTC"}, clock),
            ("list_attachments", {"session_id": request.session_id}, {"attachments": attachments}),
        ]
        for name, args, result in tools:
            call_id = new_call_id()
            started = time.monotonic()
            yield {"type": "tool.started", "call_id": call_id, "name": name, "args": args}
            for _ in range(_TOOL_PAUSES):
                if self._pause(cancel):
                    return
            yield {
                "type": "tool.finished",
                "call_id": call_id,
                "result": result,
                "is_error": False,
                "duration_ms": round((time.monotonic() - started) * 1000),
            }

        pieces = _answer_pieces(request, word_count, clock["utc"], attachments)
        output_tokens = 0
        for index, piece in enumerate(pieces):
            if self._pause(cancel):
                return
            output_tokens += 1
            yield {"type": "text.delta", "text": piece}
            if index % 100 == 99:
                yield {"type": "usage", "input_tokens": len(words), "output_tokens": output_tokens}
        yield {"type": "usage", "input_tokens": len(words), "output_tokens": output_tokens}

    def _ask(self, request: AgentRequest, command: str, rest: str):
        """Ask a person, as an agent with dangerous tools would, and say what they decided."""
        if command == "/question":
            answer = request.decisions.ask_question("Which colour should the demo use?", ["red", "green", "blue"])
            yield {"type": "text.delta", "text": f"You answered: **{answer}**." if answer else "Nobody answered."}
            return
        shell = rest or "rm -rf build/"
        call_id = new_call_id()
        started = time.monotonic()
        yield {"type": "tool.started", "call_id": call_id, "name": "shell", "args": {"command": shell}}
        choice = request.decisions.ask_approval("Run a shell command?", shell, ["once", "session", "always", "deny"], call_id)
        result = "not run: denied" if choice == "deny" else "not run: this is the demo agent, it only pretends"
        yield {"type": "tool.finished", "call_id": call_id, "result": result, "is_error": choice == "deny",
               "duration_ms": round((time.monotonic() - started) * 1000)}
        yield {"type": "text.delta", "text": f"You chose **{choice}**."}

    def _pause(self, cancel: threading.Event) -> bool:
        """Sleep one delta's delay; True when the run was cancelled meanwhile."""
        return cancel.wait(self.delay_seconds) if self.delay_seconds > 0 else cancel.is_set()


def _pieces(text: str) -> list:
    return _TOKEN.findall(text)


def _quote_pieces(text: str) -> list:
    quoted = "\n".join("> " + line if line.strip() else ">" for line in text.splitlines()) or ">"
    pieces = _pieces(quoted)
    if len(pieces) <= _MAX_QUOTE_DELTAS:
        return pieces
    size = -(-len(pieces) // _MAX_QUOTE_DELTAS)
    return ["".join(pieces[start:start + size]) for start in range(0, len(pieces), size)]


def _answer_pieces(request: AgentRequest, word_count: dict, now: str, attachments: list) -> list:
    if attachments:
        listed = "\n".join(
            f"- **{item['name']}** ({item['mime']}, {item['size']} bytes)" for item in attachments
        )
        attachment_part = f"You attached {len(attachments)} file(s):\n\n{listed}"
    else:
        attachment_part = "You did not attach any files this time."
    return (
        ["## ", "What ", "you ", "said\n\n"]
        + _quote_pieces(request.text)
        + _pieces(_explanation(word_count, now, attachment_part))
    )


def _explanation(word_count: dict, now: str, attachment_part: str) -> str:
    return (
        "\n\n"
        f"Your message has **{word_count['words']} words** in {word_count['lines']} line(s) "
        f"and {word_count['characters']} characters. The server clock read `{now}` "
        "when I checked.\n\n"
        f"{attachment_part}\n\n"
        "## How this run is kept\n\n"
        "Every delta of this answer, every tool card above and the reasoning before them "
        "were appended to this run's journal before they reached your browser. "
        "If you switch to another session, reload the page or open this session on "
        "another device, the view is folded from the journal and the stream resumes "
        "from the exact byte offset it reflects, so nothing is shown twice and nothing "
        "goes missing.\n\n"
        "- **Switch away** mid-run and come back: the partial answer is still here.\n"
        "- **Reload**: the transcript and the in-flight turn are rebuilt from disk.\n"
        "- **Stop**: the run ends as cancelled and keeps what it wrote.\n\n"
        "This is the offline `demo` agent: it needs no network and no API key, and it "
        "answers every message the same way, which makes it a good companion for "
        "trying the interface and for tests.\n"
    )
