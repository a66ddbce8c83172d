"""Long sessions (PROTOCOL 2.6): the view is a page of the active branch, older pages on
request, with the same cursor and active run as the whole view."""

import pytest

from hermes_web.core.records import TERMINAL_TYPES
from tests.support import SseClient, expected_frames


@pytest.fixture(scope="module")
def long_session(tmp_path_factory):
    from tests.support import ServerProcess

    server = ServerProcess(tmp_path_factory.mktemp("pages") / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "0"}).start()
    session_id = server.create_session()
    run_ids = []
    for index in range(7):
        run_ids.append(server.start_run(session_id, f"question {index}")["run_id"])
        server.wait_run_finished(run_ids[-1])
    yield server, session_id, run_ids
    server.stop()


def runs_of(view):
    return [message["run_id"] for message in view["messages"] if message["role"] == "user"]


def test_pages_walk_back_to_the_first_run_with_the_cursor_of_the_whole_view(long_session):
    server, session_id, run_ids = long_session
    whole = server.api("GET", f"/api/session?session_id={session_id}")[1]
    assert runs_of(whole) == run_ids and "has_more" not in whole
    seen = []
    before = None
    while True:
        query = "?limit=3" + (f"&before={before}" if before else "")
        status, view, _ = server.api("GET", f"/api/sessions/{session_id}{query}")
        assert status == 200
        assert view["cursor"] == whole["cursor"] and view["active_run"] == whole["active_run"]
        seen = runs_of(view) + seen
        if not view["has_more"]:
            assert "before" not in view
            break
        assert view["before"] == runs_of(view)[0]
        before = view["before"]
    assert seen == run_ids
    default = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert runs_of(default) == run_ids and default["has_more"] is False


@pytest.mark.parametrize("query, code", [
    ("?limit=0", "invalid_limit"), ("?limit=201", "invalid_limit"), ("?limit=abc", "invalid_limit"),
    ("?limit=%C2%B3", "invalid_limit"), ("?limit=-1", "invalid_limit"),
    ("?before=nope-not-a-run", "invalid_page"), ("?before=..%2Fx", "invalid_id"), ("?branch=zzz", "invalid_page"),
])
def test_bad_page_parameters_get_a_400(long_session, query, code):
    server, session_id, _ = long_session
    status, body, _ = server.api("GET", f"/api/sessions/{session_id}{query}")
    assert status == 400 and body["error"]["code"] == code


def test_a_page_of_a_live_session_then_the_stream_from_its_cursor_shows_everything_once(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "5"})
    session_id = server.create_session()
    for index in range(3):
        server.wait_run_finished(server.start_run(session_id, f"old {index}")["run_id"])
    live = server.start_run(session_id, "the live one")["run_id"]
    view = server.api("GET", f"/api/sessions/{session_id}?limit=1")[1]
    assert runs_of(view) == [live] and view["has_more"] is True
    cursor_run, cursor_offset = view["cursor"].rsplit(":", 1)
    assert cursor_run == live and view["messages"][-1]["cursor"] == view["cursor"]
    received = []
    client = SseClient(server.url, f"/api/sessions/{session_id}/events?cursor={view['cursor']}", timeout=30)
    try:
        if view["active_run"] is not None:
            for frame in client.frames():
                if "id" in frame:
                    received.append((frame["id"], frame["event"], frame["data"]))
                    if frame["event"] in TERMINAL_TYPES:
                        break
    finally:
        client.close()
    server.wait_run_finished(live)
    assert received == expected_frames(server.journal_path(session_id, live), live, int(cursor_offset))
