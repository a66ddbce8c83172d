"""Latency from journal append to SSE delivery with 1, 100 and 1,000 viewers of one run.

One real ``serve`` process runs the demo agent (a delta every ``DELAY_MS``). Viewers are
raw sockets on ``GET /api/runs/<rid>/events`` held by separate client processes (an epoll
loop each, so the client side stays cheap); for every record frame a client notes
``receive_time - record.ts`` (``ts`` is set when the server appends the record; both
sides read the same clock). Only records appended after every viewer was streaming count.
The baseline is the same measurement with one viewer, in the same run.
"""

import array
import re
import selectors
import socket
import subprocess
import sys
import time

from common import (ROOT, cpu_seconds, format_ms, percentile, print_table, raise_open_file_limit, running_server,
                    temp_dir, verdict)

VIEWER_COUNTS = (1, 100, 1000)
VIEWERS_PER_CLIENT = 500
DELAY_MS = 20
GOAL_P99_MS = 50.0
# Records appended this soon after the last viewer connected still race the replay of
# earlier ones; they are left out.
SETTLE_SECONDS = 0.3
CLIENT_DEADLINE_SECONDS = 60.0
_TS = re.compile(rb'"ts":([0-9.eE+-]+)')


# ---------------------------------------------------------------- client process


def run_client(port: int, run_id: str, viewers: int, out_path: str) -> int:
    """Hold ``viewers`` streams of one run; write (record ts, receive time) pairs to ``out_path``.

    While streaming, a socket's data is only stamped and kept: parsing waits until every
    stream has ended, so the client spends as little CPU as possible while latency counts.
    """
    raise_open_file_limit()
    request = f"GET /api/runs/{run_id}/events HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    selector = selectors.EpollSelector()
    chunks = {}  # socket -> [(receive time, bytes), ...]
    for _ in range(viewers):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        chunks[sock] = []
    silent = viewers  # streams that have not answered yet
    open_streams = viewers
    deadline = time.monotonic() + CLIENT_DEADLINE_SECONDS
    while open_streams and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            received = chunks[sock]
            if not data:  # HTTP/1.0: the server closes the stream after the terminal record
                selector.unregister(sock)
                open_streams -= 1
                continue
            if not received:
                silent -= 1
                if silent == 0:
                    print(f"ready {time.time():.6f}", flush=True)
            received.append((time.time(), data))
    pairs = array.array("d")
    for sock, received in chunks.items():
        sock.close()
        if not parse_stream(received, pairs):
            return 1
    with open(out_path, "wb") as handle:
        pairs.tofile(handle)
    if open_streams:
        print(f"{open_streams} streams did not finish before the deadline", file=sys.stderr, flush=True)
        return 1
    return 0


def parse_stream(received, pairs) -> bool:
    """Append (record ts, time the frame's last byte arrived) for every record frame."""
    pending = b""
    head_seen = False
    for received_at, data in received:
        pending += data
        if not head_seen:
            head_end = pending.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            if not pending.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                print(f"unexpected response: {pending[:200]!r}", file=sys.stderr, flush=True)
                return False
            pending = pending[head_end + 4:]
            head_seen = True
        frame_end = pending.rfind(b"\n\n")
        if frame_end < 0:
            continue
        complete, pending = pending[:frame_end], pending[frame_end + 2:]
        for frame in complete.split(b"\n\n"):
            if frame.startswith(b"id: "):  # a record (not the retry frame or a heartbeat)
                match = _TS.search(frame)
                if match:
                    pairs.append(float(match.group(1)))
                    pairs.append(received_at)
    return head_seen


# ---------------------------------------------------------------- benchmark driver


def measure(server, viewers: int, directory) -> dict:
    """Latencies (seconds) of every live frame of one run watched by ``viewers`` viewers."""
    session_id = server.create_session()
    run_id = server.start_run(session_id, "measure how fast every viewer sees each delta " * 4)["run_id"]
    clients = []
    remaining = viewers
    index = 0
    while remaining:
        count = min(remaining, VIEWERS_PER_CLIENT)
        remaining -= count
        out_path = directory / f"latency-{viewers}-{index}.bin"
        index += 1
        process = subprocess.Popen(
            [sys.executable, __file__, "--client", str(server.port), run_id, str(count), str(out_path)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        clients.append((process, out_path))
    ready_times = []
    for process, _ in clients:
        line = process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"client failed before streaming (exit {process.wait(30)})")
        ready_times.append(float(line.split()[1]))
    live_after = max(ready_times) + SETTLE_SECONDS
    time.sleep(max(0.0, live_after - time.time()))  # CPU is counted over the live window only
    cpu_before = cpu_seconds(server.process.pid)
    latencies = []
    for process, out_path in clients:
        if process.wait(CLIENT_DEADLINE_SECONDS + 10) != 0:
            raise RuntimeError(f"client exited with {process.returncode}")
        pairs = array.array("d")
        with open(out_path, "rb") as handle:
            pairs.frombytes(handle.read())
        latencies.extend(pairs[i + 1] - pairs[i] for i in range(0, len(pairs), 2) if pairs[i] >= live_after)
    server_cpu = cpu_seconds(server.process.pid) - cpu_before
    server.wait_run_finished(run_id)
    if not latencies:
        raise RuntimeError(f"no live frames with {viewers} viewers: the run ended before they all connected")
    return {"latencies": latencies, "cpu_per_frame": server_cpu / len(latencies)}


def main() -> int:
    raise_open_file_limit()
    rows = []
    results = {}
    with temp_dir("sse-latency") as directory:
        with running_server(directory / "var", env={"HERMES_WEB_DEMO_DELAY_MS": str(DELAY_MS)}) as server:
            for viewers in VIEWER_COUNTS:
                result = measure(server, viewers, directory)
                latencies = result["latencies"]
                results[viewers] = latencies
                rows.append([
                    viewers, len(latencies), format_ms(1000 * percentile(latencies, 0.5)),
                    format_ms(1000 * percentile(latencies, 0.99)), format_ms(1000 * max(latencies)),
                    f"{1e6 * result['cpu_per_frame']:.0f}",
                ])
    baseline_p99 = percentile(results[VIEWER_COUNTS[0]], 0.99)
    for row, viewers in zip(rows, VIEWER_COUNTS):
        row.append(f"{percentile(results[viewers], 0.99) / baseline_p99:.1f}")
    print_table(
        f"append -> SSE delivery, one serve process, a delta every {DELAY_MS} ms",
        ["viewers", "frames", "p50 ms", "p99 ms", "max ms", "server CPU us/frame", "p99 x 1 viewer"], rows,
    )
    passed = verdict(f"p99 <= {GOAL_P99_MS:.0f} ms with {VIEWER_COUNTS[-1]:,} viewers",
            1000 * percentile(results[VIEWER_COUNTS[-1]], 0.99) <= GOAL_P99_MS)
    return 0 if passed else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        port, run_id, viewers, out_path = sys.argv[2:6]
        raise SystemExit(run_client(int(port), run_id, int(viewers), out_path))
    raise SystemExit(main())
