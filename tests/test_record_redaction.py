"""Redaction where it meets journal records: tool results and streamed tool output are
masked like text, at rest and on read (raw journals), including secrets split across
``tool.output`` records."""

import json
import random

import pytest

from hermes_web.redaction.records import RecordRedaction
from hermes_web.redaction.redactor import Redactor
from hermes_web.store.files.journal import encode_record
from tests.test_redact import SECRET_CASES, assert_absent

REDACTOR = Redactor()
CASES = [case for case in SECRET_CASES if case.rule in ("github", "openai", "private_key_block", "key_value")]


def through_writer(records, at_rest=True):
    """What a run's writer puts in the journal for ``records`` (then what a response carries)."""
    redaction = RecordRedaction(REDACTOR, at_rest=at_rest)
    filters = redaction.for_run()
    written = []
    for record in records:
        written += filters.process(record)
    written += filters.finish()
    if at_rest:
        return written, written
    # Raw journal: responses redact each line on the way out.
    responses = [json.loads(redaction.line(encode_record(record)[:-1])) for record in written]
    return written, responses


def output_text(records, call_id):
    return "".join(r.get("text", "") for r in records if r["type"] == "tool.output" and r["call_id"] == call_id)


@pytest.mark.parametrize("at_rest", [True, False], ids=["at-rest", "on-read"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_tool_results_are_redacted_as_strings_and_inside_values(case, at_rest):
    text, secret = case.build()
    records = [
        {"type": "tool.started", "ts": 1.0, "call_id": "call_1", "name": "read_attachment", "args": {"name": text}},
        {"type": "tool.finished", "ts": 2.0, "call_id": "call_1", "is_error": False, "duration_ms": 3,
         "result": {"text": f"line one\n{text}\nline three", "pages": [text], "size": 12}},
        {"type": "tool.started", "ts": 3.0, "call_id": "call_2", "name": "shell", "args": {}},
        {"type": "tool.finished", "ts": 4.0, "call_id": "call_2", "is_error": True, "duration_ms": 1,
         "result": f"error: {text}"},
    ]
    _, responses = through_writer(records, at_rest=at_rest)
    finished = [record for record in responses if record["type"] == "tool.finished"]
    assert len(finished) == 2
    for record in responses:
        assert_absent(secret, repr(record))
    assert finished[0]["result"]["size"] == 12 and finished[0]["call_id"] == "call_1"
    assert "REDACTED" in finished[0]["result"]["text"] and "REDACTED" in finished[1]["result"]
    assert finished[0]["result"]["text"].startswith("line one\n")


@pytest.mark.parametrize("at_rest", [True, False], ids=["at-rest", "on-read"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_secret_split_across_tool_output_records_is_masked(case, at_rest):
    text, secret = case.build()
    whole = f"$ cat config\n{text}\n$ echo done\n"
    expected = REDACTOR.redact(whole)
    rng = random.Random(case.name)
    for cut in sorted(rng.sample(range(1, len(whole)), 12)):
        records = [{"type": "tool.started", "ts": 1.0, "call_id": "c", "name": "shell", "args": {}}]
        records += [{"type": "tool.output", "ts": 2.0, "call_id": "c", "text": piece} for piece in (whole[:cut], whole[cut:])]
        records.append({"type": "tool.finished", "ts": 3.0, "call_id": "c", "result": "ok", "is_error": False})
        written, responses = through_writer(records, at_rest=at_rest)
        assert output_text(responses, "c") == expected, cut
        assert [r["type"] for r in responses][-1] == "tool.finished"  # order kept
        if not at_rest:  # the raw journal keeps what the tool wrote, byte for byte
            assert output_text(written, "c") == whole


def test_tool_output_of_interleaved_calls_is_redacted_per_call():
    text, secret = CASES[0].build()
    half = len(text) // 2
    records = [
        {"type": "tool.output", "ts": 1.0, "call_id": "a", "text": f"a: {text[:half]}"},
        {"type": "tool.output", "ts": 1.0, "call_id": "a", "text": f"{text[half:]} end"},
        {"type": "tool.output", "ts": 2.0, "call_id": "b", "text": "b says hi "},
        {"type": "tool.output", "ts": 3.0, "call_id": "a", "text": "more"},
    ]
    written, _ = through_writer(records)
    assert output_text(written, "a") == REDACTOR.redact(f"a: {text} end") + "more"
    assert output_text(written, "b") == "b says hi "
    assert_absent(secret, repr(written))
