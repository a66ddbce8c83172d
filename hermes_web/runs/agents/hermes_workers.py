"""Hermes Agent worker processes: start, talk to, stop; and one warm spare.

Hermes Agent runs in a plain Python process of its own (``hermes_worker.py``), never in the
server: under the server's cooperative scheduling its imports and per-request CPU work
would stall every other request, and its terminal tool cannot start subprocesses from the
server's thread pool. The pipes are read by threads of their own, so a run waits on a queue
with a timeout and notices a cancel within its poll (under the server, ``subprocess`` and
``threading`` are the cooperative versions ``serve.py`` patched in).
"""

import collections
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("hermes_worker.py")
# What a failed run quotes of the worker's stderr.
STDERR_LINES = 20
MAX_STDERR_CHARS = 4000
# After an interrupt, how long a worker may take to end its turn before it is killed (a
# running command is stopped by Hermes within about 2 s).
STOP_GRACE_SECONDS = 5.0
NOTHING = object()  # next_event: no event within the timeout
ENDED = None  # next_event: the worker's output ended (it exited)

# The environment a worker gets: what a shell needs, Hermes's own variables, proxies and CA
# bundles; never the server's secrets (its provider keys, its password). Hermes keeps its
# own keys in $HERMES_HOME/.env and reads them itself.
PASSED_VARIABLES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
})
PASSED_PREFIXES = ("LC_", "HERMES_", "TIRITH_")


def worker_environment(environ, extra_names=()) -> dict:
    """The variables of ``environ`` a worker is given (see PASSED_VARIABLES), plus the
    ones named in ``extra_names``; never ``HERMES_WEB_*``."""
    passed = {}
    for name, value in environ.items():
        if name.startswith("HERMES_WEB_"):
            continue
        if name in PASSED_VARIABLES or name.startswith(PASSED_PREFIXES) or name in extra_names:
            passed[name] = value
    return passed


class Worker:
    """One worker process: a job in, events out, until it exits."""

    def __init__(self, python: str, environ: dict):
        # A private TMPDIR: Hermes writes a snapshot of its environment there.
        self.tmp_dir = tempfile.mkdtemp(prefix="hermes-web-worker-")
        self.ready = threading.Event()
        self.info = {}  # what its ready line said: version, model
        self._events = queue.Queue()
        self._stderr = collections.deque(maxlen=STDERR_LINES)
        self._stdin_lock = threading.Lock()
        try:
            self.process = subprocess.Popen(
                [python, "-I", str(WORKER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(environ, TMPDIR=self.tmp_dir), cwd=self.tmp_dir,
                start_new_session=True,  # its own process group: stopping it stops its commands too
            )
        except OSError:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            raise
        threading.Thread(target=self._read_events, name="hermes-worker-events", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="hermes-worker-stderr", daemon=True).start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: dict) -> None:
        """Write one line to the worker; a worker that died is noticed by its output ending."""
        line = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
        with self._stdin_lock:
            try:
                self.process.stdin.write(line)
                self.process.stdin.flush()
            except (OSError, ValueError):
                pass

    def next_event(self, timeout: float):
        """The next event; NOTHING after ``timeout`` seconds; ENDED once its output ended."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return NOTHING

    def failure(self) -> str:
        """Why it ended, for a failed run: its exit status and the last lines of its stderr."""
        try:
            code = self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            code = None
        how = "stopped answering" if code is None else (
            f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
        tail = "\n".join(self._stderr)[-MAX_STDERR_CHARS:]
        return f"the Hermes Agent worker {how}" + (f"; its last output:\n{tail}" if tail else " without saying why")

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Interrupt its turn, let it end within ``grace`` seconds, else kill its process group."""
        self.send({"type": "interrupt"})
        with self._stdin_lock:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def stop_later(self) -> None:
        threading.Thread(target=self.stop, name="hermes-worker-stop", daemon=True).start()

    def _read_events(self) -> None:
        for raw in iter(self.process.stdout.readline, b""):
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # not ours: the worker's own stdout goes to stderr
            if not isinstance(event, dict):
                continue
            if event.get("type") == "ready":
                self.info = event
                self.ready.set()
            else:
                self._events.put(event)
        self._events.put(ENDED)

    def _read_stderr(self) -> None:
        # Drained always, so a chatty worker never blocks on a full pipe.
        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr.append(line)


class WorkerPool:
    """Hands out workers, keeping one started ahead: importing Hermes takes seconds, so the
    next run finds it done. A worker serves one run and is then stopped."""

    def __init__(self, start_worker, on_ready=None):
        self._start_worker = start_worker
        self._on_ready = on_ready  # called with a spare's ready info, once it is ready
        self._lock = threading.Lock()
        self._spare = None
        self._closed = False

    def warm(self) -> None:
        """Start a spare unless one is there (or the pool is closed)."""
        with self._lock:
            if self._closed or (self._spare is not None and self._spare.alive()):
                return
            stale, self._spare = self._spare, None
        if stale is not None:
            stale.stop_later()
        try:
            spare = self._start_worker()
        except OSError as error:
            log.warning("could not start a Hermes Agent worker: %s", error)
            return
        with self._lock:
            if self._closed or self._spare is not None:
                spare.stop_later()
                return
            self._spare = spare
        if self._on_ready is not None:
            threading.Thread(target=self._announce, args=(spare,), name="hermes-worker-ready", daemon=True).start()

    def take(self) -> Worker:
        """A worker for one run: the spare if it is alive, else a new one. Starts the next spare."""
        with self._lock:
            worker, self._spare = self._spare, None
        if worker is None or not worker.alive():
            if worker is not None:
                worker.stop_later()
            worker = self._start_worker()  # OSError: the interpreter cannot be started
        self.warm()
        return worker

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.stop(grace=1.0)

    def _announce(self, worker: Worker) -> None:
        if worker.ready.wait(120):
            self._on_ready(worker.info)
