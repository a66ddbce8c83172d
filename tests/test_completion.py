"""The streamed-completion accumulator: every tool-call quirk of real servers, usage,
reasoning and mid-stream errors, over the same chunk sequences the fake provider plays."""

import json

import pytest

from hermes_web.runs.agents.completion import Completion, RequestedCall
from hermes_web.runs.agents.provider_errors import ProviderError
from tests import provider_streams as streams

CALLS = [("call_a1", "calculator", {"expression": "2 * (3 + 4)"}),
         ("call_b2", "current_time", {"timezone": "Europe/Paris"}),
         ("call_c3", "read_attachment", {"name": "notes \"final\".txt"})]


def feed(items):
    completion = Completion()
    events = []
    for item in items:
        if isinstance(item, dict):
            events += completion.feed(item)
    return completion, events


def expected(calls):
    return [RequestedCall(str(call_id), name, json.dumps(args)) for call_id, name, args in calls]


@pytest.mark.parametrize("sequence", [streams.openai_tool_calls, streams.ollama_tool_calls, streams.resent_name_tool_calls],
                         ids=["openai-fragments", "ollama-same-index", "names-resent"])
@pytest.mark.parametrize("count", [1, 3])
def test_tool_calls_are_assembled_whatever_the_servers_quirk(sequence, count):
    completion, events = feed(sequence(CALLS[:count]))
    assert completion.tool_calls == expected(CALLS[:count])
    assert completion.finish_reason == "tool_calls" and completion.finished
    assert events == [] and completion.usage is not None


def test_integer_ids_become_strings_and_still_tell_calls_apart():
    calls = [(0, "calculator", {"expression": "1"}), (1, "calculator", {"expression": "2"})]
    completion, _ = feed(streams.resent_name_tool_calls(calls))
    assert [call.provider_id for call in completion.tool_calls] == ["0", "1"]
    assert [json.loads(call.arguments) for call in completion.tool_calls] == [{"expression": "1"}, {"expression": "2"}]


def test_a_call_without_an_id_continues_at_its_index_and_object_arguments_are_encoded():
    completion, _ = feed([
        streams.chunk({"tool_calls": [{"index": 0, "function": {"name": "calculator", "arguments": '{"expr'}}]}),
        streams.chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ession": "1+1"}'}}]}),
        streams.chunk({"tool_calls": [{"index": 1, "function": {"name": "current_time", "arguments": {"timezone": "UTC"}}}]}),
        streams.chunk({}, "tool_calls"),
    ])
    assert completion.tool_calls == [RequestedCall("", "calculator", '{"expression": "1+1"}'),
                                     RequestedCall("", "current_time", '{"timezone": "UTC"}')]


def test_an_id_that_arrives_after_its_index_joins_that_call():
    completion, _ = feed([
        streams.chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        streams.chunk({"tool_calls": [{"index": 0, "id": "late", "function": {"name": "current_time"}}]}),
    ])
    assert completion.tool_calls == [RequestedCall("late", "current_time", "{}")]


def test_text_and_reasoning_become_deltas_in_order_with_usage_from_the_last_chunk():
    completion, events = feed(streams.openai_text(["Hel", "lo"], reasoning=["think", "ing"]))
    assert events == [{"type": "reasoning.delta", "text": "think"}, {"type": "reasoning.delta", "text": "ing"},
                      {"type": "text.delta", "text": "Hel"}, {"type": "text.delta", "text": "lo"}]
    assert completion.text == "Hello" and completion.usage == (11, 2) and completion.tool_calls == []


def test_openrouter_reasoning_field_and_comments():
    completion, events = feed(streams.openrouter_text(["ok"], reasoning=["hmm"]))
    assert [event["type"] for event in events] == ["reasoning.delta", "text.delta"]
    assert completion.finish_reason == "stop" and completion.usage == (9, 1)


def test_a_mid_stream_error_object_fails_with_the_providers_message():
    completion = Completion()
    items = streams.openrouter_mid_stream_error(["partial "], message="Upstream overloaded")
    assert completion.feed(items[0]) == [{"type": "text.delta", "text": "partial "}]
    with pytest.raises(ProviderError, match="Upstream overloaded"):
        completion.feed(items[1])
    with pytest.raises(ProviderError, match="quota"):
        Completion().feed({"error": {"message": "quota exceeded", "code": 429}})


def test_a_stream_without_a_finish_reason_is_not_finished():
    completion, _ = feed(streams.cut_off_text(["a", "b"]))
    assert not completion.finished and completion.text == "ab"


def test_other_choices_and_junk_are_ignored():
    completion, events = feed([
        {"choices": [{"index": 1, "delta": {"content": "second choice"}}]},
        {"choices": ["junk", {"index": 0, "delta": "junk"}]},
        {"choices": [{"index": 0, "delta": {"content": None, "tool_calls": ["junk", {"index": 0, "function": "x"}]}}]},
        {"choices": None, "usage": {"prompt_tokens": "many", "completion_tokens": -1}},
    ])
    assert events == [] and completion.usage == (0, 0) and completion.tool_calls == []
