"""Hermes Agent turns that never hang, with the real ``hermes-agent`` and Hermes's own defaults
(a new user's empty configuration: "smart" approvals, where Hermes's auxiliary model judges a
flagged command before a person is asked), against a fake provider that logs every request
it gets (method, path, ``stream`` flag, the last message's role).

Every wait is in the journal as a ``status`` record; a flagged command reaches a person
promptly even when the provider never answers the judging request; a deny goes on to the
next model request at once; a provider that cannot stream works when told; one that never
answers is ended by the run watchdog; a worker that is killed ends its run at once, one that
is stopped by the silence limit, each with exactly one terminal record.
"""

import json
import os
import signal
import time

import pytest

from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.runs.agents.hermes_worker import SMART_APPROVAL_SECONDS
from tests import provider_streams as streams
from tests.fake_openai import FakeOpenAI, Hold, Stream
from tests.hermes_support import answer, hermes_env, make_hermes_home, needs_hermes, terminal_call
from tests.support import ServerProcess, SseClient
from tests.test_hermes_agent import processes_in, wait_until, workspace

pytestmark = needs_hermes
REVIEWER = "security reviewer"  # words of the system prompt of Hermes's smart-approval request


@pytest.fixture(scope="module")
def provider():
    fake = FakeOpenAI(models=["fake-model"]).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def verdicts(provider):
    """The judging request's answer (``verdicts["next"]``: APPROVE, DENY, ESCALATE, or None
    to hold it unanswered); reset for every test."""
    chosen = {"next": "ESCALATE"}

    def judge(body):
        system = next((m.get("content") for m in body.get("messages", []) if m.get("role") == "system"), "")
        if REVIEWER not in str(system):
            return None
        return Hold() if chosen["next"] is None else Stream(streams.openai_text([chosen["next"]]))

    provider.unscripted = judge
    yield chosen
    provider.unscripted = None


def start_server(tmp_path_factory, provider, **env):
    home = make_hermes_home(tmp_path_factory.mktemp("new-user-hermes-home"), approvals=None)
    return ServerProcess(tmp_path_factory.mktemp("hermes-waits") / "var",
                         env=hermes_env(provider, home, **env)).start(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory, provider):
    server = start_server(tmp_path_factory, provider)
    yield server
    server.stop()


def follow(server, session_id, text, on_record=None, timeout=90):
    """Run ``text`` and read its run stream: ``(run_id, [(arrived, event, data)])``, arrival
    in ``time.monotonic()``; ``on_record(run_id, event, data)`` drives the run meanwhile."""
    run_id = server.start_run(session_id, text)["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=timeout)
    seen = []
    try:
        for _, event, data in client.records():
            seen.append((time.monotonic(), event, data))
            if on_record is not None:
                on_record(run_id, event, data)
    finally:
        client.close()
    return run_id, seen


def statuses(seen) -> list:
    return [(data["state"], data.get("call_id")) for _, event, data in seen if event == "status"]


def journal(server, session_id, run_id) -> list:
    return [json.loads(line) for line in server.journal_path(session_id, run_id).read_text().splitlines()]


def one_terminal(records) -> str:
    kinds = [record["type"] for record in records]
    assert sum(kind in TERMINAL_TYPES for kind in kinds) == 1 and kinds[-1] in TERMINAL_TYPES, kinds
    return kinds[-1]


def largest_gap(records) -> float:
    """The longest time between two consecutive records of a journal."""
    times = [record["ts"] for record in records]
    return max(later - earlier for earlier, later in zip(times, times[1:]))


def deny(server):
    def on_record(run_id, event, data):
        if event == "approval.requested":
            deny.at = time.monotonic()
            assert server.api("POST", f"/api/runs/{run_id}/approvals/{data['approval_id']}", {"choice": "deny"})[0] == 200
    return on_record


# ------------------------------------------------------------------ flagged commands, smart approvals


def test_a_flagged_command_reaches_a_person_promptly_and_a_deny_goes_straight_on(server, provider):
    session_id = server.create_session()
    text = provider.script(terminal_call("call_rm", "touch denied-marker && rm -rf ./scratch"), answer("I left it alone."))
    since = len(provider.log)
    run_id, seen = follow(server, session_id, text, deny(server))
    events = [event for _, event, _ in seen]
    assert events[-1] == "run.completed", events
    assert not (workspace(server, session_id) / "denied-marker").exists()
    # Every wait was said, in order: the model, the tool, the model judging the command, a person, the model again.
    said = statuses(seen)
    assert said[0] == ("waiting_for_model", None)
    tool_at = said.index(("running_tool", "call_rm"))
    asked_at = said.index(("waiting_for_approval", "call_rm"))
    assert ("waiting_for_model", None) in said[tool_at:asked_at]
    assert said[asked_at + 1:] and said[asked_at + 1][0] == "waiting_for_model"
    judging = next(data for _, event, data in seen if event == "status" and "safe" in data["detail"])
    assert judging["state"] == "waiting_for_model"
    # Nothing in the journal is ever silent for long while a provider answers at once.
    records = journal(server, session_id, run_id)
    assert one_terminal(records) == "run.completed"
    assert largest_gap(records) < 5.0
    # What Hermes asked of the provider: the turn (streamed), the judging request (not streamed), and right after
    # the deny the turn's next request, with the tool's result last.
    chat = [entry for entry in provider.log[since:] if entry["path"] == "/v1/chat/completions"]
    assert [(entry["stream"], entry["last_role"]) for entry in chat] == [(True, "user"), (None, "user"), (True, "tool")]
    assert chat[2]["at"] - deny.at < 2.0
    ended = next(arrived for arrived, event, _ in seen if event == "run.completed")
    assert ended - deny.at < 5.0
    call = server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1]["tool_calls"][0]
    assert call["is_error"] is True and "BLOCKED" in call["result"]


