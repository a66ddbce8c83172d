"""An agent on any OpenAI-compatible chat-completions endpoint, with tools.

Works with every server that speaks that wire protocol (OpenAI, OpenRouter, vLLM,
llama.cpp's ``llama-server``, Ollama's ``/v1``, LM Studio, LiteLLM…). One run is a loop:
stream a completion (its text and reasoning are journaled as they come); if the model asked
for tools, run them (``tool.started`` / ``tool.finished``), send the results back as
``tool`` messages and stream again; stop when the model answers without asking for tools.
At most ``max_steps`` completions are requested per run, so a model that keeps calling
tools ends the run as failed instead of looping forever.
"""

import base64
import logging
import re
import threading
import time

from hermes_web.core.ids import is_valid_id, new_call_id
from hermes_web.runs.agents.base import AgentRequest, title_for
from hermes_web.runs.agents.completion import Completion
from hermes_web.runs.agents.conversation import build_messages, tool_call_message, tool_result_message
from hermes_web.runs.agents.provider import Provider
from hermes_web.runs.agents.provider_errors import ProviderError, StreamEndedEarly
from hermes_web.runs.tools import ToolContext, Toolset, builtin_toolset, parse_arguments
from hermes_web.runs.tools.attachments import SessionAttachments
from hermes_web.store.uploads import UnknownAttachment

log = logging.getLogger(__name__)

# Images larger than this are described, not sent: a data URL is a third larger still.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MODELS_CACHE_SECONDS = 300.0
MODELS_RETRY_SECONDS = 30.0
MAX_MODEL_CHARS = 200
_MODEL_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


class StepLimitReached(ProviderError):
    """The model was still calling tools when the run's step limit was reached."""


