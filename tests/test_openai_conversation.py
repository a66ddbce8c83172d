"""What the model is sent, end to end: the conversation rebuilt from the session (tool turns
included) the same before and after a restart and after compaction, unfinished turns,
attachments (images as data URLs, text through read_attachment, vision off), and tool
results redacted like text everywhere they leave the server."""

import base64
import json
import subprocess
import sys
import time

import pytest

from tests import provider_streams as streams
from tests.fake_openai import FakeOpenAI, Reply, Stream, user_text
from tests.support import ROOT, SseClient, request
from tests.test_redact import assert_absent
from tests.test_uploads import PNG, upload_one


@pytest.fixture(scope="module")
def provider():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def agent_env(provider, **env):
    return {"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "fake-model",
            "HERMES_WEB_DEFAULT_AGENT": "openai", **env}


@pytest.fixture
def start(server_factory, provider):
    return lambda data_dir=None, port=None, **env: server_factory(env=agent_env(provider, **env), data_dir=data_dir, port=port)


def compact(data_dir):
    subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(data_dir), "--older-than", "0",
                    "--delete"], cwd=ROOT, check=True, capture_output=True, timeout=60)


def sent(provider, text, request=-1):
    """The messages of one request a script received."""
    return provider.requests_for(text)[request]["messages"]


def test_the_conversation_is_the_same_after_a_restart_and_after_compaction(start, provider, tmp_path):
    server = start()
    session_id = server.create_session()
    first = provider.script(
        Stream(streams.openai_tool_calls([("call_sum", "calculator", {"expression": "19 + 23"})], text="Let me add.")),
        Stream(streams.openai_text(["The sum ", "is 42."])),
    )
    run_id, frames = server.run_to_end(session_id, first)
    (call_id,) = [d["call_id"] for _, e, d in frames if e == "tool.started"]
    second = provider.script(Stream(streams.openai_text(["ok"])))
    server.run_to_end(session_id, second)
    rebuilt = sent(provider, second)
    assert rebuilt == [
        {"role": "user", "content": first},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "19 + 23"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"expression": "19 + 23", "result": 42}'},
        {"role": "assistant", "content": "Let me add.The sum is 42."},
        {"role": "user", "content": second},
    ]
    # The live loop sent the same tool turn, with the text of its own step.
    live = sent(provider, first)
    assert live[1] == dict(rebuilt[1], content="Let me add.") and live[2] == rebuilt[2]

    server.stop()
    server = start(data_dir=server.data_dir)
    third = provider.script(Stream(streams.openai_text(["ok"])))
    server.run_to_end(session_id, third)
    assert sent(provider, third)[: len(rebuilt)] == rebuilt

    server.stop()
    compact(server.data_dir)
    assert (server.data_dir / "transcripts" / f"{session_id}.jsonl").exists()
    assert not (server.data_dir / "journals" / session_id / f"{run_id}.jsonl").exists()
    server = start(data_dir=server.data_dir)
    fourth = provider.script(Stream(streams.openai_text(["ok"])))
    server.run_to_end(session_id, fourth)
    assert sent(provider, fourth)[: len(rebuilt)] == rebuilt
    assert [m["role"] for m in sent(provider, fourth)[len(rebuilt):]] == ["assistant", "user", "assistant", "user"]


