"""Secrets never leave the server: real runs through a real server, checked everywhere a
byte can leave it (journal on disk, SSE frames, raw journal route, session view, transcript
after compaction, error messages).

The model is an OpenAI-compatible provider stand-in on a local socket that streams chosen
deltas, so each secret is split at every position across deltas.
"""

import json
import random
import subprocess
import sys

import pytest

from hermes_web.redaction.redactor import Redactor
from tests.fake_openai import FakeOpenAI
from tests.support import ROOT, ServerProcess, SseClient, request
from tests.test_redact import FALSE_POSITIVES, SECRET_CASES, assert_absent

# Every mask style carries this word (whole masks and prefix…last-four masks).
MASKED = "REDACTED"
# A secret of no recognisable shape that the server knows (its provider key).
KNOWN_KEY = "Zq8vN3pLr5Tt1Xw7Yb2Mc"
REDACTOR = Redactor([KNOWN_KEY])


@pytest.fixture(scope="module")
def provider():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def _server(tmp_path_factory, provider, **env):
    server = ServerProcess(tmp_path_factory.mktemp("redaction") / "var", env={
        "HERMES_WEB_OPENAI_BASE_URL": provider.url,
        "OPENAI_API_KEY": KNOWN_KEY,
        "HERMES_WEB_DEMO_DELAY_MS": "0",
        **env,
    })
    return server.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory, provider):
    server = _server(tmp_path_factory, provider)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory, provider):
    server = _server(tmp_path_factory, provider, HERMES_WEB_REDACT_AT_REST="0")
    yield server
    server.stop()


def split_at_every_position(text: str) -> list:
    """Deltas in which ``text`` appears once per position, split there across two deltas."""
    deltas = []
    for index in range(1, len(text)):
        deltas += [f"try {index}: {text[:index]}", f"{text[index:]}\n"]
    return deltas


def run_to_end(server, session_id, text, agent="openai"):
    """Start a run and read its whole run stream: ``(run_id, frames)``."""
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": text, "agent": agent})
    assert status == 202, body
    run_id = body["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=60)
    try:
        frames = list(client.records())
    finally:
        client.close()
    assert frames[-1][1].startswith("run."), frames[-1]
    return run_id, frames


def streamed(frames, kind):
    return "".join(data["text"] for _, event, data in frames if event == kind)


def assistant(view, run_id):
    return next(m for m in view["messages"] if m["role"] == "assistant" and m["run_id"] == run_id)


def compact(server):
    subprocess.run(
        [sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(server.data_dir), "--older-than", "0", "--delete"],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )


@pytest.mark.parametrize("case", SECRET_CASES, ids=lambda case: case.name)
def test_secret_split_at_every_position_survives_nowhere(server, provider, case):
    text, secret = case.build()
    deltas = split_at_every_position(text)
    reasoning = [f"thinking about {text[: len(text) // 2]}", f"{text[len(text) // 2:]} done"]
    expected_text = REDACTOR.redact("".join(deltas))
    expected_reasoning = REDACTOR.redact("".join(reasoning))
    assert_absent(secret, expected_text)

    session_id = server.create_session()
    run_id, frames = run_to_end(server, session_id, provider.script(content=deltas, reasoning=reasoning))
    assert frames[-1][1] == "run.completed"
    assert streamed(frames, "text.delta") == expected_text
    assert streamed(frames, "reasoning.delta") == expected_reasoning
    assert_absent(secret, json.dumps([data for _, _, data in frames]))

    journal = server.journal_path(session_id, run_id).read_text()
    assert_absent(secret, journal)
    assert_absent(secret, "".join(json.loads(line).get("text", "") for line in journal.splitlines()))

    _, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    message = assistant(view, run_id)
    assert message["text"] == expected_text
    assert message["reasoning"] == expected_reasoning

    compact(server)
    transcript = (server.data_dir / "transcripts" / f"{session_id}.jsonl").read_text()
    assert_absent(secret, transcript)
    _, after, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert after == view


def test_known_secret_of_no_known_shape_is_masked(server, provider):
    session_id = server.create_session()
    deltas = split_at_every_position(f"the key is {KNOWN_KEY}.")
    run_id, frames = run_to_end(server, session_id, provider.script(content=deltas))
    assert_absent(KNOWN_KEY, streamed(frames, "text.delta"))
    assert_absent(KNOWN_KEY, server.journal_path(session_id, run_id).read_text())
    assert MASKED in streamed(frames, "text.delta")


@pytest.mark.parametrize("text", FALSE_POSITIVES[:20])
def test_ordinary_text_passes_through_exactly(server, provider, text):
    rng = random.Random(text)
    cuts = sorted(rng.sample(range(1, len(text)), min(4, len(text) - 1))) if len(text) > 1 else []
    deltas = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]
    session_id = server.create_session()
    run_id, frames = run_to_end(server, session_id, provider.script(content=deltas))
    assert streamed(frames, "text.delta") == text
    _, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert assistant(view, run_id)["text"] == text


