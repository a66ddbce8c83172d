"""The decisions broker: an agent's thread asks and blocks, a person (another thread) answers;
timeouts, cancel, closing the run and racing answers each settle a request exactly once."""

import threading
import time

import pytest

from hermes_web.read.fold import fold
from hermes_web.runs.decisions import (
    AlreadySettled,
    DecisionExpired,
    DecisionNotFound,
    InvalidAnswer,
    RunDecisions,
    settled_in_view,
)


class Journal:
    """Records as the run's writer would take them, in order, from any thread."""

    def __init__(self):
        self.records = []
        self.lock = threading.Lock()
        self.appended = threading.Condition(self.lock)

    def emit(self, record):
        with self.lock:
            self.records.append(dict(record))
            self.appended.notify_all()

    def wait_for(self, kind, timeout=5.0) -> dict:
        with self.lock:
            assert self.appended.wait_for(lambda: any(r["type"] == kind for r in self.records), timeout), kind
            return next(r for r in self.records if r["type"] == kind)

    def kinds(self):
        with self.lock:
            return [record["type"] for record in self.records]


def asking(decisions, method, *args, **kwargs):
    """Run one ask in its own thread (the agent's); ``result()`` is what it returned."""
    outcome = {}

    def ask():
        outcome["value"] = getattr(decisions, method)(*args, **kwargs)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()

    def result(timeout=5.0):
        thread.join(timeout)
        assert not thread.is_alive(), "the agent is still waiting"
        return outcome["value"]

    return result


@pytest.fixture
def journal():
    return Journal()


def test_a_person_answers_and_the_agent_goes_on_with_the_choice(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=30)
    result = asking(decisions, "ask_approval", "Run a command?", "rm -rf build", ["once", "deny"], "call_1")
    requested = journal.wait_for("approval.requested")
    assert requested == {"type": "approval.requested", "approval_id": requested["approval_id"], "call_id": "call_1",
                         "title": "Run a command?", "detail": "rm -rf build", "choices": ["once", "deny"]}
    assert requested["approval_id"].startswith("apr_") and decisions.pending() == [requested["approval_id"]]
    settled = decisions.answer("approval", requested["approval_id"], "once")
    # The answer is in the journal by the time the person hears back.
    assert journal.records[-1] == settled == {"type": "approval.resolved", "approval_id": requested["approval_id"],
                                              "choice": "once", "by": "user"}
    assert result() == "once"
    assert decisions.pending() == []
    with pytest.raises(AlreadySettled) as again:
        decisions.answer("approval", requested["approval_id"], "deny")
    assert again.value.record["choice"] == "once"
    assert journal.kinds() == ["approval.requested", "approval.resolved"]


def test_answers_that_are_not_offered_or_not_asked_are_refused(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=30)
    result = asking(decisions, "ask_approval", "Delete?", "rm x", ["once", "deny"])
    approval_id = journal.wait_for("approval.requested")["approval_id"]
    for bad in ("always", "", None, 3, ["once"]):
        with pytest.raises(InvalidAnswer):
            decisions.answer("approval", approval_id, bad)
    with pytest.raises(DecisionNotFound):
        decisions.answer("approval", "apr_000000000000", "once")
    with pytest.raises(DecisionNotFound):  # the right id, the wrong kind
        decisions.answer("question", approval_id, "once")
    assert decisions.pending() == [approval_id]
    decisions.answer("approval", approval_id, "deny")
    assert result() == "deny"


def test_deny_is_always_offered(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=0.2)
    result = asking(decisions, "ask_approval", "Go?", "", ["yes"])
    assert journal.wait_for("approval.requested")["choices"] == ["yes", "deny"]
    assert result() == "deny"


def test_a_question_takes_any_text_and_a_timeout_leaves_it_unanswered(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=30)
    result = asking(decisions, "ask_question", "Which colour?", ["red", "blue"], call_id="call_q")
    asked = journal.wait_for("question.asked")
    assert asked["question"] == "Which colour?" and asked["choices"] == ["red", "blue"] and asked["call_id"] == "call_q"
    with pytest.raises(InvalidAnswer):
        decisions.answer("question", asked["question_id"], "   ")
    decisions.answer("question", asked["question_id"], "a dark green")
    assert result() == "a dark green"

    quick = RunDecisions(journal.emit, threading.Event(), timeout_seconds=0.3)
    started = time.monotonic()
    assert asking(quick, "ask_question", "Anyone?")() == ""
    assert 0.3 <= time.monotonic() - started < 2
    assert journal.records[-1]["type"] == "question.answered"
    assert (journal.records[-1]["answer"], journal.records[-1]["by"]) == ("", "timeout")


def test_a_timeout_denies_and_a_late_answer_is_told_so(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=0.3)
    result = asking(decisions, "ask_approval", "Go?", "", ["once", "deny"])
    approval_id = journal.wait_for("approval.requested")["approval_id"]
    assert result() == "deny"
    assert journal.records[-1] == {"type": "approval.resolved", "approval_id": approval_id, "choice": "deny", "by": "timeout"}
    with pytest.raises(AlreadySettled) as late:
        decisions.answer("approval", approval_id, "once")
    assert late.value.record["by"] == "timeout"