def test_a_judging_request_the_provider_never_answers_is_put_to_a_person_within_its_bound(server, provider, verdicts):
    verdicts["next"] = None  # held open: with the SDK's timeout and retries, 90 s and more
    session_id = server.create_session()
    text = provider.script(terminal_call("call_rm2", "touch held-marker && rm -rf ./scratch"), answer("Not done."))
    run_id, seen = follow(server, session_id, text, deny(server))
    assert seen[-1][1] == "run.completed"
    judging = next(arrived for arrived, event, data in seen if event == "status" and "safe" in data["detail"])
    asked = next(arrived for arrived, event, _ in seen if event == "approval.requested")
    assert SMART_APPROVAL_SECONDS - 1 <= asked - judging < SMART_APPROVAL_SECONDS + 10
    assert not (workspace(server, session_id) / "held-marker").exists()
    # The view said what the run waited on the whole time.
    records = journal(server, session_id, run_id)
    assert one_terminal(records) == "run.completed"


def test_a_command_the_model_judges_safe_runs_without_asking_and_an_approved_one_runs(server, provider, verdicts):
    verdicts["next"] = "APPROVE"
    session_id = server.create_session()
    text = provider.script(terminal_call("call_ok", "touch judged-marker && rm -rf ./scratch"), answer("Done."))
    _, seen = follow(server, session_id, text)
    events = [event for _, event, _ in seen]
    assert "approval.requested" not in events and events[-1] == "run.completed"
    assert (workspace(server, session_id) / "judged-marker").exists()
    assert ("running_tool", "call_ok") in statuses(seen)

    verdicts["next"] = "ESCALATE"
    text = provider.script(terminal_call("call_ok2", "touch approved-marker && rm -rf ./scratch"), answer("Done."))

    def approve(run_id, event, data):
        if event == "approval.requested":
            assert server.api("POST", f"/api/runs/{run_id}/approvals/{data['approval_id']}", {"choice": "once"})[0] == 200

    _, seen = follow(server, session_id, text, approve)
    assert seen[-1][1] == "run.completed"
    assert (workspace(server, session_id) / "approved-marker").exists()
    resolved = next(data for _, event, data in seen if event == "approval.resolved")
    assert (resolved["choice"], resolved["by"]) == ("once", "user")


def test_a_clarifying_question_shows_its_wait_in_the_view_until_it_is_answered(server, provider):
    session_id = server.create_session()
    text = provider.script(
        Stream(streams.openai_tool_calls([("call_ask", "clarify", {"question": "Staging or prod?", "choices": ["staging", "prod"]})])),
        answer("Staging it is."))
    views = []

    def on_record(run_id, event, data):
        if event == "question.asked":
            views.append(server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1])
            assert server.api("POST", f"/api/runs/{run_id}/questions/{data['question_id']}", {"answer": "staging"})[0] == 200
        elif event == "question.answered":
            views.append(server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1])

    _, seen = follow(server, session_id, text, on_record)
    assert seen[-1][1] == "run.completed"
    waiting, answered = views
    assert waiting["activity"]["state"] == "waiting_for_answer" and waiting["activity"]["call_id"] == "call_ask"
    assert isinstance(waiting["activity"]["since"], float)
    assert answered.get("activity") is None or answered["activity"]["state"] != "waiting_for_answer"
    final = server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1]
    assert final["status"] == "completed" and "activity" not in final
    assert "Staging it is." in final["text"]