class OpenAICompatibleAgent:
    """The agent of one configured endpoint (``openai`` from the environment, or a named one)."""

    uses_history = True  # each run sends the conversation so far

    def __init__(self, endpoint, uploads=None, toolset: Toolset = None):
        self.endpoint = endpoint
        self.name = endpoint.name
        self.model = endpoint.model
        self._provider = Provider(endpoint)
        self._uploads = uploads
        if toolset is None:
            toolset = builtin_toolset() if endpoint.tools else Toolset()
        self._toolset = toolset
        self._models_lock = threading.Lock()
        self._models = None  # (expires_at, listed, error)

    # ------------------------------------------------------------ models

    def accepts(self, model: str) -> bool:
        """Any model name may be asked for: endpoints serve more than they list."""
        return isinstance(model, str) and bool(_MODEL_NAME.fullmatch(model))

    def models(self) -> list:
        """The models to offer: the configured list, or the endpoint's ``/models`` (cached),
        with the default model first."""
        listed, _ = self.models_with_error()
        return listed

    def models_with_error(self) -> tuple:
        """``(models, error message or None)``; the error says why the endpoint's list is missing."""
        if self.endpoint.models:
            return _default_first(self.model, list(self.endpoint.models)), None
        with self._models_lock:
            cached = self._models
            if cached is None or cached[0] <= time.monotonic():
                try:
                    listed, error = self._provider.list_models(), None
                    expires = time.monotonic() + MODELS_CACHE_SECONDS
                except ProviderError as failure:
                    listed, error = [], str(failure)
                    expires = time.monotonic() + MODELS_RETRY_SECONDS
                cached = self._models = (expires, listed, error)
        return _default_first(self.model, cached[1]), cached[2]

    # ------------------------------------------------------------ a run

    def stream(self, request: AgentRequest, cancel: threading.Event):
        if request.first_turn:
            yield {"type": "title", "title": title_for(request.text, request.attachments)}
        endpoint = self.endpoint
        attachments = SessionAttachments.of_conversation(
            self._uploads, request.session_id, request.history, request.attachments
        )
        context = ToolContext(request.session_id, request.run_id, attachments, vision=endpoint.vision)
        messages = build_messages(
            request.history, request.text, request.attachments,
            system_prompt=request.settings.system_prompt or endpoint.system_prompt,
            images=(lambda item: self._data_url(attachments, item)) if endpoint.vision and self._uploads else None,
        )
        body = {"model": request.model or self.model, "stream": True, "stream_options": {"include_usage": True}}
        temperature = request.settings.temperature if request.settings.temperature is not None else endpoint.temperature
        if temperature is not None:
            body["temperature"] = temperature
        if len(self._toolset):
            body["tools"] = self._toolset.schemas()
        used_ids = set()
        tokens_in = tokens_out = 0
        for step in range(1, endpoint.max_steps + 1):
            completion = Completion()
            yield waiting_for_model(step)
            stream = self._provider.stream(dict(body, messages=messages), cancel)
            for chunk in stream:
                yield from completion.feed(chunk)
            if cancel.is_set():
                return
            if not (completion.finished or stream.done):
                raise StreamEndedEarly("the provider's stream ended early: it stopped before saying the answer was complete")
            if completion.usage is not None:
                tokens_in += completion.usage[0]
                tokens_out += completion.usage[1]
                yield {"type": "usage", "input_tokens": tokens_in, "output_tokens": tokens_out}
            requested = completion.tool_calls
            if not requested:
                return
            if step == endpoint.max_steps:
                names = ", ".join(sorted({call.name or "?" for call in requested}))
                raise StepLimitReached(
                    f"stopped after {step} requests to the model: it was still calling tools ({names}). "
                    "Ask for less at once, or raise the agent's max_steps."
                )
            calls = [(_call_id(call.provider_id, used_ids), call) for call in requested]
            outcomes = []
            for call_id, call in calls:
                if cancel.is_set():
                    return
                args, problem = parse_arguments(call.arguments)
                yield {"type": "tool.started", "call_id": call_id, "name": call.name, "args": args}
                yield {"type": "status", "state": "running_tool", "detail": f"running {call.name or 'a tool'}"[:200],
                       "call_id": call_id}
                started = time.monotonic()
                outcome = self._toolset.call(call.name, call.arguments if problem else args, context)
                yield {
                    "type": "tool.finished", "call_id": call_id, "result": outcome.result,
                    "is_error": outcome.is_error, "duration_ms": round((time.monotonic() - started) * 1000),
                }
                outcomes.append((call_id, call.name, outcome))
            messages.append(tool_call_message([(call_id, name, outcome.args) for call_id, name, outcome in outcomes],
                                              completion.text))
            messages += [tool_result_message(call_id, outcome.result) for call_id, _, outcome in outcomes]

    def _data_url(self, attachments: SessionAttachments, item: dict):
        """An image attachment as a ``data:`` URL; None when it is gone, too large or not an image."""
        if item.get("mime") not in IMAGE_TYPES:
            return None
        try:
            data = attachments.read_bytes(item, MAX_IMAGE_BYTES + 1)
        except (UnknownAttachment, OSError):  # deleted since it was sent: described as no longer available
            return None
        if len(data) > MAX_IMAGE_BYTES:
            return None
        return f"data:{item['mime']};base64,{base64.b64encode(data).decode('ascii')}"


def waiting_for_model(step: int) -> dict:
    """The ``status`` record said before each request to the model (the first one is step 1)."""
    return {"type": "status", "state": "waiting_for_model",
            "detail": "waiting for the model" + (f" (request {step})" if step > 1 else "")}


def _call_id(provider_id: str, used: set) -> str:
    """The provider's id when it is a well-formed id not used yet in this run, else a new one."""
    call_id = provider_id if provider_id and is_valid_id(provider_id) and provider_id not in used else new_call_id()
    used.add(call_id)
    return call_id


def _default_first(default: str, models: list) -> list:
    return [default] + [model for model in dict.fromkeys(models) if model != default]
