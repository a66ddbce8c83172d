"""Approvals and clarifying questions through a real server: the demo agent's ``/approval``
and ``/question`` turns wait for a person, who answers through the API from any client;
the journal, the streams and the session view (also after compaction) say what was decided."""

import json
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, SseClient, journal_lines, request

TERMINAL = ("run.completed", "run.failed", "run.cancelled", "run.interrupted")


def start_and_wait_for(server, session_id, text, kind):
    """Start a run and read its stream up to the record ``kind``: ``(run_id, that record, client)``."""
    run_id = server.start_run(session_id, text)["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=15)
    for _, event, data in client.records():
        if event == kind:
            return run_id, data, client
        assert event not in TERMINAL, f"the run ended before {kind}"
    raise AssertionError("the stream ended")


def rest_of(client):
    events = [(event, data) for _, event, data in client.records()]
    client.close()
    return events


def journal_types(server, session_id, run_id):
    return [json.loads(line)["type"] for line, _ in journal_lines(server.journal_path(session_id, run_id))]


def assistant(server, session_id, run_id):
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    return next(m for m in view["messages"] if m["role"] == "assistant" and m["run_id"] == run_id)


def test_an_approval_is_answered_once_journaled_then_refused_as_settled(server):
    session_id = server.create_session()
    session_stream = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=15)
    run_id, requested, client = start_and_wait_for(server, session_id, "/approval rm -rf build/", "approval.requested")
    approval_id = requested["approval_id"]
    assert requested["detail"] == "rm -rf build/" and requested["choices"] == ["once", "session", "always", "deny"]
    assert requested["call_id"] and requested["title"]
    pending = assistant(server, session_id, run_id)
    assert pending["status"] == "running"
    assert pending["approvals"] == [{"id": approval_id, "call_id": requested["call_id"], "title": requested["title"],
                                     "detail": "rm -rf build/", "choices": ["once", "session", "always", "deny"],
                                     "status": "pending", "choice": None, "by": None}]

    status, body, _ = server.api("POST", f"/api/runs/{run_id}/approvals/{approval_id}", {"choice": "session"})
    assert (status, body) == (200, {"approval_id": approval_id, "choice": "session", "by": "user"})
    # Journaled before the answer came back.
    assert "approval.resolved" in journal_types(server, session_id, run_id)
    events = rest_of(client)
    assert [event for event, _ in events][:2] == ["approval.resolved", "tool.finished"]
    assert events[-1][0] == "run.completed"
    assert "".join(data["text"] for event, data in events if event == "text.delta") == "You chose **session**."

    status, body, _ = server.api("POST", f"/api/runs/{run_id}/approvals/{approval_id}", {"choice": "deny"})
    assert status == 409 and body["error"]["code"] == "already_resolved"
    assert (body["choice"], body["by"]) == ("session", "user")
    settled = assistant(server, session_id, run_id)["approvals"][0]
    assert (settled["status"], settled["choice"], settled["by"]) == ("resolved", "session", "user")

    # Every viewer of the session saw the same records.
    seen = []
    for _, event, data in session_stream.records():
        if data.get("run_id", run_id) == run_id:
            seen.append(event)
        if event == "run.completed":
            break
    session_stream.close()
    assert seen.count("approval.requested") == 1 and seen.count("approval.resolved") == 1


def test_bad_answers_are_4xx_and_change_nothing(server):
    session_id = server.create_session()
    run_id, requested, client = start_and_wait_for(server, session_id, "/approval make clean", "approval.requested")
    path = f"/api/runs/{run_id}/approvals/{requested['approval_id']}"
    cases = [
        (path, {"choice": "sometimes"}, 400, "invalid_choice"),
        (path, {"choice": None}, 400, "invalid_choice"),
        (path, {}, 400, "invalid_choice"),
        (path, ["once"], 400, "invalid_json"),
        (path, "{not json", 400, "invalid_json"),
        (f"/api/runs/{run_id}/approvals/apr_000000000000", {"choice": "once"}, 404, "approval_not_found"),
        (f"/api/runs/{run_id}/questions/{requested['approval_id']}", {"answer": "x"}, 404, "question_not_found"),
        (f"/api/runs/{run_id}/approvals/bad.id", {"choice": "once"}, 400, "invalid_id"),
        (f"/api/runs/nope/approvals/{requested['approval_id']}", {"choice": "once"}, 404, "run_not_found"),
    ]
    for target, body, status, code in cases:
        got, answer, _ = server.api("POST", target, body)
        assert (got, answer["error"]["code"]) == (status, code), (target, body)
    status, _, _ = server.api("GET", path)
    assert status == 405
    assert journal_types(server, session_id, run_id).count("approval.resolved") == 0
    assert server.api("POST", path, {"choice": "deny"})[0] == 200
    assert rest_of(client)[-1][0] == "run.completed"
    assert assistant(server, session_id, run_id)["tool_calls"][0]["is_error"] is True


