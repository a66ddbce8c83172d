"""What the metrics cost: server CPU per journal record with ``/metrics`` on and off.

Two real servers (HERMES_WEB_METRICS=on and off) each run the same demo turns, every turn
watched live by two viewers, in alternating rounds so both see the same machine noise; the
figure is the server process's CPU time (user + system, /proc) over the records it wrote.
Goal: on / off <= 1.05.
"""

import statistics
import sys
import threading

from common import cpu_seconds, print_table, running_server, temp_dir, verdict

from tests.support import SseClient

RUNS_PER_ROUND = 40
ROUNDS = 5
VIEWERS = 2
GOAL_RATIO = 1.05


def watch(server, run_id: str, counts: list) -> None:
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=60)
    try:
        counts.append(sum(1 for _ in client.records()))
    finally:
        client.close()


def one_round(server, session_id: str) -> tuple:
    """``(server CPU seconds, records written)`` of RUNS_PER_ROUND watched turns."""
    before = cpu_seconds(server.process.pid)
    records = 0
    for _ in range(RUNS_PER_ROUND):
        run_id = server.start_run(session_id, "a turn to measure")["run_id"]
        counts = []
        viewers = [threading.Thread(target=watch, args=(server, run_id, counts)) for _ in range(VIEWERS)]
        for viewer in viewers:
            viewer.start()
        for viewer in viewers:
            viewer.join()
        assert len(counts) == VIEWERS and len(set(counts)) == 1, counts
        records += counts[0]
    return cpu_seconds(server.process.pid) - before, records


def main() -> int:
    env = {"HERMES_WEB_DEMO_DELAY_MS": "0", "HERMES_WEB_FSYNC": "interval"}
    per_record = {"on": [], "off": []}
    with temp_dir("bench-metrics") as scratch, \
            running_server(scratch / "on-var", {**env, "HERMES_WEB_METRICS": "on"}) as metrics_on, \
            running_server(scratch / "off-var", {**env, "HERMES_WEB_METRICS": "off"}) as metrics_off:
        servers = {"on": (metrics_on, metrics_on.create_session()), "off": (metrics_off, metrics_off.create_session())}
        for name, (server, session_id) in servers.items():
            one_round(server, session_id)  # warm-up: imports, caches, the first journal
        for round_number in range(ROUNDS):
            order = ("on", "off") if round_number % 2 == 0 else ("off", "on")
            for name in order:
                server, session_id = servers[name]
                seconds, records = one_round(server, session_id)
                per_record[name].append(seconds / records)
    on = statistics.median(per_record["on"])
    off = statistics.median(per_record["off"])
    ratio = on / off
    print_table(
        f"server CPU per record ({ROUNDS} rounds of {RUNS_PER_ROUND} turns, {VIEWERS} live viewers each; medians)",
        ["metrics", "CPU per record", "rounds"],
        [["off (baseline)", f"{off * 1e6:.1f} us", " ".join(f"{value * 1e6:.1f}" for value in per_record["off"])],
         ["on", f"{on * 1e6:.1f} us", " ".join(f"{value * 1e6:.1f}" for value in per_record["on"])]],
    )
    print(f"ratio on / off: {ratio:.3f}")
    return 0 if verdict(f"metrics on / off <= {GOAL_RATIO}", ratio <= GOAL_RATIO) else 1


if __name__ == "__main__":
    sys.exit(main())
