"""Costs that must depend on the work asked for, not on what is stored.

Each figure is a ratio of two measurements made in this run, on real ``serve`` processes
over data dirs written here (journals as the server writes them, session metadata, one
transcript per compacted session):

1. a page of 10 runs (``GET /api/sessions/<sid>?limit=10``) of a 1,000-run session against
   a 10-run session (goal <= 2x);
2. starting a run in a 1,000-run session against a 10-run session (goal <= 2x);
3. looking up an unknown run id against a known one, with 10,000 sessions (goal <= 3x);
4. server CPU per appended record of a live run with 800 idle session streams open on
   other sessions against none (goal <= 1.5x);
5. start-up time with 100,000 finished journals against 100 (goal <= 3x);
6. the session list with 10,000 sessions (reported, no goal).

``HERMES_BENCH_QUICK=1`` shrinks the data sets tenfold (a smoke run, not the figures).
"""

import http.client
import json
import os
import socket
import statistics
import time

from common import MANY_VIEWERS_ENV, ServerProcess, cpu_seconds, print_table, raise_open_file_limit, temp_dir, verdict

from hermes_web.core.codec import encode_record
from hermes_web.core.ids import new_run_id, new_session_id

QUICK = os.environ.get("HERMES_BENCH_QUICK") == "1"
SCALE = 10 if QUICK else 1
ROUNDS = 200 // SCALE
RECORDS_PER_RUN = 12


# ---------------------------------------------------------------- data generation


def run_lines(session_id: str, run_id: str, ts: float, text: str) -> bytes:
    """A finished run's journal, exactly as the server writes one."""
    records = [{"type": "run.started", "ts": ts, "run_id": run_id, "session_id": session_id,
                "user": {"id": f"{run_id}-user", "text": text, "attachments": []},
                "agent": {"name": "demo", "model": "demo"}}]
    for index in range(RECORDS_PER_RUN - 2):
        records.append({"type": "text.delta", "ts": ts + 0.01 * index, "text": f"word{index} "})
    records.append({"type": "run.completed", "ts": ts + 1})
    return b"".join(encode_record(record) for record in records)


def write_session(root, runs: int, transcript_runs: int = 0, title: str = "bench") -> str:
    """A session with ``runs`` finished journals (and ``transcript_runs`` compacted ones)."""
    session_id = new_session_id()
    now = time.time() - 3600
    (root / "sessions").mkdir(mode=0o700, parents=True, exist_ok=True)
    meta = {"id": session_id, "title": title, "created_at": now, "updated_at": now}
    (root / "sessions" / f"{session_id}.json").write_bytes(json.dumps(meta).encode())
    if transcript_runs:
        lines = []
        for index in range(transcript_runs):
            run_id = new_run_id(session_id)
            text = "".join(f"word{i} " for i in range(RECORDS_PER_RUN - 2))
            lines.append(encode_record({"id": f"{run_id}-user", "role": "user", "run_id": run_id,
                                        "text": f"question {index}", "attachments": [], "created_at": now}))
            lines.append(encode_record({"id": f"{run_id}-assistant", "role": "assistant", "run_id": run_id,
                                        "status": "completed", "text": text, "reasoning": "", "tool_calls": [],
                                        "agent": {"name": "demo", "model": "demo"}, "error": None, "reason": None,
                                        "usage": None, "created_at": now, "finished_at": now,
                                        "cursor": f"{run_id}:1000"}))
        (root / "transcripts").mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / "transcripts" / f"{session_id}.jsonl").write_bytes(b"".join(lines))
    if runs:
        directory = root / "journals" / session_id
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for index in range(runs):
            run_id = new_run_id(session_id)
            (directory / f"{run_id}.jsonl").write_bytes(run_lines(session_id, run_id, now + index, f"question {index}"))
    return session_id


def first_start(data_dir) -> float:
    """Start a server once and stop it when it has indexed the older data dir (run index,
    search index); its start-up time."""
    began = time.perf_counter()
    server = ServerProcess(data_dir).start(timeout=600)
    elapsed = time.perf_counter() - began
    deadline = time.monotonic() + 900
    while "search index built" not in server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    server.stop()
    return elapsed


