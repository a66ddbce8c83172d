"""The OpenAI-compatible agent end to end: a real server subprocess, a fake provider on a
loopback socket speaking the real wire format, and the journal, the run stream and the
session view checked against each other.

Text and reasoning, single and parallel tool calls in each server's style, the step limit,
cut-off streams, mid-stream errors, every kind of provider failure, cancel (the provider
sees its connection closed) and cooperation with the rest of the server while a provider
is slow.
"""

import json
import threading
import time

import pytest

from tests import provider_streams as streams
from tests.fake_openai import CUT, FakeOpenAI, Reply, Stream
from tests.support import ServerProcess, SseClient, expected_frames, free_port

BUILTIN_TOOLS = ["list_attachments", "read_attachment", "current_time", "calculator"]


@pytest.fixture(scope="module")
def provider():
    fake = FakeOpenAI(models=["fake-model"]).start()
    yield fake
    fake.stop()


def start_server(tmp_path_factory, provider, **env):
    return ServerProcess(tmp_path_factory.mktemp("agent") / "var", env={
        "HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "fake-model",
        "HERMES_WEB_DEFAULT_AGENT": "openai", **env,
    }).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory, provider):
    server = start_server(tmp_path_factory, provider)
    yield server
    server.stop()


def assistant_of(server, session_id, run_id):
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    return next(m for m in view["messages"] if m["role"] == "assistant" and m["run_id"] == run_id)


def assert_stream_is_the_journal(server, session_id, run_id, frames):
    journal = expected_frames(server.journal_path(session_id, run_id), run_id)
    assert [(frame_id, event, json.loads(data)) for frame_id, event, data in journal] == frames


def kinds(frames):
    return [event for _, event, _ in frames]


# ------------------------------------------------------------------ text and reasoning


@pytest.mark.parametrize("sequence, reasoning_field", [
    (lambda: streams.openai_text(["Hello", ", ", "world."], reasoning=["The user ", "greets me."]), "reasoning_content"),
    (lambda: streams.openrouter_text(["Hello", ", ", "world."], reasoning=["The user ", "greets me."]), "reasoning"),
], ids=["reasoning_content", "openrouter-reasoning-and-comments"])
def test_text_and_reasoning_are_journaled_streamed_and_folded(server, provider, sequence, reasoning_field):
    session_id = server.create_session()
    text = provider.script(Stream(sequence()))
    run_id, frames = server.run_to_end(session_id, text)
    assert kinds(frames)[0] == "run.started" and kinds(frames)[-1] == "run.completed"
    assert frames[0][2]["agent"] == {"name": "openai", "model": "fake-model"}
    assert "".join(d["text"] for _, e, d in frames if e == "text.delta") == "Hello, world."
    assert "".join(d["text"] for _, e, d in frames if e == "reasoning.delta") == "The user greets me."
    assert_stream_is_the_journal(server, session_id, run_id, frames)
    message = assistant_of(server, session_id, run_id)
    assert (message["status"], message["text"], message["reasoning"]) == ("completed", "Hello, world.", "The user greets me.")
    assert message["usage"]["output_tokens"] == 3
    (request,) = provider.requests_for(text)
    assert request["model"] == "fake-model" and request["stream"] is True
    assert request["stream_options"] == {"include_usage": True} and "temperature" not in request
    assert [tool["function"]["name"] for tool in request["tools"]] == BUILTIN_TOOLS
    assert request["messages"] == [{"role": "user", "content": text}]


# ------------------------------------------------------------------ tool calls

PARALLEL = [("call_calc", "calculator", {"expression": "6 * 7"}), ("call_time", "current_time", {"timezone": "Asia/Tokyo"})]