def test_a_question_takes_a_typed_answer(server):
    session_id = server.create_session()
    run_id, asked, client = start_and_wait_for(server, session_id, "/question", "question.asked")
    assert asked["choices"] == ["red", "green", "blue"] and asked["question_id"].startswith("q_")
    path = f"/api/runs/{run_id}/questions/{asked['question_id']}"
    assert server.api("POST", path, {"answer": "   "})[1]["error"]["code"] == "invalid_answer"
    assert server.api("POST", path, {"answer": 7})[1]["error"]["code"] == "invalid_answer"
    status, body, _ = server.api("POST", path, {"answer": "teal, please"})
    assert (status, body) == (200, {"question_id": asked["question_id"], "answer": "teal, please", "by": "user"})
    events = rest_of(client)
    assert "".join(data["text"] for event, data in events if event == "text.delta") == "You answered: **teal, please**."
    assert server.api("POST", path, {"answer": "red"})[1]["error"]["code"] == "already_answered"
    question = assistant(server, session_id, run_id)["questions"][0]
    assert (question["status"], question["answer"], question["by"]) == ("resolved", "teal, please", "user")


def test_cancel_settles_the_waiting_approval_before_the_run_ends(server):
    session_id = server.create_session()
    run_id, requested, client = start_and_wait_for(server, session_id, "/approval rm -rf /", "approval.requested")
    assert server.api("POST", f"/api/runs/{run_id}/cancel")[0] == 200
    events = rest_of(client)
    assert [event for event, _ in events] == ["approval.resolved", "run.cancelled"]
    assert (events[0][1]["choice"], events[0][1]["by"]) == ("deny", "cancel")
    status, body, _ = server.api("POST", f"/api/runs/{run_id}/approvals/{requested['approval_id']}", {"choice": "once"})
    assert status == 409 and body["by"] == "cancel"


def test_unanswered_requests_time_out(server_factory):
    server = server_factory(env={"HERMES_WEB_APPROVAL_TIMEOUT_S": "0.5"})
    session_id = server.create_session()
    run_id, requested, client = start_and_wait_for(server, session_id, "/approval rm -rf build/", "approval.requested")
    started = time.monotonic()
    events = rest_of(client)
    assert time.monotonic() - started < 5
    assert events[0] == ("approval.resolved", {**events[0][1], "choice": "deny", "by": "timeout"})
    assert events[-1][0] == "run.completed"
    run_id, asked, client = start_and_wait_for(server, session_id, "/question", "question.asked")
    events = rest_of(client)
    assert (events[0][1]["answer"], events[0][1]["by"]) == ("", "timeout")
    assert assistant(server, session_id, run_id)["text"] == "Nobody answered."


def test_only_the_server_running_the_turn_answers_it(server_factory, tmp_path):
    owner = server_factory(data_dir=tmp_path / "shared")
    other = server_factory(data_dir=tmp_path / "shared")
    session_id = owner.create_session()
    run_id, requested, client = start_and_wait_for(owner, session_id, "/approval rm -rf build/", "approval.requested")
    path = f"/api/runs/{run_id}/approvals/{requested['approval_id']}"
    status, body, _ = other.api("POST", path, {"choice": "once"})
    assert (status, body["error"]["code"]) == (409, "run_active_elsewhere")
    # The other server still shows the pending card (it reads the same journal).
    view = other.api("GET", f"/api/sessions/{session_id}")[1]
    assert view["messages"][-1]["approvals"][0]["status"] == "pending"
    assert owner.api("POST", path, {"choice": "once"})[0] == 200
    assert rest_of(client)[-1][0] == "run.completed"
    # Finished, any server can say it is settled.
    status, body, _ = other.api("POST", path, {"choice": "deny"})
    assert (status, body["error"]["code"], body["choice"]) == (409, "already_resolved", "once")


def test_settled_requests_survive_compaction(server):
    session_id = server.create_session()
    run_id, requested, client = start_and_wait_for(server, session_id, "/approval ls", "approval.requested")
    server.api("POST", f"/api/runs/{run_id}/approvals/{requested['approval_id']}", {"choice": "once"})
    rest_of(client)
    before = assistant(server, session_id, run_id)
    result = subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(server.data_dir),
                             "--older-than", "0", "--delete"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not server.journal_path(session_id, run_id).exists()
    assert assistant(server, session_id, run_id) == before
    status, body, _ = server.api("POST", f"/api/runs/{run_id}/approvals/{requested['approval_id']}", {"choice": "deny"})
    assert (status, body["error"]["code"]) == (409, "already_resolved")


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_answers_are_json_bodies(server, content_type):
    session_id = server.create_session()
    run_id, requested, client = start_and_wait_for(server, session_id, "/approval ls", "approval.requested")
    status, body, _ = request(server.url, "POST", f"/api/runs/{run_id}/approvals/{requested['approval_id']}",
                              json.dumps({"choice": "deny"}), {"Content-Type": content_type})
    assert status == 200, body
    rest_of(client)
