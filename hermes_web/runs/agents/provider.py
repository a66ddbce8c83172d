"""The HTTP side of an OpenAI-compatible endpoint: streamed chat completions and the model list.

httpx's synchronous client over the standard sockets: under the server's gevent patching a
request blocks only the run's own greenlet. Cancelling shuts the connection's socket down
from a watcher (which wakes a blocked read in a thread or a greenlet alike) and closes the
client, so the provider sees its connection closed within one watcher tick (50 ms).
"""

import functools
import json
import socket
import threading

import httpx
from httpx_sse import EventSource

from hermes_web.runs.agents.provider_errors import ProviderError, StreamEndedEarly, provider_message, status_error

CONNECT_TIMEOUT_SECONDS = 10.0
MODELS_TIMEOUT_SECONDS = 3.0
# Error bodies are read up to this much: enough for any explanation.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_LISTED_MODELS = 1000
CANCEL_POLL_SECONDS = 0.05


class CompletionStream:
    """The chunks (decoded JSON objects) of one streamed chat completion.

    Iterate it once. ``done`` tells whether the provider ended the stream with ``[DONE]``.
    Iteration stops quietly when ``cancel`` is set; any failure is a :class:`ProviderError`.
    """

    def __init__(self, provider: "Provider", body: dict, cancel: threading.Event):
        self._provider = provider
        self._body = body
        self._cancel = cancel
        self.done = False

    def __iter__(self):
        provider = self._provider
        watch = _CancelWatch(self._cancel)
        client = httpx.Client(timeout=provider.timeouts(), verify=_tls_context())
        watch.start(client)
        try:
            with client.stream("POST", provider.url("chat/completions"), json=self._body,
                               headers=provider.headers(stream=True), extensions={"trace": watch.trace}) as response:
                if response.status_code != 200:
                    raise provider.status_error(response)
                media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                if media_type != "text/event-stream":
                    yield from _whole_answer(response, media_type)
                    self.done = True
                    return
                for event in EventSource(response).iter_sse():
                    if event.data == "[DONE]":
                        self.done = True
                        return
                    if not event.data.strip():
                        continue  # an event of comments or an empty data line
                    try:
                        chunk = json.loads(event.data)
                    except ValueError:
                        raise ProviderError(f"the provider sent an event that is not JSON: {event.data[:200]!r}") from None
                    if isinstance(chunk, dict):
                        yield chunk
        except (httpx.HTTPError, RuntimeError) as error:
            if self._cancel.is_set():
                return  # the connection (or the client, before it sent anything) was closed to cancel
            if not isinstance(error, httpx.HTTPError):
                raise
            raise provider.transport_error(error) from None
        finally:
            watch.stop()
            client.close()


@functools.lru_cache(maxsize=1)
def _tls_context():
    """One TLS context for every request: building one reads the CA bundle (tens of ms)."""
    return httpx.create_ssl_context()


def _whole_answer(response, media_type: str):
    """A server that ignored ``stream`` answers with one JSON completion: one chunk of it."""
    body = _read_bounded(response)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("choices"), list):
        said = provider_message(body) or "no explanation"
        raise ProviderError(f"the provider answered {media_type or 'without a content type'}, "
                            f"not an event stream of chat completion chunks: {said}")
    choices = [
        {"index": choice.get("index", 0), "delta": choice.get("message") or {}, "finish_reason": choice.get("finish_reason")}
        for choice in document["choices"] if isinstance(choice, dict)
    ]
    yield {"choices": choices, "usage": document.get("usage"), "error": document.get("error")}


def _read_bounded(response) -> bytes:
    data = b""
    for piece in response.iter_bytes():
        data += piece
        if len(data) >= MAX_ERROR_BODY_BYTES:
            break
    return data[:MAX_ERROR_BODY_BYTES]


