"""The ``hermes`` agent end to end: the real ``hermes-agent`` package in worker processes of
its own interpreter (``.venv-hermes``, made by ``make hermes-deps``), driven by a real server,
against a fake OpenAI-compatible provider on a loopback socket that scripts tool calls.

Commands really run (in the session's working directory), dangerous ones wait for a person
through the API and never run when denied or when nobody answers, clarifying questions are
answered through the API, cancel interrupts Hermes and keeps the partial answer, a worker
that dies fails its run with its (redacted) last words, and the server answers other
requests quickly while Hermes works.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests import provider_streams as streams
from tests.fake_openai import FakeOpenAI, Stream
from tests.hermes_support import answer, hermes_env, make_hermes_home, needs_hermes, terminal_call
from tests.support import ServerProcess, SseClient

TERMINAL = ("run.completed", "run.failed", "run.cancelled", "run.interrupted")
pytestmark = needs_hermes


@pytest.fixture(scope="module")
def provider():
    fake = FakeOpenAI(models=["fake-model"]).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def hermes_home(tmp_path_factory):
    return make_hermes_home(tmp_path_factory.mktemp("hermes-home"))


def start_server(tmp_path_factory, provider, hermes_home, **env):
    return ServerProcess(tmp_path_factory.mktemp("hermes") / "var", env=hermes_env(provider, hermes_home, **env)).start(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory, provider, hermes_home):
    server = start_server(tmp_path_factory, provider, hermes_home)
    yield server
    server.stop()


def run_until(server, session_id, text, timeout=90, **fields):
    """Start a run (``fields``: e.g. its agent) and read its stream: yields ``(run_id, event,
    data)``; the caller drives the run (answers approvals) in between."""
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": text, **fields})
    assert status == 202, body
    run_id = body["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=timeout)
    try:
        for _, event, data in client.records():
            yield run_id, event, data
            if event in TERMINAL:
                return
    finally:
        client.close()


def workspace(server, session_id) -> Path:
    return server.data_dir / "workspaces" / session_id


def assistant(server, session_id, run_id):
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    return next(m for m in view["messages"] if m["role"] == "assistant" and m["run_id"] == run_id)


def worker_pids(server) -> list:
    """The server's worker processes (children running hermes_worker.py), by pid."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid and b"hermes_worker.py" in cmdline:
            pids.append(int(entry.name))
    return pids


