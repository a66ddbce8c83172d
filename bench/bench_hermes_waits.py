"""How long a Hermes Agent turn keeps a person waiting around a flagged command.

One real ``serve`` process offers the ``hermes`` agent (the real ``hermes-agent`` package in
``.venv-hermes``) with Hermes's defaults (a new user's empty configuration: "smart"
approvals, so Hermes's auxiliary model judges the command before a person is asked), on a
fake OpenAI-compatible provider on loopback that answers every request at once. Each round
runs two turns in a fresh chat:

- the baseline: the model calls ``terminal`` with ``echo hello`` (nothing to approve), timed
  from ``run.started`` to ``tool.started``;
- the flagged turn: ``rm -rf ./scratch``, timed from ``run.started`` to
  ``approval.requested``, then *Deny*, timed from the answer to ``run.completed``.

Goals (medians): ``approval.requested`` within 2 s of the run's start, and the run's end
within 2 s of the deny. The ratio flagged/baseline says what the judging request adds.
"""

import statistics
import sys
import time

from common import ROOT, print_table, running_server, temp_dir, verdict

from tests.fake_openai import FakeOpenAI
from tests.hermes_support import _hermes_importable, answer, hermes_env, make_hermes_home, terminal_call
from tests.support import SseClient

ROUNDS = 5
GOAL_SECONDS = 2.0


def timed_turn(server, provider, command, deny=False) -> dict:
    """Seconds from the run's start to each record type's first arrival (and ``denied``)."""
    session_id = server.create_session()
    text = provider.script(terminal_call("call_b", command), answer("Done."))
    run_id = server.start_run(session_id, text)["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=120)
    seen = {}
    started = None
    try:
        for _, event, data in client.records():
            now = time.monotonic()
            if event == "run.started":
                started = now
            seen.setdefault(event, now - started)
            if event == "approval.requested" and deny:
                server.api("POST", f"/api/runs/{run_id}/approvals/{data['approval_id']}", {"choice": "deny"})
                seen["denied"] = time.monotonic() - started
    finally:
        client.close()
    return seen


def main() -> int:
    if not _hermes_importable():
        print(f"skipped: Hermes Agent is not installed in {ROOT / '.venv-hermes'} (make hermes-deps)")
        return 0
    provider = FakeOpenAI(models=["fake-model"]).start()
    baseline, asked, ended = [], [], []
    outcomes = set()
    try:
        with temp_dir("hermes-waits") as scratch, running_server(
                scratch / "var", env=hermes_env(provider, make_hermes_home(scratch, approvals=None))) as server:
            time.sleep(8)  # the first spare worker imports Hermes: not what is measured here
            timed_turn(server, provider, "echo warm-up")
            for _ in range(ROUNDS):
                plain = timed_turn(server, provider, "echo hello")
                baseline.append(plain["tool.started"])
                flagged = timed_turn(server, provider, "rm -rf ./scratch", deny=True)
                asked.append(flagged["approval.requested"])
                ended.append(flagged["run.completed"] - flagged["denied"])
                outcomes |= {plain.get("run.completed") is not None, flagged.get("run.completed") is not None}
    finally:
        provider.stop()
    median = statistics.median
    rows = [
        ["echo hello: run.started -> tool.started (baseline)", f"{median(baseline):.2f}", f"{max(baseline):.2f}"],
        ["rm -rf: run.started -> approval.requested", f"{median(asked):.2f}", f"{max(asked):.2f}"],
        ["rm -rf: deny -> run.completed", f"{median(ended):.2f}", f"{max(ended):.2f}"],
    ]
    print_table(f"Hermes turn waits, {ROUNDS} rounds (seconds)", ["interval", "median", "max"], rows)
    print(f"ratio flagged/baseline (run start to the card): {median(asked) / median(baseline):.2f}x")
    ok = outcomes == {True} and median(asked) <= GOAL_SECONDS and median(ended) <= GOAL_SECONDS
    return 0 if verdict(f"approval.requested and the end after a deny each within {GOAL_SECONDS:g} s", ok) else 1


if __name__ == "__main__":
    sys.exit(main())
