"""The fold: records -> the user and assistant messages of a run (one pure function)."""

import pytest

from hermes_web.core.codec import encode_record
from hermes_web.read.fold import RunFold, fold


def started(run_id="r1", text="hi", attachments=()):
    return {"type": "run.started", "ts": 10.0, "run_id": run_id, "session_id": "s1",
            "user": {"id": f"{run_id}-user", "text": text, "attachments": list(attachments)},
            "agent": {"name": "demo", "model": "demo-1"}}


def text(value):
    return {"type": "text.delta", "ts": 11.0, "text": value}


def reasoning(value):
    return {"type": "reasoning.delta", "ts": 11.0, "text": value}


def tool_started(call_id, name="clock", args=None):
    return {"type": "tool.started", "ts": 12.0, "call_id": call_id, "name": name, "args": args or {}}


def tool_finished(call_id, result="ok", is_error=False):
    return {"type": "tool.finished", "ts": 13.0, "call_id": call_id, "result": result,
            "is_error": is_error, "duration_ms": 7}


def entries_of(records):
    """``(record, end_offset)`` pairs as they would be in a journal."""
    entries = []
    offset = 0
    for record in records:
        offset += len(encode_record(record))
        entries.append((record, offset))
    return entries


def assistant_of(records):
    return fold(entries_of(records))[1]


FOLD_CASES = [
    (
        "started_only_is_running_and_empty",
        [started()],
        {"status": "running", "text": "", "reasoning": "", "tool_calls": [], "error": None, "finished_at": None},
    ),
    (
        "deltas_append_in_order",
        [started(), reasoning("think "), reasoning("hard"), text("Hel"), text("lo"), text(""), text(" **world**"),
         {"type": "run.completed", "ts": 20.0}],
        {"status": "completed", "text": "Hello **world**", "reasoning": "think hard", "finished_at": 20.0},
    ),
    (
        "tool_card_runs_then_finishes",
        [started(), tool_started("c1", "word_count", {"text": "a b"}), tool_finished("c1", {"words": 2}),
         {"type": "run.completed", "ts": 20.0}],
        {"tool_calls": [{"id": "c1", "name": "word_count", "args": {"text": "a b"}, "status": "done",
                         "result": {"words": 2}, "is_error": False, "duration_ms": 7}]},
    ),
    (
        "failed_tool_is_an_error_card",
        [started(), tool_started("c1"), tool_finished("c1", "boom", is_error=True)],
        {"status": "running", "tool_calls": [{"id": "c1", "name": "clock", "args": {}, "status": "error",
                                              "result": "boom", "is_error": True, "duration_ms": 7}]},
    ),
    (
        "tool_output_streams_into_the_result",
        [started(), tool_started("c1"), {"type": "tool.output", "ts": 1, "call_id": "c1", "text": "ab"},
         {"type": "tool.output", "ts": 1, "call_id": "c1", "text": "cd"}],
        {"tool_calls": [{"id": "c1", "name": "clock", "args": {}, "status": "running", "result": "abcd",
                         "is_error": False, "duration_ms": None}]},
    ),
    (
        "finish_of_an_unknown_call_is_ignored",
        [started(), tool_finished("nope")],
        {"tool_calls": [], "status": "running"},
    ),
    (
        "failed_run_carries_its_error",
        [started(), text("par"), {"type": "run.failed", "ts": 21.0, "error": {"type": "Boom", "message": "m"}}],
        {"status": "failed", "text": "par", "error": {"type": "Boom", "message": "m"}, "finished_at": 21.0},
    ),
    (
        "interrupted_run_carries_its_reason",
        [started(), text("par"), {"type": "run.interrupted", "ts": 22.0, "reason": "process died"}],
        {"status": "interrupted", "text": "par", "reason": "process died"},
    ),
    (
        "cancelled_run_keeps_partial_output",
        [started(), reasoning("r"), text("partial"), {"type": "run.cancelled", "ts": 23.0, "by": "user"}],
        {"status": "cancelled", "text": "partial", "reasoning": "r"},
    ),
    (
        "usage_keeps_the_latest_counts",
        [started(), {"type": "usage", "ts": 1, "input_tokens": 1, "output_tokens": 2},
         {"type": "usage", "ts": 1, "input_tokens": 1, "output_tokens": 9}],
        {"usage": {"input_tokens": 1, "output_tokens": 9}},
    ),
    (
        "unknown_types_are_ignored",
        [started(), text("a"), {"type": "approval.requested", "ts": 1, "text": "x"}, {"ts": 1}, {"type": 5},
         text("b")],
        {"text": "ab", "status": "running", "tool_calls": []},
    ),
]


