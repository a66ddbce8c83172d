"""Rebuilding provider messages from a session's history, and the error messages a person
reads when a provider fails. Pure functions, table-driven."""

import json

import pytest

from hermes_web.runs.agents.conversation import build_messages
from hermes_web.runs.agents.provider_errors import provider_message, status_error

USER = {"role": "user", "text": "what is 6*7?", "attachments": []}


def assistant(status="completed", text="", tool_calls=(), error=None):
    return {"role": "assistant", "status": status, "text": text, "reasoning": "hidden thoughts",
            "tool_calls": list(tool_calls), "error": error}


CALL = {"id": "call_1", "name": "calculator", "args": {"expression": "6*7"}, "status": "done",
        "result": {"expression": "6*7", "result": 42}, "is_error": False}


def test_a_tool_turn_becomes_calls_results_then_text_and_reasoning_is_not_sent():
    messages = build_messages([USER, assistant(text="It is 42.", tool_calls=[CALL])], "thanks", [],
                              system_prompt="Be brief.")
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what is 6*7?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"expression": "6*7", "result": 42}'},
        {"role": "assistant", "content": "It is 42."},
        {"role": "user", "content": "thanks"},
    ]
    assert "hidden thoughts" not in json.dumps(messages)


@pytest.mark.parametrize("status, error, note", [
    ("cancelled", None, "The person stopped this answer"),
    ("interrupted", None, "the server stopped before it was finished"),
    ("failed", {"type": "ProviderError", "message": "the provider's stream ended early"},
     "failed before it was finished: the provider's stream ended early"),
])
def test_unfinished_turns_keep_their_partial_answer_and_say_how_they_ended(status, error, note):
    unfinished = dict(CALL, id="call_2", status="error", is_error=True, result=f"not finished: run {status}")
    history = [USER, assistant(status, text="Let me", tool_calls=[CALL, unfinished], error=error)]
    messages = build_messages(history, "go on", [])
    calls = messages[1]["tool_calls"]
    results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert [call["id"] for call in calls] == list(results) == ["call_1", "call_2"]  # every call has its answer
    assert results["call_2"] == f"not finished: run {status}"
    assert messages[-2]["role"] == "assistant" and messages[-2]["content"].startswith("Let me\n\n[")
    assert note in messages[-2]["content"]
    assert messages[-1] == {"role": "user", "content": "go on"}


def test_a_turn_that_ended_before_any_output_still_answers_its_user_turn():
    messages = build_messages([USER, assistant("failed", error={"message": "HTTP 500"})], "again?", [])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "HTTP 500" in messages[1]["content"]


def test_arguments_that_were_not_an_object_go_back_as_an_empty_object():
    broken = dict(CALL, args='{"expression": ', is_error=True, result={"error": "not valid JSON"})
    messages = build_messages([USER, assistant(tool_calls=[broken])], "x", [])
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert json.loads(messages[2]["content"]) == {"error": "not valid JSON"}


ATTACHMENTS = [
    {"id": "att_1", "name": "notes.txt", "mime": "text/plain", "size": 12},
    {"id": "att_2", "name": "cat.png", "mime": "image/png", "size": 99},
]


def test_images_are_parts_of_the_user_turn_and_every_file_is_listed():
    messages = build_messages([], "look", ATTACHMENTS, images=lambda item: "data:image/png;base64,AAAA")
    (user,) = messages
    text, image = user["content"]
    assert image == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert text["type"] == "text" and text["text"].startswith("look\n\nAttached files")
    assert "- notes.txt (text/plain, 12 bytes, id att_1)" in text["text"] and "read_attachment" in text["text"]
    assert "cat.png (image/png, 99 bytes, id att_2): the image is attached" in text["text"]


def test_without_vision_images_are_only_described():
    (user,) = build_messages([], "", ATTACHMENTS, images=None)
    assert isinstance(user["content"], str) and user["content"].startswith("Attached files")
    assert "cat.png (image/png, 99 bytes, id att_2): an image you are not shown" in user["content"]
    (gone,) = build_messages([], "", ATTACHMENTS[1:], images=lambda item: None)
    assert "no longer available" in gone["content"]


# ------------------------------------------------------------------ provider errors

BODIES = [
    (b'{"error": {"message": "Incorrect API key provided: sk-...abcd.", "type": "invalid_request_error"}}',
     "Incorrect API key provided: sk-...abcd."),
    (b'{"error": "model \\"llama9\\" not found, try pulling it first"}', 'model "llama9" not found, try pulling it first'),
    (b'{"detail": [{"loc": ["body", "model"], "msg": "field required"}]}', "field required"),
    (b'{"message": "Too many requests"}', "Too many requests"),
    (b'{"error": {"message": "Provider returned error", "code": 502, "metadata": {"raw": "upstream timeout"}}}',
     "Provider returned error: upstream timeout"),
    (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "502 Bad Gateway (an HTML page)"),
    (b"<html><body>oops</body></html>", "an HTML page, not an API answer"),
    (b"upstream connect error   or disconnect\n", "upstream connect error or disconnect"),
    (b"", None),
    (b'{"unrelated": 1}', None),
    (b"x" * 5000, "x" * 499 + "…"),
]


@pytest.mark.parametrize("body, said", BODIES)
def test_the_providers_own_explanation_is_extracted_never_the_raw_body(body, said):
    assert provider_message(body) == said


@pytest.mark.parametrize("status, fix", [
    (401, "Check OPENAI_API_KEY"),
    (403, "Check OPENAI_API_KEY"),
    (404, "Check the model name ('gpt-x')"),
    (429, "Wait a moment (it asks to wait 20 s)"),
    (500, "Try again in a moment"),
    (503, "Try again in a moment"),
    (413, "smaller attachments"),
    (418, "HTTP 418"),
])
def test_each_status_names_what_to_do(status, fix):
    body = b'{"error": {"message": "nope", "type": "x"}}'
    message = str(status_error(status, body, url="http://h/v1/chat/completions", model="gpt-x",
                               key_source="OPENAI_API_KEY", retry_after="20"))
    assert fix in message and f"HTTP {status}" in message and ": nope" in message
    assert '"type"' not in message and "{" not in message


@pytest.mark.parametrize("said, hint", [
    ("registry.ollama.ai/library/gemma:2b does not support tools", "tools = false"),
    ("this model does not support image input", "vision = false"),
    ("This model's maximum context length is 8192 tokens", "too long for this model"),
])
def test_a_refused_request_hints_at_the_switch_that_fixes_it(said, hint):
    message = str(status_error(400, json.dumps({"error": said}).encode(), url="u", model="m", key_source=""))
    assert hint in message and said in message
