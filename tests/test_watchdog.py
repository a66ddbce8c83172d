"""The run watchdog: a run that lasts longer than HERMES_WEB_RUN_TIMEOUT_S, or whose agent
gives no sign of life for HERMES_WEB_RUN_SILENCE_S while nobody is asked anything, ends
``run.failed`` with a readable reason, exactly once, its partial output kept; an agent that
ignores its cancel is ended without it."""

import json
import threading
import time

import pytest

from hermes_web.app import create_app, shutdown
from hermes_web.core.config import Config, ConfigError
from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.core.services import find_service
from hermes_web.runs.agents import Agents
from hermes_web.runs.agents.demo import DemoAgent
from hermes_web.runs.manager import STOP_GRACE_SECONDS
from tests.support import SseClient


def records_of(server, session_id, run_id) -> list:
    return [json.loads(line) for line in server.journal_path(session_id, run_id).read_text().splitlines()]


def run_stream(server, session_id, text, timeout=30):
    run_id = server.start_run(session_id, text)["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=timeout)
    try:
        return run_id, list(client.records())
    finally:
        client.close()


def test_an_agent_silent_past_the_limit_fails_its_run_once_and_keeps_what_it_wrote(server_factory):
    # The demo agent writes a word every 3 s: each gap is longer than the 1 s silence limit.
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "3000", "HERMES_WEB_RUN_SILENCE_S": "1"})
    session_id = server.create_session()
    started = time.monotonic()
    run_id, frames = run_stream(server, session_id, "tell me something long")
    took = time.monotonic() - started
    assert frames[-1][1] == "run.failed", [event for _, event, _ in frames]
    error = frames[-1][2]["error"]
    assert error["type"] == "AgentSilent" and "HERMES_WEB_RUN_SILENCE_S" in error["message"]
    assert "1 s" in error["message"]
    assert took < 2.5  # stopped at the limit, not at the agent's next word
    records = records_of(server, session_id, run_id)
    assert [record["type"] for record in records].count("run.failed") == 1
    assert sum(record["type"] in TERMINAL_TYPES for record in records) == 1 and records[-1]["type"] == "run.failed"
    time.sleep(3.5)  # the agent's next word came and went: nothing follows the terminal record
    assert records_of(server, session_id, run_id) == records
    message = server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1]
    assert message["status"] == "failed" and message["error"]["type"] == "AgentSilent"
    # The server goes on: the next run of the same session starts.
    assert server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "again"})[0] == 202


def test_a_run_past_its_time_limit_fails_though_its_agent_keeps_talking(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "100", "HERMES_WEB_RUN_TIMEOUT_S": "1.5",
                                 "HERMES_WEB_RUN_SILENCE_S": "60"})
    session_id = server.create_session()
    run_id, frames = run_stream(server, session_id, "a long answer please")
    events = [event for _, event, _ in frames]
    assert events[-1] == "run.failed" and {"text.delta", "reasoning.delta"} & set(events), events
    error = frames[-1][2]["error"]
    assert error["type"] == "RunTimedOut" and "HERMES_WEB_RUN_TIMEOUT_S" in error["message"]
    started_ts, ended_ts = frames[0][2]["ts"], frames[-1][2]["ts"]
    assert 1.5 <= ended_ts - started_ts < 3.5
    assert sum(record["type"] in TERMINAL_TYPES for record in records_of(server, session_id, run_id)) == 1


def test_waiting_for_a_person_is_not_silence(server_factory):
    # The approval waits 2.5 s for a person (its own timeout); the silence limit is 1 s.
    server = server_factory(env={"HERMES_WEB_RUN_SILENCE_S": "1", "HERMES_WEB_APPROVAL_TIMEOUT_S": "2.5"})
    session_id = server.create_session()
    run_id, frames = run_stream(server, session_id, "/approval rm -rf ./build")
    events = [event for _, event, _ in frames]
    assert events[-1] == "run.completed", events
    resolved = next(data for _, event, data in frames if event == "approval.resolved")
    assert resolved["by"] == "timeout"


class StubbornAgent:
    """An agent stuck in a call that ignores its cancel (say, a library with no timeout):
    it writes one word, then blocks until released, then tries to write more."""

    name = "stubborn"
    model = "stubborn-1"
    uses_history = False

    def __init__(self):
        self.release = threading.Event()
        self.returned = threading.Event()

    def models(self):
        return [self.model]

    def accepts(self, model):
        return model == self.model

    def stream(self, request, cancel):
        try:
            yield {"type": "text.delta", "text": "partial "}
            self.release.wait(30)
            yield {"type": "text.delta", "text": "too late"}
        finally:
            self.returned.set()


def test_an_agent_that_ignores_its_cancel_is_ended_without_it(tmp_path):
    app = create_app(Config(data_dir=tmp_path, run_timeout=1.0, demo_delay_ms=1))
    runs = find_service(app, "runs")
    stubborn = StubbornAgent()
    runs.agents = Agents({"demo": DemoAgent(0.001), "stubborn": stubborn}, default="stubborn")
    runs.default_agent = "stubborn"
    client = app.test_client()
    try:
        session_id = client.post("/api/sessions", json={}).get_json()["id"]
        started = time.monotonic()
        run_id = client.post(f"/api/sessions/{session_id}/runs", json={"text": "hi"}).get_json()["run_id"]
        deadline = started + 1.0 + STOP_GRACE_SECONDS + 3
        while client.get(f"/api/runs/{run_id}").get_json()["status"] == "running":
            assert time.monotonic() < deadline, "the watchdog did not end the run"
            time.sleep(0.05)
        took = time.monotonic() - started
        assert 1.0 + STOP_GRACE_SECONDS - 0.5 <= took, took
        path = tmp_path / "journals" / session_id / f"{run_id}.jsonl"
        written = path.read_text()
        records = [json.loads(line) for line in written.splitlines()]
        assert records[-1]["type"] == "run.failed" and records[-1]["error"]["type"] == "RunTimedOut"
        assert [r["text"] for r in records if r["type"] == "text.delta"] == ["partial "]
        # The agent wakes up later: what it says then is dropped, and no second terminal appears.
        stubborn.release.set()
        assert stubborn.returned.wait(5)
        time.sleep(0.3)
        assert path.read_text() == written
        # The session takes its next run.
        assert client.post(f"/api/sessions/{session_id}/runs", json={"text": "again"}).status_code == 202
    finally:
        stubborn.release.set()
        shutdown(app)


@pytest.mark.parametrize("env", [
    {"HERMES_WEB_RUN_TIMEOUT_S": "0"}, {"HERMES_WEB_RUN_TIMEOUT_S": "-5"}, {"HERMES_WEB_RUN_TIMEOUT_S": "later"},
    {"HERMES_WEB_RUN_SILENCE_S": "0"}, {"HERMES_WEB_RUN_SILENCE_S": "nan"}, {"HERMES_WEB_RUN_SILENCE_S": "1e9"},
])
def test_malformed_watchdog_limits_are_config_errors(tmp_path, env):
    with pytest.raises(ConfigError):
        Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path), **env})


def test_the_watchdog_limits_are_read_from_the_environment(tmp_path):
    config = Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path), "HERMES_WEB_RUN_TIMEOUT_S": "600",
                              "HERMES_WEB_RUN_SILENCE_S": "45.5"})
    assert (config.run_timeout, config.run_silence) == (600, 45.5)
    assert (Config().run_timeout, Config().run_silence) == (1800, 300)