@pytest.mark.parametrize("records, expected", [case[1:] for case in FOLD_CASES], ids=[case[0] for case in FOLD_CASES])
def test_fold_of_record_sequences(records, expected):
    assistant = assistant_of(records)
    for field, value in expected.items():
        assert assistant[field] == value, field
    assert assistant["run_id"] == "r1"
    assert assistant["cursor"] == f"r1:{entries_of(records)[-1][1]}"
    assert assistant["agent"] == {"name": "demo", "model": "demo-1"}


@pytest.mark.parametrize("terminal", [
    {"type": "run.completed", "ts": 30.0},
    {"type": "run.failed", "ts": 30.0, "error": {"type": "E", "message": "m"}},
    {"type": "run.cancelled", "ts": 30.0, "by": "user"},
    {"type": "run.interrupted", "ts": 30.0, "reason": "process died"},
])
def test_running_tool_cards_end_as_errors_when_the_run_ends(terminal):
    records = [started(), tool_started("c1"), tool_finished("c1", "fine"), tool_started("c2", "slow"), terminal]
    calls = assistant_of(records)["tool_calls"]
    status = terminal["type"].split(".")[1]
    assert [(call["id"], call["status"], call["is_error"]) for call in calls] == [
        ("c1", "done", False), ("c2", "error", True)]
    assert calls[0]["result"] == "fine"
    assert calls[1]["result"] == f"not finished: run {status}"


def test_user_message_carries_text_and_attachment_metadata():
    attachment = {"id": "a1", "name": "notes.txt", "mime": "text/plain", "size": 12, "path": "/secret/where"}
    user, assistant = fold(entries_of([started(text="look", attachments=[attachment])]))
    assert user == {
        "id": "r1-user", "role": "user", "run_id": "r1", "text": "look", "created_at": 10.0,
        "attachments": [{"id": "a1", "name": "notes.txt", "mime": "text/plain", "size": 12,
                         "url": "/api/sessions/s1/attachments/a1"}],
    }
    assert assistant["role"] == "assistant" and assistant["created_at"] == 10.0


def demo_like_records():
    records = [started(), {"type": "title", "ts": 1, "title": "T"}]
    records += [reasoning(f"r{index} ") for index in range(5)]
    for call in ("c1", "c2"):
        records += [tool_started(call), {"type": "tool.output", "ts": 1, "call_id": call, "text": "o"},
                    tool_finished(call, {"n": 1})]
    records += [text(f"word{index} ") for index in range(8)]
    records += [tool_started("c3"), {"type": "future.kind", "ts": 1}]
    records += [{"type": "usage", "ts": 1, "input_tokens": 2, "output_tokens": 8},
                {"type": "run.cancelled", "ts": 40.0, "by": "user"}]
    return records


def test_incremental_fold_equals_a_fold_from_scratch_at_every_prefix():
    entries = entries_of(demo_like_records())
    incremental = RunFold()
    for length, (record, end_offset) in enumerate(entries, start=1):
        incremental.apply(record, end_offset)
        scratch = RunFold()
        for earlier, earlier_end in entries[:length]:
            scratch.apply(earlier, earlier_end)
        assert incremental.messages() == scratch.messages() == fold(entries[:length]), length
        assert incremental.finished == (length == len(entries))
        # Reading messages must not disturb later application.
        incremental.messages()


