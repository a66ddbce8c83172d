"""Latency from journal append to SSE delivery with 1, 100 and 1,000 viewers of one run,
and the server's CPU per delivered frame against the floor of sending those bytes at all.

One real ``serve`` process runs the demo agent (a delta every ``DELAY_MS``). Viewers are
raw sockets on ``GET /api/runs/<rid>/events`` held by separate client processes (an epoll
loop each, so the client side stays cheap); for every record frame a client notes
``receive_time - record.ts`` (``ts`` is set when the server appends the record; both
sides read the same clock). Only records appended after every viewer was streaming count.
The baseline is the same measurement with one viewer, in the same run.

The floor: a process that holds as many sockets (the same client processes read them) and
sends frames of the same size every ``DELAY_MS`` with a plain loop of non-blocking
``send`` calls, nothing else. The server's CPU per delivered frame is compared with its
CPU per frame (goal: at most 2x).
"""

import array
import re
import selectors
import socket
import subprocess
import sys
import time

from common import (
    MANY_VIEWERS_ENV,
    ROOT,
    cpu_seconds,
    format_ms,
    percentile,
    print_table,
    raise_open_file_limit,
    running_server,
    temp_dir,
    verdict,
)

VIEWER_COUNTS = (1, 100, 1000)
VIEWERS_PER_CLIENT = 500
DELAY_MS = 20
GOAL_P99_MS = 50.0
GOAL_CPU_RATIO = 2.0
FLOOR_FRAMES = 300
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


# ---------------------------------------------------------------- the floor


def run_floor(port_file: str, viewers: int) -> int:
    """Accept ``viewers`` streams, then send FLOOR_FRAMES frames to each with plain
    non-blocking sends; print the CPU seconds the sending took."""
    raise_open_file_limit()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    with open(port_file, "w") as handle:
        handle.write(str(listener.getsockname()[1]))
    sockets = []
    while len(sockets) < viewers:
        sock, _ = listener.accept()
        sock.recv(4096)  # the request
        sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 2000\n\n")
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets.append(sock)
    time.sleep(SETTLE_SECONDS + 0.5)
    cpu = 0.0
    offset = 0
    for index in range(FLOOR_FRAMES):
        record = b'{"type":"text.delta","ts":%.6f,"text":"word%d "}' % (time.time(), index % 100)
        offset += len(record) + 1
        frame = b"id: 01796000000000000-abcdef-0123456789abcdef:%d\nevent: text.delta\ndata: %s\n\n" % (offset, record)
        began = time.process_time()
        for sock in sockets:
            try:
                sock.send(frame)
            except BlockingIOError:
                pass
        cpu += time.process_time() - began
        time.sleep(DELAY_MS / 1000)
    for sock in sockets:
        sock.close()
    print(f"cpu {cpu:.6f} {FLOOR_FRAMES * viewers}", flush=True)
    return 0


def measure_floor(viewers: int, directory) -> float:
    """CPU seconds per delivered frame of the plain send loop, read by the same clients."""
    port_file = directory / f"floor-{viewers}.port"
    floor = subprocess.Popen([sys.executable, __file__, "--floor", str(port_file), str(viewers)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 10
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("the floor process did not start")
        time.sleep(0.01)
    port = int(port_file.read_text())
    clients = []
    remaining = viewers
    index = 0
    while remaining:
        count = min(remaining, VIEWERS_PER_CLIENT)
        remaining -= count
        out_path = directory / f"floor-{viewers}-{index}.bin"
        index += 1
        clients.append(subprocess.Popen([sys.executable, __file__, "--client", str(port), "floor", str(count),
                                         str(out_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT))
    for process in clients:
        process.wait(CLIENT_DEADLINE_SECONDS + 10)
    _, cpu, frames = floor.stdout.readline().split()
    floor.wait(10)
    return float(cpu) / int(frames)


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
    cpu_per_frame = {}
    with temp_dir("sse-latency") as directory:
        with running_server(directory / "var", env={"HERMES_WEB_DEMO_DELAY_MS": str(DELAY_MS), **MANY_VIEWERS_ENV}) as server:
            for viewers in VIEWER_COUNTS:
                result = measure(server, viewers, directory)
                latencies = result["latencies"]
                results[viewers] = latencies
                cpu_per_frame[viewers] = result["cpu_per_frame"]
                rows.append([
                    viewers, len(latencies), format_ms(1000 * percentile(latencies, 0.5)),
                    format_ms(1000 * percentile(latencies, 0.99)), format_ms(1000 * max(latencies)),
                    f"{1e6 * result['cpu_per_frame']:.0f}",
                ])
        floor = measure_floor(VIEWER_COUNTS[-1], directory)
    baseline_p99 = percentile(results[VIEWER_COUNTS[0]], 0.99)
    for row, viewers in zip(rows, VIEWER_COUNTS):
        row.append(f"{percentile(results[viewers], 0.99) / baseline_p99:.1f}")
    print_table(
        f"append -> SSE delivery, one serve process, a delta every {DELAY_MS} ms",
        ["viewers", "frames", "p50 ms", "p99 ms", "max ms", "server CPU us/frame", "p99 x 1 viewer"], rows,
    )
    served = cpu_per_frame[VIEWER_COUNTS[-1]]
    print(f"floor (plain non-blocking send loop to {VIEWER_COUNTS[-1]:,} sockets): {1e6 * floor:.1f} us/frame; "
          f"server {1e6 * served:.1f} us/frame = {served / floor:.2f}x the floor")
    passed = verdict(f"p99 <= {GOAL_P99_MS:.0f} ms with {VIEWER_COUNTS[-1]:,} viewers",
                     1000 * percentile(results[VIEWER_COUNTS[-1]], 0.99) <= GOAL_P99_MS)
    passed &= verdict(f"server CPU per frame with {VIEWER_COUNTS[-1]:,} viewers <= {GOAL_CPU_RATIO:.0f}x the floor",
                      served / floor <= GOAL_CPU_RATIO)
    return 0 if passed else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        port, run_id, viewers, out_path = sys.argv[2:6]
        raise SystemExit(run_client(int(port), run_id, int(viewers), out_path))
    if sys.argv[1:2] == ["--floor"]:
        raise SystemExit(run_floor(sys.argv[2], int(sys.argv[3])))
    raise SystemExit(main())
