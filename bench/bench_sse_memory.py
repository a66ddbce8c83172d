"""Memory per idle SSE connection, and how many idle streams one server process holds.

Client processes open idle session streams (``GET /api/sessions/<sid>/events``) to one real
``serve`` process in steps; after each step the server's RSS is read from /proc. The
baseline is a bare gevent ``pywsgi`` server whose every response is an idle event stream
(a first frame, then a wait), measured in the same run: the floor any gevent SSE server
pays per connection. Steps stop at ``MAX_CONNECTIONS`` or at the first failed connection.
"""

import selectors
import socket
import subprocess
import sys
import time

from common import (
    MANY_VIEWERS_ENV,
    ROOT,
    free_port,
    print_table,
    raise_open_file_limit,
    rss_kib,
    running_server,
    temp_dir,
    verdict,
)

from hermes_web.cli.serve import LISTEN_BACKLOG

STEP_CONNECTIONS = 2000
# The serve process raises its open-file limit to the hard limit (20,000 here): the last
# step is meant to run into it, so the table shows where this box stops.
MAX_CONNECTIONS = 20_000
CONNECTIONS_PER_CLIENT = 5000
BASELINE_CONNECTIONS = 4000
GOAL_KIB = 64
READY_TIMEOUT_SECONDS = 20.0
SETTLE_SECONDS = 0.5


# ---------------------------------------------------------------- holder client process


def hold_streams(port: int, path: str, count: int) -> int:
    """Open ``count`` streams, report ``ready <ok> <failed>`` once each answered, hold them
    until stdin closes."""
    raise_open_file_limit()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    selector = selectors.EpollSelector()
    sockets = []
    failed = 0
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request)
        except OSError:
            failed += 1
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    waiting = len(sockets)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            selector.unregister(sock)  # answered (or failed): nothing more to read while idle
            waiting -= 1
            if not data.startswith(b"HTTP/1.1 200"):
                failed += 1
    failed += waiting
    print(f"ready {count - failed} {failed}", flush=True)
    sys.stdin.read()  # hold until the driver closes our stdin
    for sock in sockets:
        sock.close()
    return 0


# ---------------------------------------------------------------- bare baseline server


def serve_bare(port: int) -> int:
    """A bare gevent pywsgi server: every request gets an idle event stream."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.event
    from gevent.pywsgi import WSGIServer

    raise_open_file_limit()
    never = gevent.event.Event()

    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

        def frames():
            yield b"retry: 2000\n\n"
            while not never.wait(15):
                yield b": ping\n\n"

        return frames()

    server = WSGIServer(("127.0.0.1", port), application, backlog=LISTEN_BACKLOG, log=None)
    server.start()
    print("ready", flush=True)
    gevent.get_hub().threadpool.apply(sys.stdin.read)  # a plain read would block every greenlet
    server.stop(timeout=1)
    return 0


# ---------------------------------------------------------------- benchmark driver


class Holders:
    """The client processes holding one server's idle streams."""

    def __init__(self, port: int, path: str):
        self.port = port
        self.path = path
        self.processes = []
        self.connected = 0
        self.failed = 0

    def add(self, count: int) -> None:
        """Open ``count`` more streams (one or more client processes) and wait until each answered."""
        started = []
        while count:
            share = min(count, CONNECTIONS_PER_CLIENT)
            count -= share
            process = subprocess.Popen(
                [sys.executable, __file__, "--hold", str(self.port), self.path, str(share)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            )
            self.processes.append(process)
            started.append(process)
        for process in started:
            line = process.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError("a stream holder failed")
            self.connected += int(line[1])
            self.failed += int(line[2])

    def close(self) -> None:
        for process in self.processes:
            process.stdin.close()
        for process in self.processes:
            process.wait(30)


def measure_steps(pid: int, port: int, path: str, steps) -> list:
    """``[(connections, failed, rss_kib)]`` after each step, starting with 0 connections."""
    time.sleep(SETTLE_SECONDS)
    rows = [(0, 0, rss_kib(pid))]
    holders = Holders(port, path)
    try:
        for target in steps:
            holders.add(target - holders.connected - holders.failed)
            time.sleep(SETTLE_SECONDS)
            rows.append((holders.connected, holders.failed, rss_kib(pid)))
            print(f"  {holders.connected:,} streams open, {holders.failed} failed", flush=True)
            if holders.failed:
                break
    finally:
        holders.close()
    return rows


def bare_server_rows(port: int) -> list:
    process = subprocess.Popen([sys.executable, __file__, "--bare", str(port)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare server did not start")
        return measure_steps(process.pid, port, "/events", [BASELINE_CONNECTIONS])
    finally:
        process.stdin.close()
        process.wait(30)


def open_file_limit(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as handle:
        for line in handle:
            if line.startswith("Max open files"):
                return line.split()[3]
    return "?"


def per_connection_kib(rows) -> float:
    (first_count, _, first_rss), (last_count, _, last_rss) = rows[0], rows[-1]
    return (last_rss - first_rss) / (last_count - first_count)


def main() -> int:
    raise_open_file_limit()
    steps = list(range(STEP_CONNECTIONS, MAX_CONNECTIONS + 1, STEP_CONNECTIONS))
    with temp_dir("sse-memory") as directory:
        with running_server(directory / "var", env=MANY_VIEWERS_ENV) as server:
            session_id = server.create_session()
            path = f"/api/sessions/{session_id}/events"
            # Load every code path once so the first step does not pay for imports.
            warm_up = Holders(server.port, path)
            warm_up.add(20)
            warm_up.close()
            rows = measure_steps(server.process.pid, server.port, path, steps)
            file_limit = open_file_limit(server.process.pid)
        bare_rows = bare_server_rows(free_port())
    table = []
    for count, failed, rss in rows:
        growth = (rss - rows[0][2]) / count if count else 0.0
        table.append([f"{count:,}", failed, f"{rss / 1024:.1f}", f"{growth:.1f}" if count else "-"])
    print_table("idle session streams on one serve process", ["connections", "failed", "RSS MiB", "KiB/conn"], table)
    ours = per_connection_kib([rows[0], rows[-1]] if rows[-1][1] == 0 else [rows[0], rows[-2]])
    bare = per_connection_kib(bare_rows)
    held = max(count for count, failed, _ in rows if failed == 0)
    print_table("per idle connection", ["server", "KiB/conn", "x bare pywsgi"], [
        ["hermes_web serve", f"{ours:.1f}", f"{ours / bare:.2f}"],
        [f"bare gevent pywsgi ({BASELINE_CONNECTIONS:,} conns)", f"{bare:.1f}", "1.00"],
    ])
    reason = "the first failures" if rows[-1][1] else f"the benchmark's cap of {MAX_CONNECTIONS:,}"
    print(f"held {held:,} idle streams without an error; stopped at {reason} "
          f"(server open-file limit {file_limit})")
    passed = verdict(f"<= {GOAL_KIB} KiB per idle connection", ours <= GOAL_KIB)
    return 0 if passed else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        raise SystemExit(hold_streams(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
    if sys.argv[1:2] == ["--bare"]:
        raise SystemExit(serve_bare(int(sys.argv[2])))
    raise SystemExit(main())