# ---------------------------------------------------------------- measuring


class Client:
    """One kept-alive HTTP connection."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def timed(self, method: str, path: str, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        began = time.perf_counter()
        self.connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return time.perf_counter() - began, response.status, data

    def close(self):
        self.connection.close()


def median_ms(values) -> float:
    return 1000 * statistics.median(values)


def bench_pages_and_starts(directory) -> list:
    root = directory / "history"
    big = write_session(root, runs=1000 // SCALE)
    small = write_session(root, runs=10)
    big_compacted = write_session(root, runs=10, transcript_runs=1000 // SCALE)
    first_start(root)
    rows = []
    server = ServerProcess(root, env={"HERMES_WEB_DEMO_DELAY_MS": "0"}).start()
    try:
        client = Client(server.port)
        pages = {}
        for name, session_id in (("1,000 runs (journals)", big), ("1,000 runs (transcript)", big_compacted),
                                 ("10 runs", small)):
            client.timed("GET", f"/api/sessions/{session_id}?limit=10")  # warm
            timings = []
            for _ in range(ROUNDS):
                elapsed, status, data = client.timed("GET", f"/api/sessions/{session_id}?limit=10")
                assert status == 200 and len(json.loads(data)["messages"]) == 20, status
                timings.append(elapsed)
            pages[name] = median_ms(timings)
        starts = {}
        for name, session_id in (("1,000 runs", big), ("10 runs", small)):
            timings = []
            for _ in range(max(20, ROUNDS // 5)):
                elapsed, status, data = client.timed("POST", f"/api/sessions/{session_id}/runs", {"text": "go"})
                assert status == 202, data
                timings.append(elapsed)
                server.wait_run_finished(json.loads(data)["run_id"])
            starts[name] = median_ms(timings)
        client.close()
    finally:
        server.stop()
    page_ratio = max(pages["1,000 runs (journals)"], pages["1,000 runs (transcript)"]) / pages["10 runs"]
    start_ratio = starts["1,000 runs"] / starts["10 runs"]
    print_table("A page of 10 runs (median of %d)" % ROUNDS, ["session", "ms", "x 10 runs"],
                [[name, f"{value:.3f}", f"{value / pages['10 runs']:.2f}"] for name, value in pages.items()])
    print_table("Starting a run (median)", ["session", "ms", "x 10 runs"],
                [[name, f"{value:.3f}", f"{value / starts['10 runs']:.2f}"] for name, value in starts.items()])
    rows.append(verdict("page of a 1,000-run session <= 2x a 10-run session", page_ratio <= 2.0))
    rows.append(verdict("run start in a 1,000-run session <= 2x a 10-run session", start_ratio <= 2.0))
    return rows


def bench_lookups_and_list(directory) -> list:
    root = directory / "many"
    sessions = [write_session(root, runs=1, transcript_runs=2) for _ in range(10_000 // SCALE)]
    known_session = sessions[len(sessions) // 2]
    known_run = sorted(os.listdir(root / "journals" / known_session))[0][:-len(".jsonl")]
    first_start(root)
    server = ServerProcess(root).start(timeout=120)
    try:
        client = Client(server.port)
        lookups = {}
        cases = (("known", known_run, 200), ("unknown (carries a session)", new_run_id(new_session_id()), 404),
                 ("unknown (no session)", "00000000000000001-abcdef", 404))
        for name, run_id, expected in cases:
            client.timed("GET", f"/api/runs/{run_id}")
            timings = []
            for _ in range(ROUNDS):
                elapsed, status, _ = client.timed("GET", f"/api/runs/{run_id}")
                assert status == expected, (name, status)
                timings.append(elapsed)
            lookups[name] = median_ms(timings)
        client.timed("GET", "/api/sessions")
        listing = []
        size = 0
        for _ in range(max(5, ROUNDS // 20)):
            elapsed, status, data = client.timed("GET", "/api/sessions")
            assert status == 200
            size = len(data)
            listing.append(elapsed)
        client.close()
    finally:
        server.stop()
    worst = max(value for name, value in lookups.items() if name != "known")
    print_table(f"GET /api/runs/<rid> with {len(sessions):,} sessions (median)", ["run id", "ms", "x known"],
                [[name, f"{value:.3f}", f"{value / lookups['known']:.2f}"] for name, value in lookups.items()])
    print_table(f"GET /api/sessions with {len(sessions):,} sessions", ["median ms", "KiB"],
                [[f"{median_ms(listing):.1f}", f"{size / 1024:,.0f}"]])
    return [verdict("unknown run lookup <= 3x a known one with 10,000 sessions", worst / lookups["known"] <= 3.0)]


def open_idle_session_streams(port: int, session_ids) -> list:
    sockets = []
    for session_id in session_ids:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET /api/sessions/{session_id}/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        sockets.append(sock)
    for sock in sockets:
        sock.recv(4096)  # headers and the retry frame: the stream is open
    return sockets


def cpu_per_record(idle_streams: int, directory) -> float:
    root = directory / f"cpu-{idle_streams}"
    others = [write_session(root, runs=1) for _ in range(idle_streams)]
    active = write_session(root, runs=1)
    first_start(root)
    server = ServerProcess(root, env={**MANY_VIEWERS_ENV, "HERMES_WEB_DEMO_DELAY_MS": "1"}).start()
    sockets = []
    try:
        sockets = open_idle_session_streams(server.port, others)
        viewer = open_idle_session_streams(server.port, [active])  # the active session is watched too
        time.sleep(1.0)
        records = 0
        cpu = 0.0
        for _ in range(3):
            before = cpu_seconds(server.process.pid)
            run_id = server.start_run(active, "count every record " * 40)["run_id"]
            server.wait_run_finished(run_id)
            cpu += cpu_seconds(server.process.pid) - before
            journal = server.journal_path(active, run_id)
            records += journal.read_bytes().count(b"\n")
        for sock in sockets + viewer:
            sock.close()
    finally:
        server.stop()
    return 1e6 * cpu / records


def bench_idle_streams(directory) -> list:
    raise_open_file_limit()
    idle = 800 // SCALE
    baseline = cpu_per_record(0, directory)
    loaded = cpu_per_record(idle, directory)
    print_table("Server CPU per appended record (µs)", ["idle session streams on other sessions", "µs/record", "x none"],
                [["none", f"{baseline:.1f}", "1.00"], [f"{idle}", f"{loaded:.1f}", f"{loaded / baseline:.2f}"]])
    return [verdict("CPU per record with 800 idle session streams <= 1.5x none", loaded / baseline <= 1.5)]


def startup_seconds(root, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        server = ServerProcess(root).start(timeout=600)
        times.append(time.perf_counter() - began)
        server.stop()
    return statistics.median(times)


def bench_startup(directory) -> list:
    sizes = {}
    for name, sessions, runs in (("100 journals", 10, 10), ("100,000 journals", 100 // SCALE, 1000)):
        root = directory / f"startup-{sessions * runs}"
        for _ in range(sessions):
            write_session(root, runs=runs)
        migration = first_start(root)
        time.sleep(2.5)  # past the recovery look-back: these journals are settled history
        sizes[name] = (startup_seconds(root), migration)
    small = sizes["100 journals"][0]
    print_table("Start-up until the first answer (median of 3; the first start indexes an older data dir)",
                ["data dir", "s", "x 100 journals", "first start s"],
                [[name, f"{value:.3f}", f"{value / small:.2f}", f"{first:.2f}"] for name, (value, first) in sizes.items()])
    return [verdict("start-up with 100,000 finished journals <= 3x with 100", sizes["100,000 journals"][0] / small <= 3.0)]


def main() -> int:
    results = []
    with temp_dir("scale") as directory:
        results += bench_pages_and_starts(directory)
        results += bench_lookups_and_list(directory)
        results += bench_idle_streams(directory)
        results += bench_startup(directory)
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
