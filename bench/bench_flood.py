"""API latency for one client while others flood the server with slow and idle connections.

One real ``serve`` process with its default limits. Flood processes open connections from
eight other loopback addresses (127.0.0.2-9), ``FLOOD_PER_ADDRESS`` each, far past the
per-address cap: half trickle a header byte every second (slowloris), half send nothing;
whatever the server closes or refuses is opened again about a second later. Meanwhile this process times
``GET /api/sessions`` over fresh connections from 127.0.0.1. The baseline is the same
measurement without the flood, in the same run; the ratio is what the flood costs everyone
else.
"""

import os
import random
import selectors
import socket
import subprocess
import sys
import time

from common import ROOT, format_ms, print_table, raise_open_file_limit, running_server, summary, temp_dir, verdict

FLOOD_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 10)]
FLOOD_PER_ADDRESS = 400
WITHIN_CAP = 120  # the per-address cap is 128
REQUESTS = 400
GOAL_P50_RATIO = 1.5
GOAL_P99_RATIO = 3.0
FLOOD_SETTLE_SECONDS = 3.0
# A flooding client opens a refused or closed connection again after about this long
# (slowloris tools retry in a loop, every 15 s by default). A client that reconnects as fast
# as it can is a connection-rate flood: it fills the kernel's accept queue, which no server
# code sees, and only a firewall's rate limit stops it.
RETRY_SECONDS = 1.0


def flood(port: int, address: str, count: int) -> int:
    """Keep ``count`` slow or silent connections from ``address`` open until stdin closes."""
    raise_open_file_limit()
    selector = selectors.EpollSelector()
    slow = {}

    def open_one(index: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((address, 0))
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            return
        selector.register(sock, selectors.EVENT_READ, index)
        if index % 2:
            slow[sock] = b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    for index in range(count):
        open_one(index)
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    selector.register(stdin, selectors.EVENT_READ, None)
    last_trickle = time.monotonic()
    reopen = []  # (when, index): closed connections to open again
    while True:
        for key, _ in selector.select(timeout=0.5):
            if key.data is None:
                return 0  # stdin closed: the benchmark is over
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # closed by the server (refused, or a deadline): come back soon
                selector.unregister(sock)
                slow.pop(sock, None)
                sock.close()
                reopen.append((time.monotonic() + RETRY_SECONDS * random.uniform(0.5, 1.5), key.data))
        reopen.sort()
        while reopen and reopen[0][0] <= time.monotonic():
            open_one(reopen.pop(0)[1])
        if time.monotonic() - last_trickle > 1.0:
            last_trickle = time.monotonic()
            for sock, rest in list(slow.items()):
                try:
                    sock.send(rest[:1])
                    slow[sock] = rest[1:] or b"X-Pad: 1\r\n"
                except OSError:
                    pass


def timed_requests(port: int, count: int) -> list:
    request = b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        durations.append(time.perf_counter() - started)
        if not response.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the measured client was refused: {response[:200]!r}")
    return durations


def flooded_latency(server, per_address: int):
    """Latency summary while every flood address keeps ``per_address`` connections trying."""
    flooders = [subprocess.Popen([sys.executable, __file__, "--flood", str(server.port), address, str(per_address)],
                                 cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for address in FLOOD_ADDRESSES]
    try:
        for process in flooders:
            process.stdout.readline()
        time.sleep(FLOOD_SETTLE_SECONDS)
        result = summary(timed_requests(server.port, REQUESTS))
        result["open_files"] = len(os.listdir(f"/proc/{server.process.pid}/fd"))
        return result
    finally:
        for process in flooders:
            process.stdin.close()
            process.wait(timeout=30)


def main() -> int:
    raise_open_file_limit()
    with temp_dir("flood") as directory:
        with running_server(directory / "var") as server:
            for _ in range(5):
                server.create_session()
            timed_requests(server.port, 50)  # warm up
            baseline = summary(timed_requests(server.port, REQUESTS))
            within = flooded_latency(server, WITHIN_CAP)
            time.sleep(FLOOD_SETTLE_SECONDS)
            beyond = flooded_latency(server, FLOOD_PER_ADDRESS)
    addresses = len(FLOOD_ADDRESSES)
    rows = [["no flood (baseline)", baseline, "-"],
            [f"{addresses} addresses x {WITHIN_CAP} slow/idle connections (within the per-address cap)", within,
             within["open_files"]],
            [f"{addresses} addresses x {FLOOD_PER_ADDRESS} (past the cap: the rest refused, retried ~1 s later)",
             beyond, beyond["open_files"]]]
    print_table(f"GET /api/sessions from 127.0.0.1 ({REQUESTS} requests, fresh connections)",
                ["condition", "p50 ms", "p99 ms", "max ms", "server open files"],
                [[label, format_ms(row["p50_ms"]), format_ms(row["p99_ms"]), format_ms(row["max_ms"]), files]
                 for label, row, files in rows])
    for label, row in (("within the cap", within), ("past the cap", beyond)):
        p50_ratio = row["p50_ms"] / baseline["p50_ms"]
        p99_ratio = row["p99_ms"] / baseline["p99_ms"]
        print(f"{label}: ratio flood/baseline p50 {p50_ratio:.2f}, p99 {p99_ratio:.2f}")
        verdict(f"{label}: p50 <= {GOAL_P50_RATIO}x baseline", p50_ratio <= GOAL_P50_RATIO)
        verdict(f"{label}: p99 <= {GOAL_P99_RATIO}x baseline", p99_ratio <= GOAL_P99_RATIO)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:
        raise SystemExit(flood(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
    raise SystemExit(main())
