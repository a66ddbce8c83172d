"""A stand-in for a remote OpenAI-compatible provider, speaking its real wire protocol over a
real loopback socket: ``POST /v1/chat/completions`` answered with a chunked
``text/event-stream`` of chunks when the request asks to stream, else with the same answer as
one ``chat.completion`` JSON body (or an error body); and ``GET /v1/models``. Every request
it gets (any method and path) is noted in ``log``: method, path, the ``stream`` flag and the
role of the last message.

Tests register a script: a list of responses, one per model request of a run (the last one
repeats). The user message ``script <token>`` plays it; each later request of the same run
(after tool results) gets the next response. Without a script the fake echoes the message.
The chunk sequences themselves are in ``tests/provider_streams.py``.
"""

import json
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests import provider_streams

CUT = object()  # in a Stream's items: drop the connection here, mid-body


@dataclass
class Stream:
    """A 200 event stream: each item is a chunk (dict, sent as ``data: <json>``), an SSE
    comment or raw text (str, sent as is), or CUT."""

    items: list
    done: bool = True  # end with data: [DONE]
    delay: float = 0.0  # between items
    hold: float = 0.0  # before the response headers
    # item index -> threading.Event: wait for it before sending that item (len(items): before
    # ending); the time each wait began is noted in held_at.
    gates: dict = field(default_factory=dict)
    held_at: dict = field(default_factory=dict)
    pace: tuple = None  # (from_index, per_second): items from there on a fixed schedule, not delay


@dataclass
class Hold:
    """No answer at all: the request is held open until the client gives up."""

    seconds: float = 3600.0


@dataclass
class Reply:
    """Any other answer: a status, a body and its content type."""

    status: int
    body: object = None  # dict/list (JSON) or str/bytes
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


class FakeOpenAI:
    def __init__(self, models=None, api_key=None, streaming=True):
        self.scripts = {}
        self.requests = []  # {"path", "headers", "body"} of every chat request
        # Every request: {"method", "path", "stream", "last_role", "at" (time.monotonic())}.
        self.log = []
        # False: every answer is one JSON body, also to a request that asks to stream (a
        # server or proxy that cannot stream and ignores the flag).
        self.streaming = streaming
        # body -> response for a chat request no script plays (None: echo its last message).
        self.unscripted = None
        self.closed = []  # (token, time.monotonic()) when a client closed a stream early
        self.models = models  # ids served by /v1/models; None answers 404
        self.models_requests = 0
        self.api_key = api_key
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *responses, content=(), reasoning=(), status=200, error_body=None, delay=0.0) -> str:
        """Register responses (or, in the short form, one text answer or one error); returns
        the user text that plays them."""
        if not responses:
            if status != 200:
                responses = (Reply(status, error_body),)
            else:
                responses = (Stream(provider_streams.openai_text(content, reasoning), delay=delay),)
        token = secrets.token_hex(6)
        self.scripts[token] = list(responses)
        return f"script {token}"

    def requests_for(self, script_text: str) -> list:
        """The request bodies a script received, in order."""
        token = script_text.split()[-1]
        return [request["body"] for request in self.requests if _token_of(request["body"]) == token]


def user_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def _token_of(body: dict):
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            text = user_text(message)
            return text.split()[1] if text.startswith("script ") and len(text.split()) > 1 else None
    return None


def _step_of(body: dict) -> int:
    """How many model requests of this run came before: assistant messages after the last user one."""
    steps = 0
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return steps
        steps += message.get("role") == "assistant"
    return steps


def _handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def setup(self):
            super().setup()
            # Each chunk is its own small write: without this, Nagle's algorithm holds it
            # for the client's delayed ACK (40 ms a chunk on Linux).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _note(self, body=None):
            messages = body.get("messages") if isinstance(body, dict) else None
            last = messages[-1] if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else {}
            fake.log.append({"method": self.command, "path": self.path,
                             "stream": body.get("stream") if isinstance(body, dict) else None,
                             "last_role": last.get("role"), "at": time.monotonic()})

        def do_GET(self):
            self._note()
            if self.path == "/v1/models":
                fake.models_requests += 1
                if fake.models is None:
                    return self._reply(Reply(404, {"error": {"message": "Not Found"}}))
                return self._reply(Reply(200, {"object": "list", "data": [
                    {"id": model, "object": "model", "created": 1700000000, "owned_by": "fake"} for model in fake.models
                ]}))
            self._reply(Reply(404, {"error": {"message": f"unknown path {self.path}"}}))

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._note(body)
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path != "/v1/chat/completions":
                return self._reply(Reply(404, {"error": {"message": f"unknown path {self.path}"}}))
            if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return self._reply(Reply(401, {"error": {
                    "message": "Incorrect API key provided. You can find your API key at the dashboard.",
                    "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}))
            token = _token_of(body)
            script = fake.scripts.get(token)
            response = None
            if script is None and fake.unscripted is not None:
                response = fake.unscripted(body)
            if response is None and script is None:
                text = user_text(body["messages"][-1])
                response = Stream(provider_streams.openai_text([word + " " for word in text.split()], model=body["model"]))
            elif response is None:
                response = script[min(_step_of(body), len(script) - 1)]
            if isinstance(response, Reply):
                return self._reply(response)
            if isinstance(response, Hold):
                self._wait(response.seconds, token)
                self.close_connection = True
                return
            if not body.get("stream") or not fake.streaming:
                if response.hold and not self._wait(response.hold, token):
                    return
                return self._reply(Reply(200, provider_streams.completion_of(response.items)))
            self._stream(response, token)

        def _stream(self, response: Stream, token):
            if response.hold and not self._wait(response.hold, token):
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            paced_since = None
            for index, item in enumerate(response.items):
                self._gate(response, index)
                paced_since = self._pace(response, index, paced_since)
                if item is CUT:
                    self._drop()
                    return
                data = f"{item}\n\n" if isinstance(item, str) else f"data: {json.dumps(item)}\n\n"
                try:
                    self._chunk(data.encode())
                except OSError:
                    fake.closed.append((token, time.monotonic()))
                    return
                if response.delay and paced_since is None and not self._wait(response.delay, token):
                    return
            self._gate(response, len(response.items))
            if response.done:
                self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True

        @staticmethod
        def _gate(response: Stream, index: int):
            gate = response.gates.get(index)
            if gate is not None:
                response.held_at[index] = time.monotonic()
                gate.wait()

        @staticmethod
        def _pace(response: Stream, index: int, since):
            """Sleep until item ``index``'s slot on the paced schedule; the schedule's start."""
            if response.pace is None or index < response.pace[0]:
                return None
            start, per_second = response.pace
            since = since if since is not None else time.monotonic()
            wait = since + (index - start) / per_second - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            return since

        def _wait(self, seconds: float, token) -> bool:
            """Sleep, watching the connection; False (and noted) once the client closed it."""
            deadline = time.monotonic() + seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.01))
                if readable:
                    try:
                        closed = self.connection.recv(1, socket.MSG_PEEK) == b""
                    except OSError:
                        closed = True
                    if closed:
                        fake.closed.append((token, time.monotonic()))
                        self.close_connection = True
                        return False

        def _chunk(self, data: bytes):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _drop(self):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

        def _reply(self, reply: Reply):
            body = reply.body
            if isinstance(body, (dict, list)) or body is None:
                data = json.dumps(body).encode() if body is not None else b""
            else:
                data = body.encode() if isinstance(body, str) else body
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