def test_failed_cancelled_and_interrupted_turns_reach_the_model_with_what_they_had(start, provider):
    server = start()
    session_id = server.create_session()
    failed = provider.script(Reply(500, {"error": {"message": "out of memory"}}))
    server.run_to_end(session_id, failed)

    cancelled = provider.script(Stream(streams.openai_text(["Partial ", "answer "] + ["more "] * 200), delay=0.05))
    run_id = server.start_run(session_id, cancelled)["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=30)
    try:
        for frame in client.frames():
            if frame.get("event") == "text.delta" and "answer" in frame["data"]:
                break
        assert server.api("POST", f"/api/runs/{run_id}/cancel")[1]["status"] == "cancelled"
    finally:
        client.close()

    interrupted = provider.script(Stream(streams.openai_text(["Cut ", "here "] + ["never "] * 200), delay=0.1))
    run_id = server.start_run(session_id, interrupted)["run_id"]
    deadline = time.monotonic() + 10
    while "here" not in server.journal_path(session_id, run_id).read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill9()
    server = start(data_dir=server.data_dir, port=server.port)

    last = provider.script(Stream(streams.openai_text(["ok"])))
    server.run_to_end(session_id, last)
    messages = sent(provider, last)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[1]["content"] == ("[This answer failed before it was finished: the provider failed (HTTP 500): "
                                      "out of memory. Try again in a moment.]")
    assert messages[3]["content"].startswith("Partial answer ")
    assert messages[3]["content"].endswith("\n\n[The person stopped this answer before it was finished.]")
    assert messages[5]["content"].startswith("Cut here ")
    assert messages[5]["content"].endswith("[This answer was cut off: the server stopped before it was finished.]")


NOTES = "Shopping list\n- eggs\n- flour\n- 2 lemons\n"


def test_images_are_sent_as_data_urls_and_text_files_through_read_attachment(start, provider):
    server = start()
    session_id = server.create_session()
    image = upload_one(server, session_id, "chart.png", PNG)
    notes = upload_one(server, session_id, "notes.txt", NOTES.encode())
    text = provider.script(
        Stream(streams.openai_tool_calls([("call_list", "list_attachments", {}),
                                          ("call_by_name", "read_attachment", {"name": "notes.txt"}),
                                          ("call_by_id", "read_attachment", {"id": notes["id"]}),
                                          ("call_image", "read_attachment", {"name": "chart.png"})])),
        Stream(streams.openai_text(["Eggs, flour and lemons."])),
    )
    run_id, frames = server.run_to_end(session_id, text, attachments=[image["id"], notes["id"]])
    first = sent(provider, text, 0)
    words, picture = first[-1]["content"]
    assert words["text"].startswith(text + "\n\nAttached files")
    assert f"- notes.txt (text/plain, {len(NOTES)} bytes, id {notes['id']})" in words["text"]
    assert picture["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert picture["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(picture["image_url"]["url"][len(prefix):]) == PNG

    results = {d["call_id"]: d for _, e, d in frames if e == "tool.finished"}
    assert results["call_list"]["result"] == {"attachments": [
        {"id": image["id"], "name": "chart.png", "mime": "image/png", "size": len(PNG)},
        {"id": notes["id"], "name": "notes.txt", "mime": "text/plain", "size": len(NOTES)}]}
    for call_id in ("call_by_name", "call_by_id"):
        assert results[call_id]["result"]["text"] == NOTES and not results[call_id]["is_error"]
    assert results["call_image"]["is_error"] and "is an image" in results["call_image"]["result"]["error"]

    # A later turn still sees the image of the earlier one, from the session's history.
    later = provider.script(Stream(streams.openai_text(["ok"])))
    server.run_to_end(session_id, later)
    assert sent(provider, later)[0]["content"][1] == picture


def test_without_vision_images_are_described_not_sent(start, provider):
    server = start(HERMES_WEB_OPENAI_VISION="0")
    session_id = server.create_session()
    image = upload_one(server, session_id, "chart.png", PNG)
    text = provider.script(Stream(streams.openai_tool_calls([("call_image", "read_attachment", {"id": image["id"]})])),
                           Stream(streams.openai_text(["I cannot see it."])))
    _, frames = server.run_to_end(session_id, text, attachments=[image["id"]])
    content = sent(provider, text, 0)[-1]["content"]
    assert isinstance(content, str) and "chart.png (image/png" in content and "an image you are not shown" in content
    (result,) = [d["result"] for _, e, d in frames if e == "tool.finished"]
    assert "not sent images" in result["error"]


SECRET = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa98"
ENV_FILE = f"# deploy settings\nGITHUB_TOKEN={SECRET}\nREGION=eu-west-1\n"


@pytest.mark.parametrize("at_rest", ["1", "0"], ids=["at-rest", "raw-journal"])
def test_tool_results_are_redacted_in_the_journal_streams_view_and_next_conversation(start, provider, at_rest):
    server = start(HERMES_WEB_REDACT_AT_REST=at_rest)
    session_id = server.create_session()
    env_file = upload_one(server, session_id, "deploy.env", ENV_FILE.encode())
    text = provider.script(Stream(streams.openai_tool_calls([("call_read", "read_attachment", {"name": "deploy.env"})])),
                           Stream(streams.openai_text(["It sets a token and a region."])))
    session_stream = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=30)
    try:
        run_id, frames = server.run_to_end(session_id, text, attachments=[env_file["id"]])
        session_frames = []
        for frame in session_stream.frames():
            session_frames.append(frame)
            if frame.get("event") == "run.completed":
                break
    finally:
        session_stream.close()
    (finished,) = [d for _, e, d in frames if e == "tool.finished"]
    assert "REDACTED" in finished["result"]["text"] and "REGION=eu-west-1" in finished["result"]["text"]
    assert_absent(SECRET, json.dumps([d for _, _, d in frames]))
    assert_absent(SECRET, json.dumps(session_frames))
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert_absent(SECRET, json.dumps(view))
    journal = server.journal_path(session_id, run_id).read_text()
    if at_rest == "1":
        assert_absent(SECRET, journal)
    else:
        assert SECRET in journal  # written raw, as asked; masked on every way out
    status, raw, _ = request(server.url, "GET", f"/api/runs/{run_id}/journal?offset=0")
    assert status == 200 and "call_read" in raw.decode()
    assert_absent(SECRET, raw.decode())
    later = provider.script(Stream(streams.openai_text(["ok"])))
    server.run_to_end(session_id, later)
    history = json.dumps(sent(provider, later))
    assert "REGION=eu-west-1" in history
    if at_rest == "1":
        assert_absent(SECRET, history)
    assert user_text(sent(provider, later)[-1]) == later


def test_an_edited_turn_sends_only_its_own_branch(start, provider):
    server = start()
    session_id = server.create_session()
    first = provider.script(Stream(streams.openai_text(["one"])))
    server.run_to_end(session_id, first)
    second = provider.script(Stream(streams.openai_text(["two"])))
    second_run, _ = server.run_to_end(session_id, second)
    edited = provider.script(Stream(streams.openai_text(["three"])))
    _, frames = server.run_to_end(session_id, edited, replaces=second_run)
    assert frames[0][2]["replaces"] == second_run
    assert sent(provider, edited) == [
        {"role": "user", "content": first}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": edited},
    ]
