"""Branches (PROTOCOL 1.6): the active branch, versions of a turn, regenerate and edit
through the API, and the agent's history being the active branch before its run."""

import json

import pytest

from hermes_web.read.branches import RunTree, page


@pytest.mark.parametrize("runs, active", [
    ([], []),
    ([("a", None), ("b", None), ("c", None)], ["a", "b", "c"]),
    ([("a", None), ("b", None), ("b2", "b")], ["a", "b2"]),  # regenerate the last
    ([("a", None), ("b", None), ("c", None), ("a2", "a")], ["a2"]),  # edit the first
    ([("a", None), ("b", None), ("b2", "b"), ("c", None), ("b3", "b2")], ["a", "b3"]),
    ([("a", None), ("b", None), ("x", "zz")], ["a", "b", "x"]),  # an unknown run cuts nothing
    ([("a", None), ("b", None), ("b2", "b"), ("c", "b")], ["a", "b2", "c"]),  # b is no longer active
])
def test_the_active_branch_applies_replaces_over_runs_in_start_order(runs, active):
    tree = RunTree(runs)
    assert tree.active == active
    assert tree.branch_through(runs[-1][0]) == active if runs else True


def test_versions_are_the_runs_with_the_same_parent_and_each_branch_continues_with_its_latest_run():
    tree = RunTree([("a", None), ("b", None), ("c", None), ("b2", "b"), ("d", None), ("b3", "b2")])
    assert tree.active == ["a", "b3"]
    assert tree.versions("b3") == tree.versions("b") == ["b", "b2", "b3"]
    assert tree.versions("a") == ["a"]
    assert tree.branch_through("b") == ["a", "b", "c"]
    assert tree.branch_through("b2") == ["a", "b2", "d"]
    assert tree.before("b3") == ["a"]
    assert tree.order == ["a", "b", "c", "b2", "d", "b3"]


def test_pages_walk_the_branch_backwards():
    branch = [f"r{index}" for index in range(7)]
    assert page(branch, 3) == (["r4", "r5", "r6"], True)
    assert page(branch, 3, before="r4") == (["r1", "r2", "r3"], True)
    assert page(branch, 3, before="r1") == (["r0"], False)
    assert page(branch, 10) == (branch, False)
    with pytest.raises(ValueError):
        page(branch, 3, before="nope")


def finished(server, session_id, body):
    status, started, _ = server.api("POST", f"/api/sessions/{session_id}/runs", body)
    assert status == 202, started
    server.wait_run_finished(started["run_id"])
    return started["run_id"]


def test_regenerate_and_edit_through_the_api_show_only_the_active_branch_with_its_versions(server):
    session_id = server.create_session()
    first = finished(server, session_id, {"text": "first question"})
    second = finished(server, session_id, {"text": "second question"})
    # Regenerate: replaces with no text repeats the same user turn.
    regenerated = finished(server, session_id, {"replaces": second})
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert [message["run_id"] for message in view["messages"]] == [first, first, regenerated, regenerated]
    user = view["messages"][2]
    assert user["text"] == "second question" and user["replaces"] == second
    assert user["alternatives"] == [second, regenerated]
    assert "alternatives" not in view["messages"][0]
    assert view["cursor"].startswith(f"{regenerated}:") and view["active_run"] is None
    # Edit the first message: everything after it leaves the active branch.
    edited = finished(server, session_id, {"replaces": first, "text": "first, better"})
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert [message["run_id"] for message in view["messages"]] == [edited, edited]
    assert view["messages"][0]["alternatives"] == [first, edited]
    # The older branch is still there to page to, and on disk.
    old = server.api("GET", f"/api/sessions/{session_id}?branch={first}")[1]
    assert [message["run_id"] for message in old["messages"][::2]] == [first, regenerated]
    assert old["cursor"] == view["cursor"]
    for run_id in (first, second, regenerated, edited):
        assert server.journal_path(session_id, run_id).exists()


def test_replaces_must_name_a_finished_run_of_the_session(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "30"})
    session_id = server.create_session()
    other = server.create_session()
    done = finished(server, session_id, {"text": "one"})
    foreign = finished(server, other, {"text": "elsewhere"})
    for replaces in (foreign, "00000000000000000-abcdef", 5, "../x"):
        status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "x", "replaces": replaces})
        assert status == 400, (replaces, body)
        assert body["error"]["code"] in ("invalid_replaces", "invalid_id")
    running = server.start_run(session_id, "still going")["run_id"]
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "x", "replaces": running})
    assert status in (400, 409) and body["error"]["code"] in ("invalid_replaces", "run_active")
    server.api("POST", f"/api/runs/{running}/cancel")
    assert finished(server, session_id, {"replaces": done})


def test_a_version_that_was_replaced_cannot_be_replaced_again(server):
    session_id = server.create_session()
    first = finished(server, session_id, {"text": "first question"})
    second = finished(server, session_id, {"text": "second question"})
    regenerated = finished(server, session_id, {"replaces": second})
    runs_before = sorted(path.name for path in server.journal_path(session_id, first).parent.iterdir())
    for body in ({"replaces": second}, {"replaces": second, "text": "edited from the old version"}):
        status, answer, _ = server.api("POST", f"/api/sessions/{session_id}/runs", body)
        assert status == 400 and answer["error"]["code"] == "invalid_replaces", answer
        assert "replaced" in answer["error"]["message"]
    assert sorted(path.name for path in server.journal_path(session_id, first).parent.iterdir()) == runs_before
    # The versions on the active branch still can be.
    again = finished(server, session_id, {"replaces": regenerated})
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert [message["run_id"] for message in view["messages"]] == [first, first, again, again]
    assert view["messages"][2]["alternatives"] == [second, regenerated, again]


def test_the_session_stream_announces_a_replacing_run(server):
    from tests.support import SseClient

    session_id = server.create_session()
    first = finished(server, session_id, {"text": "hello"})
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    client = SseClient(server.url, f"/api/sessions/{session_id}/events?cursor={view['cursor']}", timeout=30)
    try:
        again = server.api("POST", f"/api/sessions/{session_id}/runs", {"replaces": first})[1]["run_id"]
        for frame in client.frames():
            if frame.get("event") == "run.started":
                record = json.loads(frame["data"])
                assert record["run_id"] == again and record["replaces"] == first
                break
    finally:
        client.close()
    server.wait_run_finished(again)


def test_an_agents_history_is_the_active_branch_before_its_run(server_factory):
    from tests.fake_openai import FakeOpenAI

    provider = FakeOpenAI().start()
    try:
        server = server_factory(env={"HERMES_WEB_OPENAI_BASE_URL": provider.url})

        def ask(session_id, body):
            run_id = finished(server, session_id, dict(body, agent="openai"))
            return run_id, [(message["role"], message["content"]) for message in provider.requests[-1]["body"]["messages"]]

        session_id = server.create_session()
        one, sent = ask(session_id, {"text": "one"})
        assert sent == [("user", "one")]
        _, sent = ask(session_id, {"text": "two"})
        assert sent == [("user", "one"), ("assistant", "one "), ("user", "two")]
        _, sent = ask(session_id, {"text": "one, edited", "replaces": one})
        assert sent == [("user", "one, edited")]  # the old branch is not in the new one's history
        _, sent = ask(session_id, {"text": "three"})
        assert sent == [("user", "one, edited"), ("assistant", "one, edited "), ("user", "three")]
    finally:
        provider.stop()