@pytest.mark.parametrize("sequence, calls", [
    (streams.openai_tool_calls, PARALLEL[:1]),
    (streams.openai_tool_calls, PARALLEL),
    (streams.ollama_tool_calls, PARALLEL),
    (streams.resent_name_tool_calls, [(7, "calculator", {"expression": "6 * 7"}), (8, "current_time", {"timezone": "Asia/Tokyo"})]),
], ids=["openai-single", "openai-parallel", "ollama-parallel-same-index", "resent-names-integer-ids"])
def test_tool_calls_run_and_their_results_go_back_until_the_model_answers(server, provider, sequence, calls):
    session_id = server.create_session()
    text = provider.script(Stream(sequence(calls)), Stream(streams.openai_text(["It is ", "42."])))
    run_id, frames = server.run_to_end(session_id, text)
    assert kinds(frames)[-1] == "run.completed"
    started = [data for _, event, data in frames if event == "tool.started"]
    finished = [data for _, event, data in frames if event == "tool.finished"]
    assert [(d["call_id"], d["name"], d["args"]) for d in started] == [(str(i), n, a) for i, n, a in calls]
    assert [d["call_id"] for d in finished] == [str(call[0]) for call in calls]
    assert finished[0]["result"] == {"expression": "6 * 7", "result": 42} and not finished[0]["is_error"]
    if len(calls) > 1:
        assert finished[1]["result"]["timezone"] == "Asia/Tokyo" and finished[1]["result"]["iso"].endswith("+09:00")
    assert_stream_is_the_journal(server, session_id, run_id, frames)

    first, second = provider.requests_for(text)
    assert first["messages"] == [{"role": "user", "content": text}]
    asked, *results = second["messages"][1:]
    assert asked["role"] == "assistant" and asked["content"] is None
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in asked["tool_calls"]] == [
        (str(i), n, a) for i, n, a in calls]
    assert [(m["role"], m["tool_call_id"]) for m in results] == [("tool", str(call[0])) for call in calls]
    assert json.loads(results[0]["content"]) == finished[0]["result"]

    message = assistant_of(server, session_id, run_id)
    assert message["text"] == "It is 42." and message["status"] == "completed"
    assert [(c["id"], c["status"], c["result"]) for c in message["tool_calls"]] == [
        (d["call_id"], "done", d["result"]) for d in finished]
    assert message["usage"]["input_tokens"] > streams.usage_chunk()["usage"]["prompt_tokens"]  # summed over requests


