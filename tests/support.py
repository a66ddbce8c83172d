"""Test support: a real ``hermes-web serve`` subprocess and real HTTP/SSE clients."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real server on a free port with its own data dir; stopped by :meth:`stop`.

    By default the checkout's (``python -m hermes_web`` run in the repository); ``command``
    (e.g. an installed ``hermes-web``) and ``cwd`` start another. ``args`` are more ``serve``
    flags (``--host``, ``--certfile``...); ``token`` is sent as ``Authorization: Bearer`` by
    the convenience wrappers; ``tls`` is the client's ``ssl.SSLContext`` for a server started
    with a certificate.
    """

    def __init__(self, data_dir: Path, env: dict = None, port: int = None, command=None, cwd: Path = None,
                 args=(), token: str = None, tls=None):
        self.data_dir = Path(data_dir)
        self.command = list(command or [sys.executable, "-m", "hermes_web"])
        self.cwd = cwd or ROOT
        self.port = port or free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        # A None value in ``env`` removes that variable.
        merged = {**os.environ, "HERMES_WEB_DEMO_DELAY_MS": "5", **(env or {})}
        self.env = {name: value for name, value in merged.items() if value is not None}
        self.args = list(args)
        self.token = token
        self.process = None

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.command, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                # 401: up, and asking for a password.
                status, _, _ = request(self.url, "GET", "/api/sessions", timeout=10, tls=self.tls)
                if status in (200, 401):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait()

    # ---- convenience wrappers over the JSON API

    def api(self, method: str, path: str, body=None, headers=None, timeout: float = 10.0):
        """``(status, parsed_json_or_None, headers)``."""
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        status, data, response_headers = request(self.url, method, path, body, headers, timeout, tls=self.tls)
        parsed = json.loads(data) if data and response_headers.get("Content-Type", "").startswith("application/json") else None
        return status, parsed, response_headers

    def create_session(self) -> str:
        status, body, _ = self.api("POST", "/api/sessions", {})
        assert status == 201, body
        return body["id"]

    def start_run(self, session_id: str, text: str = "hello durable world", attachments=()) -> dict:
        status, body, _ = self.api("POST", f"/api/sessions/{session_id}/runs", {"text": text, "attachments": list(attachments)})
        assert status == 202, body
        return body

    def run_to_end(self, session_id: str, text: str, timeout: float = 60.0, **fields) -> tuple:
        """Start a run (``fields``: agent, model, attachments…) and read its whole run stream:
        ``(run_id, [(id, event, data), ...])``."""
        status, body, _ = self.api("POST", f"/api/sessions/{session_id}/runs", {"text": text, **fields})
        assert status == 202, body
        client = SseClient(self.url, f"/api/runs/{body['run_id']}/events", timeout=timeout)
        try:
            frames = list(client.records())
        finally:
            client.close()
        assert frames and frames[-1][1].startswith("run."), frames[-1:]
        return body["run_id"], frames

    def wait_run_finished(self, run_id: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body, _ = self.api("GET", f"/api/runs/{run_id}")
            if status == 200 and body["status"] != "running":
                return body
            time.sleep(0.05)
        raise TimeoutError(f"run {run_id} still running after {timeout}s")

    def journal_path(self, session_id: str, run_id: str) -> Path:
        return self.data_dir / "journals" / session_id / f"{run_id}.jsonl"


def request(base_url: str, method: str, path: str, body=None, headers=None, timeout: float = 10.0, tls=None):
    """One HTTP request over a fresh connection: ``(status, body_bytes, headers)``."""
    connection = connect(base_url, timeout, tls)
    try:
        payload = None
        all_headers = dict(headers or {})
        if body is not None:
            payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
            all_headers.setdefault("Content-Type", "application/json")
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def connect(base_url: str, timeout: float, tls=None) -> http.client.HTTPConnection:
    """A connection to ``base_url`` (https with the ``tls`` context)."""
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme == "https":
        return http.client.HTTPSConnection(parsed.hostname, parsed.port, timeout=timeout, context=tls)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)


class SseClient:
    """A raw SSE reader over http.client: yields frames as dicts (id, event, data, comment)."""

    def __init__(self, base_url: str, path: str, last_event_id: str = None, timeout: float = 30.0, headers=None,
                 tls=None):
        self.connection = connect(base_url, timeout, tls)
        headers = {"Accept": "text/event-stream", **(headers or {})}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())

    def frames(self):
        """Parsed frames until the server ends the stream."""
        frame = {}
        while True:
            raw = self.response.readline()
            if not raw:
                return
            line = raw.decode("utf-8").rstrip("\n")
            if line == "":
                if frame:
                    yield frame
                frame = {}
                continue
            if line.startswith(":"):
                frame.setdefault("comment", []).append(line[1:].strip())
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                frame["data"] = frame["data"] + "\n" + value if "data" in frame else value
            else:
                frame[field] = value

    def records(self):
        """Only the record frames (those with an id), as ``(id, event, parsed_data)``."""
        for frame in self.frames():
            if "id" in frame:
                yield frame["id"], frame.get("event"), json.loads(frame["data"])

    def close(self) -> None:
        self.connection.close()


def journal_lines(path: Path):
    """``(line_bytes_with_newline, end_offset)`` of every complete line of a journal file."""
    data = Path(path).read_bytes()
    out = []
    offset = 0
    while True:
        newline = data.find(b"\n", offset)
        if newline < 0:
            return out
        out.append((data[offset:newline + 1], newline + 1))
        offset = newline + 1


def expected_frames(path: Path, run_id: str, offset: int = 0) -> list:
    """What a stream from ``offset`` must deliver: ``(id, event, data)`` of every later line."""
    frames = []
    start = 0
    for line, end in journal_lines(path):
        if start >= offset:
            frames.append((f"{run_id}:{end}", json.loads(line)["type"], line[:-1].decode()))
        start = end
    return frames


def assert_sse_headers(client: "SseClient") -> None:
    """PROTOCOL 2.2's status and headers of a stream."""
    assert client.status == 200
    assert client.headers["Content-Type"] == "text/event-stream"
    assert client.headers["Cache-Control"] == "no-cache"
    assert client.headers["X-Accel-Buffering"] == "no"


# Built in a process of its own: the app's services (an inotify watcher...) stay out of the tests'.
_URL_MAP_SCRIPT = """
import json, sys
from hermes_web.app import create_app
from hermes_web.core.config import Config
app = create_app(Config(data_dir=sys.argv[1]))
values = json.loads(sys.argv[2])
adapter = app.url_map.bind("127.0.0.1")
print(json.dumps([
    [method, adapter.build(rule.endpoint, {name: values.get(name, "x1") for name in rule.arguments}), rule.endpoint]
    for rule in app.url_map.iter_rules() for method in sorted(rule.methods - {"HEAD"})
]))
"""


def url_map_routes(scratch_dir: Path, session_id: str, run_id: str) -> list:
    """``[method, path, endpoint]`` for every method of every rule in the app's URL map,
    its ids filled with ``session_id`` and ``run_id`` (a route added later is in it too)."""
    values = {"session_id": session_id, "run_id": run_id, "filename": "app.js", "name": "marked.js"}
    done = subprocess.run([sys.executable, "-c", _URL_MAP_SCRIPT, str(scratch_dir), json.dumps(values)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)