def test_user_message_title_and_tool_arguments_are_redacted(server):
    text, secret = SECRET_CASES[0].build()
    session_id = server.create_session()
    run_id, frames = run_to_end(server, session_id, f"{text} please check this key", agent="demo")
    journal = server.journal_path(session_id, run_id).read_text()
    assert_absent(secret, journal)
    started = json.loads(journal.splitlines()[0])
    assert MASKED in started["user"]["text"]
    tool_args = [data["args"] for _, event, data in frames if event == "tool.started"]
    assert any(MASKED in json.dumps(args) for args in tool_args)
    _, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert_absent(secret, json.dumps(view))
    _, sessions, _ = server.api("GET", "/api/sessions")
    assert_absent(secret, json.dumps(sessions))


def test_provider_error_body_is_redacted(server, provider):
    text, secret = SECRET_CASES[1].build()
    error = {"error": {"message": f"Incorrect API key provided: {text}. Your key {KNOWN_KEY} was rejected."}}
    session_id = server.create_session()
    run_id, frames = run_to_end(server, session_id, provider.script(status=401, error_body=error))
    event, data = frames[-1][1], frames[-1][2]
    assert event == "run.failed"
    assert "401" in data["error"]["message"]
    assert_absent(secret, data["error"]["message"])
    assert_absent(KNOWN_KEY, data["error"]["message"])
    assert_absent(secret, server.journal_path(session_id, run_id).read_text())
    _, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert assistant(view, run_id)["status"] == "failed"
    assert assistant(view, run_id)["error"] == data["error"]


def test_error_responses_are_redacted(server):
    text, secret = SECRET_CASES[5].build()
    status, body, _ = server.api("POST", f"/api/sessions/{server.create_session()}/runs", {"text": "x", "agent": text})
    assert status == 400
    assert_absent(secret, json.dumps(body))


@pytest.mark.parametrize("case", SECRET_CASES[:6], ids=lambda case: case.name)
def test_raw_journals_when_asked_but_responses_still_redacted(raw_server, provider, case):
    text, secret = case.build()
    deltas = split_at_every_position(text)
    expected = REDACTOR.redact("".join(deltas))
    session_id = raw_server.create_session()
    run_id, frames = run_to_end(raw_server, session_id, provider.script(content=deltas))

    journal = raw_server.journal_path(session_id, run_id).read_text()
    assert "".join(json.loads(line).get("text", "") for line in journal.splitlines()) == "".join(deltas)

    assert streamed(frames, "text.delta") == expected
    assert_absent(secret, json.dumps([data for _, _, data in frames]))
    _, view, _ = raw_server.api("GET", f"/api/sessions/{session_id}")
    assert assistant(view, run_id)["text"] == expected
    status, body, _ = request(raw_server.url, "GET", f"/api/runs/{run_id}/journal?offset=0")
    assert status == 200
    assert_absent(secret, body.decode())


def test_raw_journals_never_leak_a_secret_through_the_title(raw_server):
    secret = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"
    session_id = raw_server.create_session()
    client = SseClient(raw_server.url, f"/api/sessions/{session_id}/events", timeout=10)
    try:
        run_id, _ = run_to_end(raw_server, session_id, f"{secret} is my token, keep it", agent="demo")
        updates = []
        for frame in client.frames():  # the socket timeout bounds a stream that never says it
            if frame.get("event") == "session.updated":
                updates.append(json.loads(frame["data"]))
                if updates[-1]["title"] != "New chat":
                    break
    finally:
        client.close()
    # The raw journal keeps the title as the agent wrote it; nothing that leaves the server does.
    assert secret in raw_server.journal_path(session_id, run_id).read_text()
    assert updates and all(secret not in json.dumps(update) for update in updates)
    _, sessions, _ = raw_server.api("GET", "/api/sessions")
    listed = next(item for item in sessions if item["id"] == session_id)
    assert "REDACTED" in listed["title"] and secret not in json.dumps(sessions)
    _, view, _ = raw_server.api("GET", f"/api/sessions/{session_id}")
    assert "REDACTED" in view["title"] and secret not in json.dumps(view)
    status, renamed, _ = raw_server.api("PATCH", f"/api/sessions/{session_id}", {"title": f"about {secret}"})
    assert status == 200 and secret not in json.dumps(renamed)
