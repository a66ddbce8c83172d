"""An OpenAI-compatible chat-completions provider (``/v1/chat/completions``, streamed).

Works with any server that speaks that wire protocol (OpenAI, vLLM, llama.cpp's server,
Ollama's ``/v1``, LiteLLM…). Text and reasoning deltas and token usage are journaled;
tool calls requested by the model are not executed by this provider.
"""

import http.client
import json
import socket
import threading
import urllib.parse

from hermes_web.agents.base import AgentRequest, title_for

# How much of an error body is kept: enough to read the provider's explanation.
MAX_ERROR_BODY_BYTES = 4096


class ProviderError(RuntimeError):
    """The provider answered with an error (its body is in the message, redacted later)."""


class OpenAICompatibleAgent:
    """Streams one chat completion per run."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 120.0):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"provider base URL must be http(s)://host[:port][/path], not {base_url!r}")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._path = parsed.path.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self._timeout = timeout

    def stream(self, request: AgentRequest, cancel: threading.Event):
        if request.first_turn:
            yield {"type": "title", "title": title_for(request.text)}
        connection_class = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self._host, self._port, timeout=self._timeout)
        finished = threading.Event()
        threading.Thread(target=_close_on_cancel, args=(cancel, finished, connection), daemon=True).start()
        try:
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            body = {
                "model": self.model,
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": _messages(request),
            }
            connection.request("POST", self._path, body=json.dumps(body), headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                detail = response.read(MAX_ERROR_BODY_BYTES).decode("utf-8", "replace")
                raise ProviderError(f"provider answered HTTP {response.status}: {detail}")
            for data in _sse_data(response):
                if data == "[DONE]":
                    return
                yield from _events(json.loads(data))
        except (OSError, http.client.HTTPException, ValueError) as error:
            if cancel.is_set():
                return  # the connection was closed to cancel the run
            if isinstance(error, ProviderError):
                raise
            raise ProviderError(f"provider request failed: {error}") from None
        finally:
            finished.set()
            connection.close()


def _close_on_cancel(cancel: threading.Event, finished: threading.Event, connection) -> None:
    # A blocked read cannot check the cancel flag; shutting the socket down wakes it.
    while not finished.is_set():
        if cancel.wait(0.05):
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return


def _messages(request: AgentRequest) -> list:
    messages = []
    for message in request.history:
        if message.get("role") == "user":
            messages.append({"role": "user", "content": _user_content(message.get("text", ""), message.get("attachments"))})
        elif message.get("role") == "assistant" and message.get("text"):
            messages.append({"role": "assistant", "content": message["text"]})
    messages.append({"role": "user", "content": _user_content(request.text, request.attachments)})
    return messages


def _user_content(text: str, attachments) -> str:
    # Names, types and sizes only: a model never sees a server path.
    listed = [f"{item.get('name')} ({item.get('mime')}, {item.get('size')} bytes)" for item in attachments or ()]
    return text + (f"\n\n[attachments: {'; '.join(listed)}]" if listed else "")


def _sse_data(response):
    """The ``data:`` payloads of an SSE response, one per event."""
    data = []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def _events(chunk: dict):
    if not isinstance(chunk, dict):
        return
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ProviderError(f"provider error: {message}")
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            yield {"type": "reasoning.delta", "text": reasoning}
        content = delta.get("content")
        if isinstance(content, str) and content:
            yield {"type": "text.delta", "text": content}
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        yield {
            "type": "usage",
            "input_tokens": usage.get("prompt_tokens"),
            "output_tokens": usage.get("completion_tokens"),
        }
