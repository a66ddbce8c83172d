"""hermes-web's Durable Streams (``/ds/streams/<name>``) against the protocol's reference
server (@durable-streams/server, pinned in tests/durable_streams/package.json), in one run:
append throughput, and append → live read latency.

Both servers run on loopback on free ports: a real ``serve`` over a fresh data dir (the file
store, default fsync policy), and the reference server in memory
(``bench/ds_reference_server.mjs``, Node). Every figure comes from the same Python client code
against both, streams of ``application/json`` with ~200-byte messages
(``{"seq": n, "text": "..."}``), at the same path ``/ds/streams/<name>``.

Throughput: one client appends ``APPENDS`` messages, one ``POST`` after another over one
kept-alive connection, to a fresh stream (``WARM_UP_APPENDS`` to another stream first);
``TRIALS`` trials alternate between the servers (so machine noise hits both), median, with
each server's CPU time per append (user + system, from ``/proc``: the figure that depends
least on how busy the machine is). Then ``WRITERS`` writer processes append
``APPENDS_PER_WRITER`` each to one stream at once (appends/s over the whole burst).

Latency: a reader process holds ``GET ?offset=<tail>&live=sse`` (it parses ``event: data``
and ``event: control`` frames, and reconnects from the last control offset if the server
ends the response) while the benchmark posts one message every ``INTERVAL_MS`` ms; for each
message, the time from just before its ``POST`` to when the reader has the frame holding it
(both processes read the same monotonic clock). ``LATENCY_MESSAGES`` messages, the first
``SKIP_FIRST`` left out. The same with a long-poll reader (``live=long-poll``, the returned
``Stream-Cursor`` echoed as ``cursor``).

Goals (from the product issue): hermes' one-writer throughput at least the reference's, and
hermes' SSE p99 at most the reference's. The concurrent writers and long-poll rows are printed
with their ratios, without a goal (on two cores the four writers are as much the client's
figure as the server's).

``--only-reference`` measures the reference server alone (no goals): for working on the
benchmark itself.
"""

import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from urllib.parse import quote

from common import ROOT, ServerProcess, cpu_seconds, format_ms, free_port, percentile, print_table, temp_dir, verdict

APPENDS = 2_000
WARM_UP_APPENDS = 500
TRIALS = 5
WRITERS = 4
APPENDS_PER_WRITER = 500
LATENCY_MESSAGES = 1_000
SKIP_FIRST = 20
INTERVAL_MS = 5
BODY_BYTES = 200
LONG_POLL_SECONDS = 20
PREFIX = "/ds/streams"
CONTENT_TYPE = "application/json"
READER_DEADLINE_SECONDS = 60.0
REFERENCE_SCRIPT = ROOT / "bench" / "ds_reference_server.mjs"
REFERENCE_PACKAGE = ROOT / "tests" / "durable_streams" / "node_modules" / "@durable-streams" / "server"
_PAD = "the quick brown fox jumps over the lazy dog " * 8


def message(seq: int) -> bytes:
    """A JSON message of about BODY_BYTES bytes carrying its sequence number."""
    head = f'{{"seq":{seq},"text":"'
    return (head + _PAD[:BODY_BYTES - len(head) - 2] + '"}').encode()


# ---------------------------------------------------------------- the HTTP client (both servers)


