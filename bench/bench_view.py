"""Session view latency with an active run of 100,000 records against one of 100 records.

Both journals are written with ``JournalWriter`` in a fresh data dir and stay open in this
process, so their locks are held: the server treats them as live runs written by another
process. After a first (cold) view of each, every round appends a few records to both
journals and then times ``GET /api/sessions/<sid>`` for each over a kept-alive
connection, so each view folds the new records (the incremental fold cache at work, not a
static cache) and its ``cursor`` is checked to reflect every appended record.
"""

import http.client
import json
import time

from common import format_ms, print_table, running_server, summary, temp_dir, verdict

from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.journal import JournalWriter
from hermes_web.store.files.metadata import SessionStore

LONG_RUN_RECORDS = 100_000
SHORT_RUN_RECORDS = 100
ROUNDS = 300
APPENDS_PER_ROUND = 3
GOAL_RATIO = 2.0
TOKENS = ("The ", "journal ", "keeps ", "every ", "event ", "of ", "a ", "run, ", "so ", "nothing ", "is ", "lost.\n")


def run_records(count: int):
    """A realistic run body: mostly text deltas, some reasoning, a tool call and usage now and then."""
    now = time.time()
    for index in range(count):
        ts = now + index * 0.001
        phase = index % 1000
        if phase < 100:
            yield {"type": "reasoning.delta", "ts": ts, "text": TOKENS[index % len(TOKENS)]}
        elif phase in (500, 501):
            call_id = f"call-{index // 1000}"
            if phase == 500:
                yield {"type": "tool.started", "ts": ts, "call_id": call_id, "name": "word_count",
                       "args": {"text": "count the words of this sentence"}}
            else:
                yield {"type": "tool.finished", "ts": ts, "call_id": call_id, "result": {"words": 6},
                       "is_error": False, "duration_ms": 3}
        elif phase == 999:
            yield {"type": "usage", "ts": ts, "input_tokens": 1200, "output_tokens": index}
        else:
            yield {"type": "text.delta", "ts": ts, "text": TOKENS[index % len(TOKENS)]}


def create_live_run(data_dir: DataDir, sessions: SessionStore, name: str, records: int, durability):
    """A session with one open (non-terminal, locked) journal of ``records`` records."""
    session_id = f"bench-{name}"
    run_id = f"20260101T000000-{name}"
    sessions.create(session_id, f"{records:,} records")
    data_dir.journals_dir(session_id).mkdir(mode=0o700, parents=True, exist_ok=True)
    started = {
        "type": "run.started", "ts": time.time(), "run_id": run_id, "session_id": session_id,
        "user": {"id": f"{run_id}-user", "text": "write the long report", "attachments": []},
        "agent": {"name": "demo", "model": "demo"},
    }
    writer = JournalWriter.create(data_dir.journal_path(session_id, run_id), started, durability)
    for record in run_records(records - 1):
        writer.append(record)
    return session_id, run_id, writer


def timed_view(connection: http.client.HTTPConnection, session_id: str):
    """``(seconds, response bytes, parsed view)`` of one session view over ``connection``."""
    started = time.perf_counter()
    connection.request("GET", f"/api/sessions/{session_id}")
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"GET /api/sessions/{session_id}: {response.status} {body[:200]!r}")
    return elapsed, len(body), body


def main() -> int:
    durability = Durability("interval", 0.2)
    with temp_dir("view") as directory:
        data_dir = DataDir(directory / "var").create()
        sessions = SessionStore(data_dir)
        runs = {
            "long": create_live_run(data_dir, sessions, "long", LONG_RUN_RECORDS, durability),
            "short": create_live_run(data_dir, sessions, "short", SHORT_RUN_RECORDS, durability),
        }
        try:
            with running_server(data_dir.root) as server:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                cold = {name: timed_view(connection, session_id)[0] for name, (session_id, _, _) in runs.items()}
                timings = {name: [] for name in runs}
                sizes = {}
                extra = iter(run_records(ROUNDS * APPENDS_PER_ROUND * 2))
                for _ in range(ROUNDS):
                    for name, (session_id, run_id, writer) in runs.items():
                        for _ in range(APPENDS_PER_ROUND):
                            record = next(extra)
                            record["ts"] = time.time()
                            writer.append(record)
                        elapsed, size, body = timed_view(connection, session_id)
                        view = json.loads(body)
                        if view["cursor"] != f"{run_id}:{writer.offset}" or view["active_run"] != {"id": run_id}:
                            raise RuntimeError(f"view of {name} does not reflect its new records: {view['cursor']}")
                        timings[name].append(elapsed)
                        sizes[name] = size
                connection.close()
        finally:
            for _, _, writer in runs.values():
                writer.close()
            durability.stop()

    stats = {name: summary(values) for name, values in timings.items()}
    ratio = stats["long"]["mean_ms"] / stats["short"]["mean_ms"]
    rows = []
    for name, records in (("long", LONG_RUN_RECORDS), ("short", SHORT_RUN_RECORDS)):
        row = stats[name]
        rows.append([
            f"{records:,}", f"{sizes[name] / 1024:,.1f}", format_ms(1000 * cold[name]),
            format_ms(row["mean_ms"]), format_ms(row["p50_ms"]), format_ms(row["p99_ms"]),
            f"{row['mean_ms'] / stats['short']['mean_ms']:.2f}",
        ])
    print_table(
        f"GET /api/sessions/<sid> with an active run, {ROUNDS} views each after {APPENDS_PER_ROUND} new records",
        ["run records", "view KiB", "cold ms", "mean ms", "p50 ms", "p99 ms", "mean x 100 records"], rows,
    )
    passed = verdict(f"mean view latency with {LONG_RUN_RECORDS:,} records <= {GOAL_RATIO:.0f}x with {SHORT_RUN_RECORDS}",
            ratio <= GOAL_RATIO)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
