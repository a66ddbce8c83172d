"""Journal append throughput under each fsync policy, against raw ``os.write``.

The baseline writes the very same encoded lines with one ``os.write`` each to an
``O_APPEND`` file; ``JournalWriter.append`` additionally encodes the record and tells the
durability policy. Each trial appends for ``SPAN_SECONDS``, several fsync intervals, so the
interval policy's group commits (its background fsyncs, counted and shown) happen while it
is measured. Trials of the writers alternate so machine noise hits all alike; the ratio of
medians is what the goal is about. Exits non-zero when a goal is missed.
"""

import json
import os
import statistics
import time

from common import print_table, temp_dir, verdict

from hermes_web.core.codec import encode_record
from hermes_web.store.durability import Durability
from hermes_web.store.files.journal import JournalWriter

# Records are prepared in advance (and cycled), so producing them is not measured.
RECORDS_PER_TRIAL = 20_000
TRIALS = 5
INTERVAL_SECONDS = 0.2
SPAN_SECONDS = 5 * INTERVAL_SECONDS
# Fsync per record costs a disk flush each: measured over a bounded number of records.
FSYNC_RECORDS = 1_000
GOAL_RATIO = 0.5
SENTENCE = (
    "Sure! Here is a short summary of the document you attached, followed by the three "
    "action items it mentions and a table of the figures in its appendix. "
)


def delta_records(count: int) -> list:
    """Realistic ``text.delta`` records: one model token (a word and its space) each."""
    tokens = SENTENCE.split(" ")
    now = time.time()
    return [
        {"type": "text.delta", "ts": now + index * 0.02, "text": tokens[index % len(tokens)] + " "}
        for index in range(count)
    ]


def started_record() -> dict:
    return {
        "type": "run.started", "ts": time.time(), "run_id": "bench-run", "session_id": "bench-session",
        "user": {"id": "bench-run-user", "text": "summarise the attachment", "attachments": []},
        "agent": {"name": "demo", "model": "demo"},
    }


def for_span(items: list, step):
    """Call ``step`` on ``items`` (cycled) for SPAN_SECONDS; records per second."""
    count = 0
    started = time.perf_counter()
    deadline = started + SPAN_SECONDS
    while True:
        for item in items:
            step(item)
        count += len(items)
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def time_raw(path, lines: list) -> float:
    """Records per second writing pre-encoded lines with one os.write each."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        return for_span(lines, lambda line: os.write(fd, line))
    finally:
        os.close(fd)


def time_encode_and_write(path, records: list) -> float:
    """Records per second for the least any JSONL writer does: ``json.dumps`` + ``os.write``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    dumps = json.dumps
    try:
        return for_span(records, lambda record: os.write(
            fd, dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"))
    finally:
        os.close(fd)


def time_journal(path, records: list, durability: Durability, redaction=None, span: bool = True) -> float:
    """Records per second through ``JournalWriter.append`` (and the redaction filter)."""
    writer = JournalWriter.create(path, started_record(), durability)
    try:
        if redaction is None:
            step = writer.append
        else:
            filters = redaction.for_run()

            def step(record):
                for ready in filters.process(record):
                    writer.append(ready)
        if span:
            return for_span(records, step)
        started = time.perf_counter()
        for record in records:
            step(record)
        return len(records) / (time.perf_counter() - started)
    finally:
        writer.close()


class CountingOffload:
    """Runs each fsync and counts it: the group commits that happened during a trial."""

    def __init__(self):
        self.fsyncs = 0

    def __call__(self, function, *args):
        if function is os.fsync:
            self.fsyncs += 1
        return function(*args)


def load_redaction():
    """The real redaction filter, as the server applies it at rest."""
    from hermes_web.redaction.records import RecordRedaction
    from hermes_web.redaction.redactor import Redactor

    return RecordRedaction(Redactor())


def main() -> int:
    records = delta_records(RECORDS_PER_TRIAL)
    lines = [encode_record(record) for record in records]
    redaction = load_redaction()
    results = {"raw os.write": [], "json.dumps + os.write": [], "interval 0.2 s (default)": [], "terminal": []}
    if redaction is not None:
        results["interval 0.2 s + redaction"] = []
    with temp_dir("journal") as directory:
        counter = 0

        def fresh_path():
            nonlocal counter
            counter += 1
            return directory / f"run-{counter}.jsonl"

        group_commits = []
        for _ in range(TRIALS):
            results["raw os.write"].append(time_raw(fresh_path(), lines))
            results["json.dumps + os.write"].append(time_encode_and_write(fresh_path(), records))
            offload = CountingOffload()
            durability = Durability("interval", INTERVAL_SECONDS, offload)
            results["interval 0.2 s (default)"].append(time_journal(fresh_path(), records, durability))
            durability.stop()
            group_commits.append(offload.fsyncs - 2)  # less run.started's own fsync and close's
            results["terminal"].append(time_journal(fresh_path(), records, Durability("terminal")))
            if redaction is not None:
                durability = Durability("interval", INTERVAL_SECONDS)
                results["interval 0.2 s + redaction"].append(
                    time_journal(fresh_path(), records, durability, redaction))
                durability.stop()
        fsync_records = records[:FSYNC_RECORDS]
        results["record (fsync each)"] = [time_journal(fresh_path(), fsync_records, Durability("record"), span=False)]

    raw = statistics.median(results["raw os.write"])
    rows = []
    for name, rates in results.items():
        rate = statistics.median(rates)
        rows.append([name, f"{rate:,.0f}", f"{1e6 / rate:.2f}", f"{rate / raw:.2f}"])
    print_table(
        f"journal append of text.delta records, {TRIALS} trials of {SPAN_SECONDS:.1f} s each "
        f"(record policy: {FSYNC_RECORDS:,} records), median",
        ["writer", "records/s", "us/record", "x raw"], rows,
    )
    print(f"interval policy: {min(group_commits)}-{max(group_commits)} group fsyncs per {SPAN_SECONDS:.1f} s trial "
          f"({SPAN_SECONDS / INTERVAL_SECONDS:.0f} intervals)")
    if redaction is None:
        print("redaction: hermes_web/redaction/redactor.py not present, not measured")
    passed = verdict(
        f"default policy >= {GOAL_RATIO}x raw os.write",
        statistics.median(results["interval 0.2 s (default)"]) / raw >= GOAL_RATIO,
    )
    if redaction is not None:
        passed &= verdict(
            f"default policy with redaction >= {GOAL_RATIO}x raw os.write",
            statistics.median(results["interval 0.2 s + redaction"]) / raw >= GOAL_RATIO,
        )
    # A flush of a journal that grew by megabytes takes a while; at least two per trial
    # shows the measurement spans group commits rather than ending before the first.
    passed &= verdict("the interval policy group-committed at least twice in every trial", min(group_commits) >= 2)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