def processes_in(directory: Path) -> list:
    """Pids of the processes whose working directory is ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(directory):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(condition, timeout=15.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------ tools, approvals, questions


def test_a_terminal_command_really_runs_in_the_sessions_workspace(server, provider):
    session_id = server.create_session()
    text = provider.script(terminal_call("call_echo1", "echo made-by-hermes > proof.txt && pwd"),
                           Stream(streams.openai_text(["Done."], reasoning=["The file ", "is written."])))
    events = list(run_until(server, session_id, text))
    kinds = [event for _, event, _ in events]
    assert kinds[0] == "run.started" and kinds[-1] == "run.completed", kinds
    run_id = events[0][0]
    assert events[0][2]["agent"] == {"name": "hermes", "model": "fake-model"}
    started = next(data for _, event, data in events if event == "tool.started")
    finished = next(data for _, event, data in events if event == "tool.finished")
    assert (started["call_id"], started["name"], started["args"]) == ("call_echo1", "terminal",
                                                                       {"command": "echo made-by-hermes > proof.txt && pwd"})
    assert finished["call_id"] == "call_echo1" and finished["is_error"] is False and finished["duration_ms"] >= 0
    result = json.loads(finished["result"])
    assert result["exit_code"] == 0 and result["output"].strip() == str(workspace(server, session_id))
    assert (workspace(server, session_id) / "proof.txt").read_text() == "made-by-hermes\n"
    assert workspace(server, session_id).stat().st_mode & 0o777 == 0o700
    message = assistant(server, session_id, run_id)
    assert message["status"] == "completed" and message["text"].strip() == "Done."
    assert message["reasoning"] == "The file is written."
    assert message["tool_calls"][0]["status"] == "done" and message["usage"]["output_tokens"] > 0
    # What Hermes sent: our key, our model, and the tools asked for.
    first = provider.requests_for(text)[0]
    assert first["model"] == "fake-model"
    assert {tool["function"]["name"] for tool in first["tools"]} >= {"terminal", "clarify"}
    chat = [r for r in provider.requests if r["path"] == "/v1/chat/completions" and r["body"] in provider.requests_for(text)]
    assert chat[0]["headers"]["Authorization"] == "Bearer sk-hermes-test-key-0123456789abcdef"
    # The workspace belongs to the session: deleting it deletes the files.
    assert server.api("DELETE", f"/api/sessions/{session_id}")[0] == 204
    assert not workspace(server, session_id).exists()


def test_a_denied_command_never_runs_an_approved_one_does_and_the_next_turn_knows(server, provider):
    session_id = server.create_session()
    denied = provider.script(terminal_call("call_rm1", "touch denied-marker && rm -rf ./scratch"), answer("I will not."))
    approvals = []
    for run_id, event, data in run_until(server, session_id, denied):
        if event == "approval.requested":
            approvals.append(data)
            status, body, _ = server.api("POST", f"/api/runs/{run_id}/approvals/{data['approval_id']}", {"choice": "deny"})
            assert (status, body["by"]) == (200, "user")
        last = event
    assert last == "run.completed"
    (request,) = approvals
    assert request["call_id"] == "call_rm1" and request["detail"] == "touch denied-marker && rm -rf ./scratch"
    assert request["choices"] == ["once", "session", "always", "deny"] and request["title"]
    assert not (workspace(server, session_id) / "denied-marker").exists()
    denied_call = assistant(server, session_id, run_id)["tool_calls"][0]
    assert denied_call["is_error"] is True and "BLOCKED" in denied_call["result"]

    allowed = provider.script(terminal_call("call_rm2", "touch allowed-marker && rm -rf ./scratch"), answer("Done."))
    for run_id, event, data in run_until(server, session_id, allowed):
        if event == "approval.requested":
            assert server.api("POST", f"/api/runs/{run_id}/approvals/{data['approval_id']}", {"choice": "once"})[0] == 200
    assert (workspace(server, session_id) / "allowed-marker").exists()
    assert assistant(server, session_id, run_id)["approvals"][0]["choice"] == "once"
    # The second turn was sent the first one from the session's history, its tool turn included.
    messages = provider.requests_for(allowed)[0]["messages"]
    assert [m["role"] for m in messages if m["role"] != "system"][:4] == ["user", "assistant", "tool", "assistant"]
    previous_call = next(m for m in messages if m.get("tool_calls"))
    assert previous_call["tool_calls"][0]["id"] == "call_rm1"
    assert "BLOCKED" in next(m for m in messages if m["role"] == "tool")["content"]


def test_a_clarifying_question_is_answered_through_the_api(server, provider):
    session_id = server.create_session()
    text = provider.script(
        Stream(streams.openai_tool_calls([("call_ask1", "clarify", {"question": "Staging or prod?", "choices": ["staging", "prod"]})])),
        answer("Deploying to staging."))
    for run_id, event, data in run_until(server, session_id, text):
        if event == "question.asked":
            assert (data["question"], data["choices"], data["call_id"]) == ("Staging or prod?", ["staging", "prod"], "call_ask1")
            status, body, _ = server.api("POST", f"/api/runs/{run_id}/questions/{data['question_id']}",
                                         {"answer": "staging, and tag it"})
            assert status == 200
    question = assistant(server, session_id, run_id)["questions"][0]
    assert (question["status"], question["answer"], question["by"]) == ("resolved", "staging, and tag it", "user")
    tool_result = next(m for m in provider.requests_for(text)[1]["messages"] if m["role"] == "tool")
    assert json.loads(tool_result["content"])["user_response"] == "staging, and tag it"


def test_an_unanswered_approval_times_out_as_deny_and_the_command_never_runs(tmp_path_factory, provider, hermes_home):
    server = start_server(tmp_path_factory, provider, hermes_home, HERMES_WEB_APPROVAL_TIMEOUT_S="1")
    try:
        session_id = server.create_session()
        text = provider.script(terminal_call("call_rm3", "touch late-marker && rm -rf ./scratch"), answer("Skipped."))
        events = [(event, data) for _, event, data in run_until(server, session_id, text)]
        resolved = next(data for event, data in events if event == "approval.resolved")
        assert (resolved["choice"], resolved["by"]) == ("deny", "timeout")
        assert events[-1][0] == "run.completed"
        assert not (workspace(server, session_id) / "late-marker").exists()
        # The spare started for the next run ends with the server.
        wait_until(lambda: len(worker_pids(server)) == 1, what="the spare alone (the run's worker gone)")
        (spare,) = worker_pids(server)
    finally:
        server.stop(sig=signal.SIGTERM)
    wait_until(lambda: exited(spare), what="the spare to exit")


def test_hermes_own_configuration_is_used_when_nothing_overrides_it(tmp_path_factory, provider):
    home = tmp_path_factory.mktemp("configured-hermes-home")
    (home / "config.yaml").write_text(
        "model:\n  default: fake-model\n  provider: custom\n"
        f"  base_url: {provider.url}\n  api_key: sk-from-hermes-config-0123456789abcdef\n"
        "approvals:\n  mode: manual\n")
    server = ServerProcess(tmp_path_factory.mktemp("configured") / "var", env={
        "HERMES_WEB_HERMES_PYTHON": hermes_env(provider, home)["HERMES_WEB_HERMES_PYTHON"], "HERMES_HOME": str(home),
    }).start(timeout=60)
    try:
        def hermes_model():
            agents = server.api("GET", "/api/agents")[1]
            return next(agent["model"] for agent in agents if agent["name"] == "hermes")

        # The model Hermes is configured with, as soon as the first worker has said.
        wait_until(lambda: hermes_model() == "fake-model", timeout=60, what="the configured model")
        session_id = server.create_session()
        text = provider.script(terminal_call("call_cfg", "echo configured > configured.txt"), answer("ok"))
        events = list(run_until(server, session_id, text, agent="hermes"))
        assert events[-1][1] == "run.completed" and events[0][2]["agent"] == {"name": "hermes", "model": "fake-model"}
        assert (workspace(server, session_id) / "configured.txt").read_text() == "configured\n"
        chat = [r for r in provider.requests if r["body"] in provider.requests_for(text)]
        assert chat[0]["headers"]["Authorization"] == "Bearer sk-from-hermes-config-0123456789abcdef"
        assert chat[0]["body"]["model"] == "fake-model"
    finally:
        server.stop()


# ------------------------------------------------------------------ cancel, cooperation


def test_cancel_mid_stream_keeps_the_partial_answer_while_other_requests_stay_fast(server, provider):
    session_id = server.create_session()
    text = provider.script(Stream(streams.openai_text([f"word{i} " for i in range(300)]), delay=0.05))
    token = text.split()[-1]
    latencies = []
    stream = run_until(server, session_id, text)
    deltas = 0
    for run_id, event, data in stream:
        if event == "text.delta":
            deltas += 1
            if deltas == 1:
                for _ in range(20):  # while Hermes streams, the server answers everyone else
                    sent = time.monotonic()
                    assert server.api("GET", "/api/sessions")[0] == 200
                    latencies.append(time.monotonic() - sent)
            if deltas == 5:
                cancelled = time.monotonic()
                assert server.api("POST", f"/api/runs/{run_id}/cancel")[1]["status"] == "cancelled"
        last = event
    assert last == "run.cancelled"
    assert max(latencies) < 1.0, latencies
    message = assistant(server, session_id, run_id)
    assert message["status"] == "cancelled" and message["text"].startswith("word0 ")
    assert "word299" not in message["text"]
    # Hermes was interrupted: it dropped the provider's stream, and its worker ends.
    wait_until(lambda: any(closed == token for closed, _ in provider.closed), what="the provider's stream to be closed")
    closed_at = next(at for closed, at in provider.closed if closed == token)
    assert closed_at - cancelled < 3.0
    wait_until(lambda: not processes_in(workspace(server, session_id)), what="the worker to exit")


def test_cancel_stops_a_running_command(server, provider):
    session_id = server.create_session()
    text = provider.script(terminal_call("call_sleep", "sleep 60; touch never-marker"), answer("Slept."))
    for run_id, event, data in run_until(server, session_id, text):
        if event == "tool.started":
            wait_until(lambda: len(processes_in(workspace(server, session_id))) >= 2, what="the command to start")
            time.sleep(0.3)
            cancelled = time.monotonic()
            server.api("POST", f"/api/runs/{run_id}/cancel")
        last = event
    assert last == "run.cancelled" and time.monotonic() - cancelled < 3.0
    # The worker and the command it ran are gone (killed with its process group at worst).
    wait_until(lambda: not processes_in(workspace(server, session_id)), timeout=10, what="the command to stop")
    assert not (workspace(server, session_id) / "never-marker").exists()
    call = assistant(server, session_id, run_id)["tool_calls"][0]
    assert call["status"] == "error" and call["result"] == "not finished: run cancelled"


# ------------------------------------------------------------------ failures, isolation


def test_a_worker_that_dies_fails_the_run_with_its_last_words_redacted(server, provider):
    session_id = server.create_session()
    wait_until(lambda: len(worker_pids(server)) == 1, what="the spare alone (earlier runs' workers gone)")
    (spare,) = worker_pids(server)
    secret = "Authorization: Bearer abcdef0123456789abcdef0123456789"
    text = provider.script(terminal_call("call_die", f"echo 'about to die {secret}' > /proc/{spare}/fd/2; kill -9 {spare}"),
                           answer("unreachable"))
    events = [(event, data) for _, event, data in run_until(server, session_id, text)]
    event, data = events[-1]
    assert event == "run.failed", events[-3:]
    message = data["error"]["message"]
    assert "the Hermes Agent worker was killed by signal 9" in message and "about to die" in message
    assert "abcdef0123456789abcdef0123456789" not in message
    raw = server.journal_path(session_id, events[0][1]["run_id"]).read_text()
    assert "abcdef0123456789abcdef0123456789" not in raw


def test_the_worker_sees_no_server_secret_and_a_private_tmpdir(server, provider, hermes_home):
    session_id = server.create_session()
    text = provider.script(terminal_call("call_env", "env > seen-env.txt; ls -ld \"$TMPDIR\" > seen-tmp.txt"), answer("ok"))
    list(run_until(server, session_id, text))
    seen = dict(line.split("=", 1) for line in (workspace(server, session_id) / "seen-env.txt").read_text().splitlines()
                if "=" in line)
    assert "OPENAI_API_KEY" not in seen and not [name for name in seen if name.startswith("HERMES_WEB_")]
    assert "sk-server-only-secret" not in (workspace(server, session_id) / "seen-env.txt").read_text()
    assert "sk-hermes-test-key" not in (workspace(server, session_id) / "seen-env.txt").read_text()
    assert seen["HERMES_HOME"] == str(hermes_home)
    assert "/hermes-web-worker-" in seen["TMPDIR"]
    assert (workspace(server, session_id) / "seen-tmp.txt").read_text().startswith("drwx------")
    # The private TMPDIR goes with the worker.
    wait_until(lambda: not Path(seen["TMPDIR"]).exists(), what="the worker's TMPDIR to be removed")