def test_bad_calls_are_error_results_the_model_sees(server, provider):
    session_id = server.create_session()
    bad = [streams.chunk({"tool_calls": [
        {"index": 0, "id": "call_x", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": '}},
        {"index": 1, "id": "call_y", "type": "function", "function": {"name": "rm_rf", "arguments": "{}"}},
        {"index": 2, "id": "call_x", "type": "function", "function": {}},
    ]}), streams.chunk({}, "tool_calls")]
    text = provider.script(Stream(bad), Stream(streams.openai_text(["Sorry."])))
    run_id, frames = server.run_to_end(session_id, text)
    finished = {d["call_id"]: d for _, e, d in frames if e == "tool.finished"}
    assert finished["call_x"]["is_error"] and "not valid JSON" in finished["call_x"]["result"]["error"]
    assert finished["call_y"]["is_error"] and "no tool named 'rm_rf'" in finished["call_y"]["result"]["error"]
    started = {d["call_id"]: d for _, e, d in frames if e == "tool.started"}
    assert started["call_x"]["args"] == '{"expression": '  # kept as the model wrote it
    second = provider.requests_for(text)[1]["messages"]
    assert second[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "not valid JSON" in second[2]["content"] and kinds(frames)[-1] == "run.completed"


def test_a_runaway_tool_loop_ends_at_the_step_limit(tmp_path_factory, provider):
    server = start_server(tmp_path_factory, provider, HERMES_WEB_OPENAI_MAX_STEPS="3")
    try:
        session_id = server.create_session()
        text = provider.script(Stream(streams.openai_tool_calls([("call_again", "current_time", {})])))
        run_id, frames = server.run_to_end(session_id, text)
    finally:
        server.stop()
    assert len(provider.requests_for(text)) == 3
    assert kinds(frames).count("tool.started") == 2  # the third request's calls are not run
    error = frames[-1][2]["error"]
    assert frames[-1][1] == "run.failed" and error["type"] == "StepLimitReached"
    assert "stopped after 3 requests to the model" in error["message"] and "current_time" in error["message"]


# ------------------------------------------------------------------ honest endings


@pytest.mark.parametrize("response, completed", [
    (Stream(streams.cut_off_text(["Half an ", "answer"]) + [CUT], done=False), False),
    (Stream(streams.cut_off_text(["Half an ", "answer"]), done=False), False),
    (Stream(streams.openai_text(["Half an ", "answer"]), done=False), True),  # a finish reason is an ending
    (Stream(streams.cut_off_text(["Half an ", "answer"]), done=True), True),  # so is [DONE]
], ids=["dropped-mid-body", "ended-without-finish-or-done", "finish-without-done", "done-without-finish"])
def test_a_stream_that_ends_without_finishing_fails_and_keeps_its_text(server, provider, response, completed):
    session_id = server.create_session()
    run_id, frames = server.run_to_end(session_id, provider.script(response))
    message = assistant_of(server, session_id, run_id)
    assert message["text"] == "Half an answer"
    if completed:
        assert message["status"] == "completed"
    else:
        assert message["status"] == "failed" and frames[-1][1] == "run.failed"
        assert message["error"]["type"] == "StreamEndedEarly"
        assert message["error"]["message"].startswith("the provider's stream ended early")


def test_an_error_in_the_middle_of_the_stream_fails_the_run(server, provider):
    session_id = server.create_session()
    text = provider.script(Stream(streams.openrouter_mid_stream_error(["Par", "tial"], "Upstream model overloaded")))
    run_id, frames = server.run_to_end(session_id, text)
    message = assistant_of(server, session_id, run_id)
    assert message["status"] == "failed" and message["text"] == "Partial"
    assert message["error"]["message"] == "the provider reported an error while answering: Upstream model overloaded"


OPENAI_401 = {"error": {"message": "Incorrect API key provided: sk-abc***xyz.", "type": "invalid_request_error",
                        "param": None, "code": "invalid_api_key"}}


@pytest.mark.parametrize("reply, said", [
    (Reply(401, OPENAI_401), ["HTTP 401", "Incorrect API key provided", "Check OPENAI_API_KEY (not set)"]),
    (Reply(404, {"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}}),
     ["HTTP 404", "The model `gpt-9` does not exist", "Check the model name ('fake-model')"]),
    (Reply(429, {"error": {"message": "Rate limit reached for requests"}}, headers={"Retry-After": "7"}),
     ["HTTP 429", "Rate limit reached", "wait 7 s"]),
    (Reply(500, {"error": "llama runner process has terminated"}), ["HTTP 500", "llama runner process has terminated"]),
    (Reply(503, "<html><head><title>503 Service Unavailable</title></head><body>x</body></html>", "text/html"),
     ["HTTP 503", "503 Service Unavailable (an HTML page)"]),
    (Reply(502, "upstream connect error or disconnect/reset before headers", "text/plain"),
     ["HTTP 502", "upstream connect error"]),
    (Reply(200, "<html><body>Please log in</body></html>", "text/html"), ["text/html", "not an event stream"]),
], ids=["401", "404-model", "429", "500", "503-html", "502-text", "200-html"])
def test_provider_errors_end_the_run_with_a_message_a_person_can_act_on(server, provider, reply, said):
    session_id = server.create_session()
    run_id, frames = server.run_to_end(session_id, provider.script(reply))
    assert frames[-1][1] == "run.failed"
    message = frames[-1][2]["error"]["message"]
    for part in said:
        assert part in message, message
    assert '{"' not in message and "<body" not in message
    assert assistant_of(server, session_id, run_id)["error"]["message"] == message


def test_a_provider_that_is_not_there_or_too_slow_fails_the_run_clearly(tmp_path_factory, provider):
    port = free_port()  # nothing listens here
    refused = ServerProcess(tmp_path_factory.mktemp("refused") / "var", env={
        "HERMES_WEB_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "HERMES_WEB_DEFAULT_AGENT": "openai"}).start()
    slow = start_server(tmp_path_factory, provider, HERMES_WEB_OPENAI_TIMEOUT_S="1")
    try:
        _, frames = refused.run_to_end(refused.create_session(), "hello?")
        message = frames[-1][2]["error"]["message"]
        assert frames[-1][1] == "run.failed"
        assert f"could not connect to the provider at http://127.0.0.1:{port}/v1" in message and "refused" in message
        sent = time.monotonic()
        _, frames = slow.run_to_end(slow.create_session(), provider.script(Stream(streams.openai_text(["late"]), hold=3)))
        assert frames[-1][1] == "run.failed" and "sent nothing for 1 s" in frames[-1][2]["error"]["message"]
        assert time.monotonic() - sent < 2.5
    finally:
        refused.stop()
        slow.stop()


# ------------------------------------------------------------------ cancel, cooperation


def wait_for(frames, event):
    for frame in frames:
        if frame.get("event") == event:
            return frame
    raise AssertionError(f"stream ended before {event}")


@pytest.mark.parametrize("while_", ["streaming", "waiting-for-headers"])
def test_cancel_closes_the_upstream_connection_within_500_ms(server, provider, while_):
    session_id = server.create_session()
    if while_ == "streaming":
        response = Stream(streams.openai_text([f"word{i} " for i in range(200)]), delay=0.1)
    else:
        response = Stream(streams.openai_text(["never"]), hold=20)
    text = provider.script(response)
    token = text.split()[-1]
    run_id = server.start_run(session_id, text)["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=30)
    try:
        frames = client.frames()
        if while_ == "streaming":
            wait_for(frames, "text.delta")
        else:
            deadline = time.monotonic() + 10
            while not provider.requests_for(text) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # the provider holds the request: no byte of an answer yet
        sent = time.monotonic()
        status, body, _ = server.api("POST", f"/api/runs/{run_id}/cancel")
        terminal = wait_for(frames, "run.cancelled")
    finally:
        client.close()
    assert status == 200 and body["status"] == "cancelled" and json.loads(terminal["data"])["by"] == "user"
    closed = [at for closed_token, at in provider.closed if closed_token == token]
    assert closed, "the provider never saw its connection closed"
    assert closed[0] - sent < 0.5, closed[0] - sent
    message = assistant_of(server, session_id, run_id)
    assert message["status"] == "cancelled"
    if while_ == "streaming":
        assert message["text"].startswith("word0 ")


def test_a_slow_provider_blocks_only_its_own_run(server, provider):
    slow_session, quick_session = server.create_session(), server.create_session()
    slow = provider.script(Stream(streams.openai_text(["finally"]), hold=3))
    quick = provider.script(Stream(streams.openai_text(["quick ", "answer"])))
    slow_run = server.start_run(slow_session, slow)["run_id"]
    deadline = time.monotonic() + 10
    while not provider.requests_for(slow) and time.monotonic() < deadline:
        time.sleep(0.02)
    answered = []

    def listing():
        sent = time.monotonic()
        status = server.api("GET", "/api/sessions")[0]
        answered.append((status, time.monotonic() - sent))

    threads = [threading.Thread(target=listing) for _ in range(5)]
    for thread in threads:
        thread.start()
    quick_run, frames = server.run_to_end(quick_session, quick)
    for thread in threads:
        thread.join(10)
    # While the slow provider still holds its answer, the server answers and runs others.
    assert server.api("GET", f"/api/runs/{slow_run}")[1]["status"] == "running"
    assert kinds(frames)[-1] == "run.completed"
    assert all(status == 200 and took < 1.0 for status, took in answered), answered
    assert server.wait_run_finished(slow_run, timeout=15)["status"] == "completed"
    assert assistant_of(server, slow_session, slow_run)["text"] == "finally"
