"""One streamed chat completion, accumulated chunk by chunk. Pure: chunks in, events out.

Providers differ in how they stream tool calls, and each difference below is one a real
server has:

- argument fragments arrive in pieces and are joined once, at the end;
- parallel calls normally carry their own ``index``, but a new ``id`` at an index already
  seen opens a new call (Ollama streams every call at index 0);
- a name resent in every chunk is assigned, never appended;
- ids may be integers (coerced to strings) or missing (the call at the same index goes on);
- ``arguments`` may come as an object instead of JSON text;
- usage arrives in a final chunk whose ``choices`` is empty;
- an ``error`` object may arrive in the middle of the stream (it ends the run as failed);
- reasoning comes as ``reasoning_content`` (DeepSeek, llama.cpp, vLLM) or ``reasoning``
  (OpenRouter, Ollama).

SSE comments never get here (the SSE parser drops them).
"""

import dataclasses
import json

from hermes_web.runs.agents.provider_errors import stream_error


@dataclasses.dataclass(frozen=True)
class RequestedCall:
    """A tool call as the model asked for it."""

    provider_id: str  # may be empty: some servers send none
    name: str
    arguments: str  # JSON text, as the model wrote it


class _Call:
    __slots__ = ("index", "provider_id", "name", "fragments")

    def __init__(self, index, provider_id):
        self.index = index
        self.provider_id = provider_id
        self.name = ""
        self.fragments = []


class Completion:
    """Feed it every chunk of one completion; then read ``tool_calls``, ``finished`` and ``usage``."""

    def __init__(self):
        self._calls = []
        self.finish_reason = None
        self.usage = None  # (prompt_tokens, completion_tokens) as last reported
        self.text = ""

    @property
    def finished(self) -> bool:
        """True once the provider gave a finish reason."""
        return self.finish_reason is not None

    def feed(self, chunk: dict) -> list:
        """The events (``text.delta``, ``reasoning.delta``) of one chunk; ProviderError for an
        error object."""
        if chunk.get("error"):
            raise stream_error(chunk["error"])
        events = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue  # only the first choice is asked for; others are ignored
            if choice.get("error"):
                raise stream_error(choice["error"])
            delta = choice.get("delta") or {}
            if isinstance(delta, dict):
                events += self._delta(delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = (_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
        return events

    def _delta(self, delta: dict) -> list:
        events = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append({"type": "reasoning.delta", "text": reasoning})
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.text += content
            events.append({"type": "text.delta", "text": content})
        for item in delta.get("tool_calls") or ():
            if isinstance(item, dict):
                self._tool_call(item)
        return events

    def _tool_call(self, item: dict) -> None:
        provider_id = item.get("id")
        provider_id = "" if provider_id is None else str(provider_id)
        index = item.get("index")
        function = item.get("function") or {}
        if not isinstance(function, dict):
            return
        call = self._call_for(index if isinstance(index, int) else None, provider_id)
        name = function.get("name")
        if isinstance(name, str) and name:
            call.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            if arguments:
                call.fragments.append(arguments)
        elif isinstance(arguments, dict):
            call.fragments = [json.dumps(arguments, ensure_ascii=False)]

    def _call_for(self, index, provider_id: str) -> _Call:
        if provider_id:
            for call in self._calls:
                if call.provider_id == provider_id:
                    return call
            for call in reversed(self._calls):
                if call.index == index and not call.provider_id and not call.name:
                    call.provider_id = provider_id  # its id came after its index
                    return call
            return self._open(index, provider_id)
        for call in reversed(self._calls):
            if index is None or call.index == index:
                return call
        return self._open(index, "")

    def _open(self, index, provider_id: str) -> _Call:
        call = _Call(index, provider_id)
        self._calls.append(call)
        return call

    @property
    def tool_calls(self) -> list:
        """The calls the model asked for, in the order they began."""
        return [RequestedCall(call.provider_id, call.name, "".join(call.fragments))
                for call in self._calls if call.name or call.fragments]


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