# ------------------------------------------------------------------ providers that cannot stream or never answer


def test_a_provider_that_cannot_stream_fails_clearly_then_works_when_told(tmp_path_factory):
    provider = FakeOpenAI(models=["fake-model"], streaming=False).start()
    try:
        for streaming in ("1", "0"):
            server = start_server(tmp_path_factory, provider, HERMES_WEB_HERMES_STREAM=streaming)
            try:
                session_id = server.create_session()
                text = provider.script(terminal_call("call_echo", "echo whole > whole.txt"), answer("All done."))
                since = len(provider.log)
                run_id, seen = follow(server, session_id, text)
                last_event, last = seen[-1][1], seen[-1][2]
                if streaming == "1":
                    assert last_event == "run.failed" and "HERMES_WEB_HERMES_STREAM=0" in last["error"]["message"]
                    continue
                assert last_event == "run.completed", last
                assert (workspace(server, session_id) / "whole.txt").read_text() == "whole\n"
                assert server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1]["text"].strip() == "All done."
                chat = [entry for entry in provider.log[since:] if entry["path"] == "/v1/chat/completions"]
                assert [entry["stream"] for entry in chat] == [None, None]
                assert one_terminal(journal(server, session_id, run_id)) == "run.completed"
            finally:
                server.stop()
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, provider):
    """A server whose runs may last 8 s and stay silent 4 s."""
    server = start_server(tmp_path_factory, provider, HERMES_WEB_RUN_TIMEOUT_S="8", HERMES_WEB_RUN_SILENCE_S="4")
    yield server
    server.stop()


@pytest.fixture
def waiting_on_the_model(guarded, provider):
    """A run whose provider never answers: ``(session_id, run_id, its records still to read,
    the worker's pid)`` once its worker waits on the model request."""
    session_id = guarded.create_session()
    run_id = guarded.start_run(session_id, provider.script(Hold()))["run_id"]
    client = SseClient(guarded.url, f"/api/runs/{run_id}/events", timeout=60)
    try:
        records = client.records()
        for _, event, data in records:
            if event == "status" and data["detail"].startswith("waiting for the model"):
                break
        (pid,) = processes_in(workspace(guarded, session_id))
        yield session_id, run_id, records, pid
    finally:
        client.close()


def test_a_provider_that_never_answers_is_ended_by_the_run_watchdog(guarded, waiting_on_the_model):
    session_id, run_id, records, pid = waiting_on_the_model
    rest = [(time.monotonic(), event, data) for _, event, data in records]
    event, data = rest[-1][1], rest[-1][2]
    assert event == "run.failed" and data["error"]["type"] == "RunTimedOut", rest
    assert "HERMES_WEB_RUN_TIMEOUT_S" in data["error"]["message"]
    written = journal(guarded, session_id, run_id)
    assert one_terminal(written) == "run.failed"
    assert 8 <= written[-1]["ts"] - written[0]["ts"] < 14
    wait_until(lambda: not processes_in(workspace(guarded, session_id)), timeout=10, what="the worker to be stopped")


def test_a_worker_killed_while_it_waits_ends_its_run_at_once(guarded, waiting_on_the_model):
    session_id, run_id, records, pid = waiting_on_the_model
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    rest = [(time.monotonic(), event, data) for _, event, data in records]
    arrived, event, data = rest[-1]
    assert event == "run.failed" and "killed by signal 9" in data["error"]["message"], rest
    assert arrived - killed < 3.0
    assert one_terminal(journal(guarded, session_id, run_id)) == "run.failed"


def test_a_stopped_worker_is_ended_by_the_silence_limit_and_killed(guarded, waiting_on_the_model):
    session_id, run_id, records, pid = waiting_on_the_model
    stopped = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        rest = [(time.monotonic(), event, data) for _, event, data in records]
        arrived, event, data = rest[-1]
        assert event == "run.failed" and data["error"]["type"] == "AgentSilent", rest
        assert 3.5 <= arrived - stopped < 8
        assert one_terminal(journal(guarded, session_id, run_id)) == "run.failed"
        wait_until(lambda: not processes_in(workspace(guarded, session_id)), timeout=10, what="the stopped worker to be killed")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