def test_unknown_records_change_nothing_but_the_cursor():
    plain = [started(), text("a"), tool_started("c1"), tool_finished("c1"), text("b"), {"type": "run.completed", "ts": 5}]
    noisy = [plain[0], {"type": "x.y", "ts": 1}, *plain[1:3], {"type": "tool.approval", "ts": 1, "call_id": "c1"},
             *plain[3:5], {"note": "no type"}, plain[5]]
    plain_message, noisy_message = assistant_of(plain), assistant_of(noisy)
    plain_message.pop("cursor")
    noisy_message.pop("cursor")
    assert plain_message == noisy_message


def test_fold_of_consecutive_runs_gives_a_pair_per_run():
    first = entries_of([started("r1"), text("one"), {"type": "run.completed", "ts": 1}])
    second = entries_of([started("r2", text="again"), text("two")])
    messages = fold(first + second)
    assert [(m["role"], m["run_id"]) for m in messages] == [
        ("user", "r1"), ("assistant", "r1"), ("user", "r2"), ("assistant", "r2")]
    assert [messages[1]["status"], messages[3]["status"]] == ["completed", "running"]
    assert [messages[1]["text"], messages[3]["text"], messages[2]["text"]] == ["one", "two", "again"]
    assert messages[3]["cursor"] == f"r2:{second[-1][1]}"
    assert fold([]) == [] and fold(entries_of([text("orphan")])) == []


def status(state, call_id=None, detail="", ts=14.0):
    record = {"type": "status", "ts": ts, "state": state, "detail": detail}
    if call_id is not None:
        record["call_id"] = call_id
    return record


def activity_after(*records):
    return fold([(record, index + 1) for index, record in enumerate(records)])[1].get("activity")


def test_a_status_record_is_what_the_running_turn_waits_on_until_that_wait_is_over():
    assert activity_after(started()) is None
    assert activity_after(started(), status("waiting_for_model", detail="waiting for the model", ts=20.5)) == {
        "state": "waiting_for_model", "detail": "waiting for the model", "call_id": None, "since": 20.5}
    # A later status replaces it; text streaming under it does not.
    assert activity_after(started(), status("waiting_for_model"), text("a"), status("running_tool", "c1"),
                          text("b"))["state"] == "running_tool"
    # The tool it names finishing ends it; another tool finishing does not.
    running = (started(), tool_started("c1"), tool_started("c2"), status("running_tool", "c1"))
    assert activity_after(*running, tool_finished("c2"))["call_id"] == "c1"
    assert activity_after(*running, tool_finished("c1")) is None
    # A person deciding ends a wait for them, not a wait for something else.
    asked = {"type": "approval.requested", "ts": 15.0, "approval_id": "apr_1", "title": "t", "detail": "d",
             "choices": ["once", "deny"]}
    resolved = {"type": "approval.resolved", "ts": 16.0, "approval_id": "apr_1", "choice": "deny", "by": "user"}
    assert activity_after(started(), status("waiting_for_approval"), asked, resolved) is None
    assert activity_after(started(), status("waiting_for_model"), asked, resolved)["state"] == "waiting_for_model"
    question = {"type": "question.asked", "ts": 15.0, "question_id": "q_1", "question": "?", "choices": []}
    answered = {"type": "question.answered", "ts": 16.0, "question_id": "q_1", "answer": "x", "by": "user"}
    assert activity_after(started(), status("waiting_for_answer"), question, answered) is None
    # Malformed states are ignored, a detail that is not text is empty.
    assert activity_after(started(), status("waiting_for_model"), status(7), status(""))["state"] == "waiting_for_model"
    assert activity_after(started(), {"type": "status", "ts": 1.0, "state": "x", "detail": ["no"]})["detail"] == ""


@pytest.mark.parametrize("terminal", ["run.completed", "run.failed", "run.cancelled", "run.interrupted"])
def test_an_ended_run_waits_on_nothing(terminal):
    assert activity_after(started(), status("waiting_for_model"), {"type": terminal, "ts": 30.0}) is None