def test_cancel_settles_a_waiting_request_within_the_agent_poll(journal):
    cancel = threading.Event()
    decisions = RunDecisions(journal.emit, cancel, timeout_seconds=30)
    result = asking(decisions, "ask_approval", "Go?", "", ["once", "deny"])
    journal.wait_for("approval.requested")
    cancelled = time.monotonic()
    cancel.set()
    assert result() == "deny"
    assert time.monotonic() - cancelled < 1.0
    assert journal.records[-1]["by"] == "cancel"
    # A cancelled run asks nobody: the agent hears deny at once, nothing is journaled.
    assert decisions.ask_approval("Again?", "", ["once", "deny"]) == "deny"
    assert journal.kinds() == ["approval.requested", "approval.resolved"]


def test_closing_the_run_settles_every_pending_request_once_even_racing_the_askers(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=30)
    results = [asking(decisions, "ask_approval", f"Go {n}?", "", ["once", "deny"]) for n in range(3)]
    results.append(asking(decisions, "ask_question", "Why?"))
    deadline = time.monotonic() + 5
    while len(decisions.pending()) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    decisions.close()
    assert [result() for result in results] == ["deny", "deny", "deny", ""]
    settled = [record for record in journal.records if record["type"] in ("approval.resolved", "question.answered")]
    assert len(settled) == 4 and {record["by"] for record in settled} == {"cancel"}
    assert decisions.ask_question("After the end?") == ""
    assert len(journal.records) == 8


def test_racing_answers_from_many_devices_settle_it_once(journal):
    decisions = RunDecisions(journal.emit, threading.Event(), timeout_seconds=30)
    result = asking(decisions, "ask_approval", "Go?", "", ["once", "session", "deny"])
    approval_id = journal.wait_for("approval.requested")["approval_id"]
    outcomes = []
    barrier = threading.Barrier(8)

    def device(choice):
        barrier.wait()
        try:
            outcomes.append(("ok", decisions.answer("approval", approval_id, choice)["choice"]))
        except AlreadySettled as settled:
            outcomes.append(("settled", settled.record["choice"]))

    threads = [threading.Thread(target=device, args=(("once", "session", "deny")[n % 3],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    winners = [choice for verdict, choice in outcomes if verdict == "ok"]
    assert len(winners) == 1 and len(outcomes) == 8
    # Everyone else is told what was decided.
    assert {choice for _, choice in outcomes} == set(winners)
    assert result() == winners[0]
    assert journal.kinds() == ["approval.requested", "approval.resolved"]


def test_a_finished_run_is_answered_from_its_folded_journal():
    records = [
        {"type": "run.started", "run_id": "r1", "session_id": "s1", "user": {"text": "hi"}, "agent": {}},
        {"type": "approval.requested", "approval_id": "apr_a", "title": "t", "detail": "d", "choices": ["once", "deny"]},
        {"type": "approval.resolved", "approval_id": "apr_a", "choice": "once", "by": "user"},
        {"type": "question.asked", "question_id": "q_b", "question": "why?", "choices": []},
        {"type": "run.interrupted", "reason": "process died"},
    ]
    assistant = fold([(record, n) for n, record in enumerate(records, 1)])[1]
    with pytest.raises(AlreadySettled) as settled:
        settled_in_view(assistant, "approval", "apr_a")
    assert settled.value.record == {"type": "approval.resolved", "approval_id": "apr_a", "choice": "once", "by": "user"}
    with pytest.raises(DecisionExpired):
        settled_in_view(assistant, "question", "q_b")
    with pytest.raises(DecisionNotFound):
        settled_in_view(assistant, "approval", "q_b")
    assert [item["status"] for item in assistant["approvals"] + assistant["questions"]] == ["resolved", "expired"]


def test_exports_carry_what_was_decided_and_imports_keep_it_unanswerable():
    from hermes_web.read.export import export_markdown, import_messages

    records = [
        {"type": "run.started", "run_id": "r1", "session_id": "s1", "user": {"text": "clean up"}, "agent": {"name": "hermes"}},
        {"type": "approval.requested", "approval_id": "apr_a", "call_id": "c1", "title": "recursive delete",
         "detail": "rm -rf build/", "choices": ["once", "deny"]},
        {"type": "approval.resolved", "approval_id": "apr_a", "choice": "deny", "by": "user"},
        {"type": "question.asked", "question_id": "q_b", "question": "Which target?", "choices": ["staging", "prod"]},
        {"type": "run.interrupted", "reason": "process died"},
    ]
    messages = fold([(record, n) for n, record in enumerate(records, 1)])
    markdown = export_markdown({"title": "t", "messages": messages})
    assert "**Approval: recursive delete**: deny (by user)" in markdown and "rm -rf build/" in markdown
    assert "**Question: Which target?**: expired" in markdown
    _, imported = import_messages({"format": "hermes_web.session", "version": 1, "session": {"title": "t"},
                                   "messages": messages}, "s2")
    approval, question = imported[1]["approvals"][0], imported[1]["questions"][0]
    assert (approval["id"], approval["choice"], approval["by"], approval["status"]) == ("apr_a", "deny", "user", "resolved")
    assert approval["choices"] == ["once", "deny"] and approval["detail"] == "rm -rf build/"
    assert (question["status"], question["answer"], question["choices"]) == ("expired", None, ["staging", "prod"])