class _CancelWatch:
    """Closes a request's connection as soon as the run is cancelled.

    httpx reports each connection it opens through the ``trace`` extension; shutting that
    socket down makes a read blocked on it return at once, then the client is closed.
    """

    def __init__(self, cancel: threading.Event):
        self._cancel = cancel
        self._finished = threading.Event()
        self._streams = []
        self._client = None

    def trace(self, name: str, info: dict) -> None:
        stream = info.get("return_value")
        if name.endswith(".complete") and hasattr(stream, "get_extra_info"):
            self._streams.append(stream)  # TCP, then TLS over it

    def start(self, client) -> None:
        self._client = client
        threading.Thread(target=self._run, name="provider-cancel", daemon=True).start()

    def stop(self) -> None:
        self._finished.set()

    def _run(self) -> None:
        while not self._finished.is_set():
            if self._cancel.wait(CANCEL_POLL_SECONDS):
                self._close()
                return

    def _close(self) -> None:
        for stream in reversed(self._streams):
            sock = stream.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    break
                except OSError:
                    continue  # already closed, or replaced by the TLS socket over it
        try:
            self._client.close()
        except Exception:  # closing races the request's own cleanup; the socket is down anyway
            pass


class Provider:
    """One endpoint's HTTP API."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self._base = endpoint.base_url.rstrip("/")

    def url(self, path: str) -> str:
        return f"{self._base}/{path}"

    def headers(self, stream: bool = False) -> dict:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        return headers

    def timeouts(self) -> httpx.Timeout:
        # ``read`` is the longest silence allowed between bytes: a model that thinks for a
        # minute before its first token must not be cut off, a dead one must not hang a run.
        return httpx.Timeout(self.endpoint.timeout, connect=CONNECT_TIMEOUT_SECONDS)

    def stream(self, body: dict, cancel: threading.Event) -> CompletionStream:
        return CompletionStream(self, body, cancel)

    def list_models(self) -> list:
        """The model ids the endpoint's ``/models`` lists; ProviderError when it cannot."""
        try:
            response = httpx.get(self.url("models"), headers=self.headers(), timeout=MODELS_TIMEOUT_SECONDS,
                                 verify=_tls_context())
        except httpx.HTTPError as error:
            raise self.transport_error(error) from None
        if response.status_code != 200:
            raise self.status_error(response)
        try:
            listed = response.json().get("data")
            ids = [item["id"] for item in listed if isinstance(item, dict) and isinstance(item.get("id"), str)]
        except (ValueError, AttributeError, TypeError):
            raise ProviderError("the provider's model list is not an OpenAI-style {\"data\": [{\"id\": ...}]}") from None
        return ids[:MAX_LISTED_MODELS]

    def status_error(self, response) -> ProviderError:
        return status_error(
            response.status_code, _read_bounded(response), url=str(response.request.url),
            model=self.endpoint.model, key_source=self.endpoint.key_source,
            retry_after=response.headers.get("retry-after"),
        )

    def transport_error(self, error: httpx.HTTPError) -> ProviderError:
        where = self._base
        if isinstance(error, httpx.ConnectTimeout):
            return ProviderError(f"could not connect to the provider at {where} within {CONNECT_TIMEOUT_SECONDS:g} s: "
                                 "is the address right and the server reachable?")
        if isinstance(error, httpx.ConnectError):
            reason = _reason(error)
            return ProviderError(f"could not connect to the provider at {where} ({reason}): "
                                 "is it running, and is the base URL right?")
        if isinstance(error, httpx.ReadTimeout):
            return ProviderError(f"the provider sent nothing for {self.endpoint.timeout:g} s, so the request was given up "
                                 "(raise the agent's timeout if the model is slow to start)")
        if isinstance(error, httpx.TimeoutException):
            return ProviderError(f"the request to the provider at {where} timed out")
        if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError)):
            return StreamEndedEarly(f"the provider's stream ended early: the connection was closed ({_reason(error)})")
        return ProviderError(f"the request to the provider at {where} failed: {_reason(error)}")


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    if "] " in text and text.startswith("[Errno"):
        text = text.split("] ", 1)[1]  # "[Errno 111] Connection refused" -> "Connection refused"
    return text[:200]