class Client:
    """One kept-alive HTTP/1.1 connection (http.client, TCP_NODELAY) to ``host:port``."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes = None, headers=None):
        """``(status, headers (lower-case names), body)``."""
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        data = response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, data

    def create(self, name: str) -> str:
        """PUT a stream of CONTENT_TYPE; return its tail offset."""
        status, headers, data = self.request("PUT", f"{PREFIX}/{quote(name)}", b"", {"Content-Type": CONTENT_TYPE})
        if status != 201:
            raise RuntimeError(f"PUT {name}: {status} {data[:200]!r}")
        offset = headers.get("stream-next-offset")
        if offset is None:
            status, headers, _ = self.request("HEAD", f"{PREFIX}/{quote(name)}")
            offset = headers["stream-next-offset"]
        return offset

    def append(self, name: str, body: bytes) -> None:
        status, _, data = self.request("POST", f"{PREFIX}/{quote(name)}", body, {"Content-Type": CONTENT_TYPE})
        if status not in (200, 204):
            raise RuntimeError(f"POST {name}: {status} {data[:200]!r}")

    def count(self, name: str) -> int:
        """How many messages the stream holds (catch-up reads from the start)."""
        offset, total = "-1", 0
        while True:
            status, headers, data = self.request("GET", f"{PREFIX}/{quote(name)}?offset={offset}")
            if status != 200:
                raise RuntimeError(f"GET {name}: {status} {data[:200]!r}")
            total += len(json.loads(data))
            offset = headers["stream-next-offset"]
            if headers.get("stream-up-to-date") == "true":
                return total

    def close(self) -> None:
        self.connection.close()


# ---------------------------------------------------------------- reader processes


def seqs_of(payload: bytes):
    """Sequence numbers in a JSON read: an array of messages (or one message)."""
    parsed = json.loads(payload)
    for item in parsed if isinstance(parsed, list) else [parsed]:
        yield item["seq"]


class SseStream:
    """A raw socket on ``GET ?offset=&live=sse``: yields (event, data, time the frame's last
    byte arrived); de-chunks HTTP/1.1 responses; returns when the server ends the response."""

    def __init__(self, port: int, path: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READER_DEADLINE_SECONDS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())

    def events(self):
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError(f"SSE: the server closed before answering: {raw[:200]!r}")
            raw += data
        head, raw = raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].split()[1] == "200":
            raise RuntimeError(f"SSE: {lines[0]}")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        text = b""  # de-chunked event-stream bytes not yet parsed
        while True:
            if chunked:
                ended = False
                while True:  # every complete chunk in ``raw``
                    line_end = raw.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(raw[:line_end].split(b";")[0], 16)
                    if size == 0:
                        ended = True
                        break
                    if len(raw) < line_end + 2 + size + 2:
                        break
                    text += raw[line_end + 2:line_end + 2 + size]
                    raw = raw[line_end + 2 + size + 2:]
            else:
                text, raw, ended = text + raw, b"", False
            received_at = time.monotonic()
            text = text.replace(b"\r\n", b"\n")
            while b"\n\n" in text:
                frame, text = text.split(b"\n\n", 1)
                event, data = "message", []
                for line in frame.split(b"\n"):
                    field, _, value = line.partition(b":")
                    if value.startswith(b" "):
                        value = value[1:]
                    if field == b"event":
                        event = value.decode()
                    elif field == b"data":
                        data.append(value)
                if data:
                    yield event, b"\n".join(data), received_at
            if ended:
                return
            data = self.sock.recv(262144)
            if not data:
                return
            raw += data

    def close(self) -> None:
        self.sock.close()


def read_sse(port: int, name: str, offset: str, count: int) -> list:
    """(seq, receive time) of the first ``count`` messages after ``offset``; prints ``ready``
    once the first control frame arrived."""
    seen, cursor, ready = [], None, False
    while len(seen) < count:
        query = f"offset={offset}&live=sse" + (f"&cursor={quote(cursor)}" if cursor else "")
        stream = SseStream(port, f"{PREFIX}/{quote(name)}?{query}")
        try:
            for event, data, received_at in stream.events():
                if event == "data":
                    seen.extend((seq, received_at) for seq in seqs_of(data))
                    if len(seen) >= count:
                        break
                elif event == "control":
                    control = json.loads(data)
                    offset = control.get("streamNextOffset", offset)
                    cursor = control.get("streamCursor", cursor)
                    if control.get("streamClosed"):
                        raise RuntimeError("SSE: the stream was closed")
                    if not ready:
                        ready = True
                        print("ready", flush=True)
        finally:
            stream.close()
    return seen


def read_long_poll(port: int, name: str, offset: str, count: int) -> list:
    """(seq, receive time) of the first ``count`` messages after ``offset``, by long-polls on
    one kept-alive connection; prints ``ready`` once the first request is sent."""
    client = Client(port, timeout=LONG_POLL_SECONDS + 30)
    seen, cursor = [], None
    path = f"{PREFIX}/{quote(name)}"
    first = True
    while len(seen) < count:
        query = f"offset={offset}&live=long-poll" + (f"&cursor={quote(cursor)}" if cursor else "")
        client.connection.request("GET", f"{path}?{query}")
        if first:
            print("ready", flush=True)
            first = False
        response = client.connection.getresponse()
        data = response.read()
        received_at = time.monotonic()
        if response.status not in (200, 204):
            raise RuntimeError(f"long-poll: {response.status} {data[:200]!r}")
        if response.status == 200 and data:
            seen.extend((seq, received_at) for seq in seqs_of(data))
        offset = response.getheader("Stream-Next-Offset", offset)
        cursor = response.getheader("Stream-Cursor", cursor)
    client.close()
    return seen


def run_reader(mode: str, port: int, name: str, offset: str, count: int) -> int:
    seen = (read_sse if mode == "sse" else read_long_poll)(port, name, offset, count)
    print(json.dumps(seen), flush=True)
    return 0


# ---------------------------------------------------------------- writer processes


def run_writer(port: int, name: str, first_seq: int, count: int) -> int:
    """Connect, print ``ready``, wait for ``go`` on stdin, append ``count`` messages; print
    the monotonic time the last append was answered."""
    client = Client(port)
    bodies = [message(first_seq + index) for index in range(count)]
    client.request("HEAD", f"{PREFIX}/{quote(name)}")  # the connection is open before the burst
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    for body in bodies:
        client.append(name, body)
    print(f"done {time.monotonic():.6f}", flush=True)
    client.close()
    return 0


# ---------------------------------------------------------------- the servers


class ReferenceServer:
    """``node bench/ds_reference_server.mjs <port>`` (in memory); stopped by :meth:`stop`."""

    def __init__(self, directory):
        self.port = free_port()
        self.log_path = directory / f"reference-{self.port}.log"
        self.process = None

    def start(self, timeout: float = 20.0) -> "ReferenceServer":
        node = shutil.which("node")
        if node is None or not (REFERENCE_PACKAGE / "dist" / "index.js").exists():
            raise RuntimeError("the reference server needs node and `npm ci` in tests/durable_streams (make test does it)")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([node, str(REFERENCE_SCRIPT), str(self.port), str(LONG_POLL_SECONDS * 1000)],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the reference server exited early:\n{self.log_path.read_text()}")
            if b"listening " in self.log_path.read_bytes():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"the reference server did not start in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_hermes(directory) -> ServerProcess:
    server = ServerProcess(directory / "var", env={"HERMES_WEB_HOST": "127.0.0.1",
                                                   "HERMES_WEB_LONG_POLL_S": str(LONG_POLL_SECONDS)})
    try:
        server.start()
        client = Client(server.port)
        try:
            status, _, _ = client.request("PUT", f"{PREFIX}/probe", b"", {"Content-Type": CONTENT_TYPE})
        finally:
            client.close()
        if status != 201:
            raise RuntimeError(f"hermes-web serve has no Durable Streams: PUT {PREFIX}/probe answered {status} "
                               "(--only-reference measures the reference server alone)")
    except BaseException:
        server.stop()  # also when it did not answer in time: it may still be running
        raise
    return server


# ---------------------------------------------------------------- measurements


def child(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)


def expect_line(process: subprocess.Popen, prefix: str) -> str:
    line = process.stdout.readline()
    if not line.startswith(prefix):
        process.kill()
        raise RuntimeError(f"helper process: expected {prefix!r}, got {line[:200]!r} (exit {process.wait()})")
    return line


def warm_up(port: int) -> None:
    client = Client(port)
    try:
        client.create("warm-up")
        for seq in range(WARM_UP_APPENDS):
            client.append("warm-up", message(seq))
        client.count("warm-up")
    finally:
        client.close()


def throughput_one(port: int, pid: int, name: str) -> tuple:
    """(appends/s, server CPU seconds per append) of APPENDS sequential POSTs from one
    client to a fresh stream."""
    client = Client(port)
    try:
        client.create(name)
        bodies = [message(seq) for seq in range(APPENDS)]
        cpu_before = cpu_seconds(pid)
        began = time.perf_counter()
        for body in bodies:
            client.append(name, body)
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(pid) - cpu_before
        held = client.count(name)
    finally:
        client.close()
    if held != APPENDS:
        raise RuntimeError(f"{name}: appended {APPENDS}, the stream holds {held}")
    return APPENDS / elapsed, cpu / APPENDS


def throughput_many(port: int, name: str) -> float:
    """Appends/s of WRITERS processes appending APPENDS_PER_WRITER each to one stream at once."""
    client = Client(port)
    try:
        client.create(name)
        writers = [child("--write", port, name, index * APPENDS_PER_WRITER, APPENDS_PER_WRITER) for index in range(WRITERS)]
        try:
            for writer in writers:
                expect_line(writer, "ready")
            began = time.monotonic()
            for writer in writers:
                writer.stdin.write("go\n")
                writer.stdin.flush()
            ended = max(float(expect_line(writer, "done ").split()[1]) for writer in writers)
            for writer in writers:
                if writer.wait(30) != 0:
                    raise RuntimeError(f"a writer exited with {writer.returncode}")
        finally:
            for writer in writers:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
        held = client.count(name)
    finally:
        client.close()
    if held != WRITERS * APPENDS_PER_WRITER:
        raise RuntimeError(f"{name}: appended {WRITERS * APPENDS_PER_WRITER}, the stream holds {held}")
    return WRITERS * APPENDS_PER_WRITER / (ended - began)


def latency(port: int, name: str, mode: str) -> list:
    """Seconds from just before each POST to the reader having it (SKIP_FIRST left out)."""
    client = Client(port)
    reader = None
    try:
        offset = client.create(name)
        reader = child("--read", mode, port, name, offset, LATENCY_MESSAGES)
        expect_line(reader, "ready")
        if mode == "long-poll":
            time.sleep(0.2)  # the first poll is waiting at the server
        bodies = [message(seq) for seq in range(LATENCY_MESSAGES)]
        sent = [0.0] * LATENCY_MESSAGES
        start = time.monotonic()
        for seq, body in enumerate(bodies):
            delay = start + seq * INTERVAL_MS / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[seq] = time.monotonic()
            client.append(name, body)
        line = reader.stdout.readline()
        if reader.wait(READER_DEADLINE_SECONDS) != 0 or not line:
            raise RuntimeError(f"the {mode} reader exited with {reader.returncode}")
    finally:
        client.close()
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.wait()
    seen = json.loads(line)
    if sorted(seq for seq, _ in seen) != list(range(LATENCY_MESSAGES)):
        raise RuntimeError(f"the {mode} reader did not see every message exactly once")
    return [received_at - sent[seq] for seq, received_at in seen if seq >= SKIP_FIRST]


def main(only_reference: bool = False) -> int:
    servers = {}
    with temp_dir("durable-streams") as directory:
        try:
            servers["reference"] = ReferenceServer(directory).start()
            if not only_reference:
                servers["hermes"] = start_hermes(directory)
            names = list(servers)
            ports = {label: server.port for label, server in servers.items()}

            for label in names:  # Node's JIT and both servers' caches
                warm_up(ports[label])
            one = {label: [] for label in names}
            cpu = {label: [] for label in names}
            for trial in range(TRIALS):
                for label in (names if trial % 2 == 0 else names[::-1]):
                    rate, cpu_per_append = throughput_one(ports[label], servers[label].process.pid, f"one-{trial}")
                    one[label].append(rate)
                    cpu[label].append(cpu_per_append)
            many = {label: throughput_many(ports[label], "many") for label in names}
            lat = {}
            for mode in ("sse", "long-poll"):
                for label in names:
                    lat[(label, mode)] = latency(ports[label], f"latency-{mode}", mode)
        finally:
            for server in servers.values():
                server.stop()

    rows = []
    for label in names:
        rows.append([label, f"{statistics.median(one[label]):,.0f}",
                     " ".join(f"{value:,.0f}" for value in one[label]),
                     f"{1e6 * statistics.median(cpu[label]):.0f}", f"{many[label]:,.0f}"])
    if not only_reference:
        rows.append(["hermes / reference", f"{statistics.median(one['hermes']) / statistics.median(one['reference']):.2f}x",
                     "", f"{statistics.median(cpu['hermes']) / statistics.median(cpu['reference']):.2f}x",
                     f"{many['hermes'] / many['reference']:.2f}x"])
    print_table(f"append throughput, appends/s of ~{BODY_BYTES}-byte {CONTENT_TYPE} messages to one stream",
                ["server", f"1 writer (median of {TRIALS})", "trials", "server CPU us/append",
                 f"{WRITERS} writers at once"], rows)

    rows = []
    for mode in ("sse", "long-poll"):
        for label in names:
            values = lat[(label, mode)]
            rows.append([mode, label, len(values), format_ms(1000 * percentile(values, 0.5)),
                         format_ms(1000 * percentile(values, 0.99)), format_ms(1000 * max(values))])
        if not only_reference:
            hermes, reference = lat[("hermes", mode)], lat[("reference", mode)]
            rows.append([mode, "hermes / reference", "",
                         f"{percentile(hermes, 0.5) / percentile(reference, 0.5):.2f}x",
                         f"{percentile(hermes, 0.99) / percentile(reference, 0.99):.2f}x",
                         f"{max(hermes) / max(reference):.2f}x"])
    print_table(f"append -> live read latency, a POST every {INTERVAL_MS} ms",
                ["live", "server", "messages", "p50 ms", "p99 ms", "max ms"], rows)

    if only_reference:
        print("reference server only: no goals", flush=True)
        return 0
    passed = verdict("hermes 1-writer append throughput >= the reference server's",
                     statistics.median(one["hermes"]) >= statistics.median(one["reference"]))
    passed &= verdict("hermes SSE append -> read p99 <= the reference server's",
                      percentile(lat[("hermes", "sse")], 0.99) <= percentile(lat[("reference", "sse")], 0.99))
    return 0 if passed else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--read"]:
        mode, port, name, offset, count = sys.argv[2:7]
        raise SystemExit(run_reader(mode, int(port), name, offset, int(count)))
    if sys.argv[1:2] == ["--write"]:
        port, name, first_seq, count = sys.argv[2:6]
        raise SystemExit(run_writer(int(port), name, int(first_seq), int(count)))
    raise SystemExit(main(only_reference="--only-reference" in sys.argv[1:]))
