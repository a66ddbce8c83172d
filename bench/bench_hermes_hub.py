"""How much a running Hermes Agent turn slows the server's other requests.

One real ``serve`` process offers the ``hermes`` agent (the real ``hermes-agent`` package in
``.venv-hermes``, made by ``make hermes-deps``) on a fake OpenAI-compatible provider on
loopback. A client times ``GET /api/sessions``, one request after another: first with
nothing running (the baseline), then while a Hermes turn streams a long answer (its worker
building the agent, then streaming, while the next spare worker imports Hermes beside it).

Goal: the worst request while Hermes works takes at most 50 ms, i.e. the server's event
loop never stalls the way it does when Hermes runs inside it (0.2-0.9 s per turn).
"""

import sys
import time

from common import ROOT, format_ms, print_table, running_server, summary, temp_dir, verdict

from tests import provider_streams as streams
from tests.fake_openai import FakeOpenAI, Stream
from tests.hermes_support import _hermes_importable, hermes_env, make_hermes_home
from tests.support import SseClient

REQUESTS = 300
DELTAS = 400
DELTA_SECONDS = 0.02
GOAL_MAX_MS = 50.0


def timed_requests(server, count: int, until=None) -> list:
    took = []
    while len(took) < count or (until is not None and not until()):
        sent = time.perf_counter()
        status = server.api("GET", "/api/sessions")[0]
        took.append(time.perf_counter() - sent)
        assert status == 200
        if until is not None and until() and len(took) >= count:
            break
    return took


def main() -> int:
    if not _hermes_importable():
        print(f"skipped: Hermes Agent is not installed in {ROOT / '.venv-hermes'} (make hermes-deps)")
        return 0
    provider = FakeOpenAI(models=["fake-model"]).start()
    try:
        with temp_dir("hermes-hub") as scratch, running_server(
                scratch / "var", env=hermes_env(provider, make_hermes_home(scratch))) as server:
            session_id = server.create_session()
            time.sleep(8)  # the first spare worker imports Hermes: not what is measured here
            idle = timed_requests(server, REQUESTS)
            text = provider.script(Stream(streams.openai_text([f"w{i} " for i in range(DELTAS)]), delay=DELTA_SECONDS))
            run_id = server.start_run(session_id, text)["run_id"]
            started = time.perf_counter()
            busy = timed_requests(server, REQUESTS, until=lambda: server.api("GET", f"/api/runs/{run_id}")[1]["status"] != "running")
            elapsed = time.perf_counter() - started
            client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=60)
            kinds = [event for _, event, _ in client.records()]
            client.close()
    finally:
        provider.stop()
    rows = []
    for name, values in (("idle (baseline)", idle), ("while a Hermes turn runs", busy)):
        stats = summary(values)
        rows.append([name, stats["n"], format_ms(stats["p50_ms"]), format_ms(stats["p99_ms"]), format_ms(stats["max_ms"])])
    print_table("GET /api/sessions latency (ms)", ["server", "requests", "p50", "p99", "max"], rows)
    print(f"the turn: {kinds.count('text.delta')} text deltas, ended {kinds[-1]}, {elapsed:.1f} s of requests")
    ratio = summary(busy)["p50_ms"] / summary(idle)["p50_ms"]
    print(f"p50 ratio busy/idle: {ratio:.2f}x")
    ok = kinds[-1] == "run.completed" and summary(busy)["max_ms"] <= GOAL_MAX_MS
    return 0 if verdict(f"max latency while Hermes works <= {GOAL_MAX_MS:.0f} ms", ok) else 1


if __name__ == "__main__":
    sys.exit(main())
