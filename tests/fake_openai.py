"""A stand-in for a remote OpenAI-compatible provider, speaking its real wire protocol
(``POST /v1/chat/completions`` answered with a ``text/event-stream`` of chunks) over a real
socket. Tests register a script under a token; a user message ``script <token>`` plays it."""

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self):
        self.scripts = {}
        self.requests = []
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

    def script(self, content=(), reasoning=(), status=200, error_body=None, delay=0.0) -> str:
        """Register what to answer; returns the user text that plays it."""
        token = secrets.token_hex(6)
        self.scripts[token] = {
            "content": list(content), "reasoning": list(reasoning),
            "status": status, "error_body": error_body, "delay": delay,
        }
        return f"script {token}"


def _handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path != "/v1/chat/completions":
                return self._send_json(404, {"error": {"message": "unknown path"}})
            last = body["messages"][-1]["content"]
            script = fake.scripts.get(last.split()[-1]) if last.startswith("script ") else None
            if script is None:
                script = {"content": [word + " " for word in last.split()], "reasoning": [], "status": 200,
                          "error_body": None, "delay": 0.0}
            if script["status"] != 200:
                return self._send_json(script["status"], script["error_body"])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            created = int(time.time())
            for kind, pieces in (("reasoning_content", script["reasoning"]), ("content", script["content"])):
                for piece in pieces:
                    self._chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                                 "model": body["model"],
                                 "choices": [{"index": 0, "delta": {kind: piece}, "finish_reason": None}]})
                    if script["delay"]:
                        time.sleep(script["delay"])
            self._chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                         "model": body["model"], "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self._chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                         "model": body["model"], "choices": [],
                         "usage": {"prompt_tokens": 7, "completion_tokens": len(script["content"])}})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _chunk(self, chunk):
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()

        def _send_json(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
