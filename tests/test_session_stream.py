"""The session stream: every run of a session, resumable, open across runs; heartbeats;
live tailing of runs written by another server process (PROTOCOL 2.2)."""

import json
import time
import urllib.parse

from tests.support import SseClient, assert_sse_headers, expected_frames, journal_lines, request

STREAM_TIMEOUT = 30.0


def read_until_terminal_of(client, run_id):
    """Record frames up to and including ``run_id``'s terminal record."""
    frames = []
    for frame in client.frames():
        if "id" not in frame:
            continue
        frames.append((frame["id"], frame["event"], frame["data"]))
        if frame["id"].startswith(f"{run_id}:") and frame["event"].startswith("run.") and frame["event"] != "run.started":
            return frames
    raise AssertionError(f"stream ended before {run_id} finished")


def run_to_completion(server, session_id, text="hello session"):
    run_id = server.start_run(session_id, text)["run_id"]
    assert server.wait_run_finished(run_id)["status"] == "completed"
    return run_id


def test_session_stream_without_cursor_replays_every_run_then_follows_new_ones(server):
    session_id = server.create_session()
    first = run_to_completion(server, session_id, "first")
    second = run_to_completion(server, session_id, "second")
    client = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=STREAM_TIMEOUT)
    try:
        assert_sse_headers(client)
        frames = read_until_terminal_of(client, second)
        third = server.start_run(session_id, "third")["run_id"]
        later = read_until_terminal_of(client, third)
    finally:
        client.close()
    assert frames == (expected_frames(server.journal_path(session_id, first), first)
                      + expected_frames(server.journal_path(session_id, second), second))
    assert later == expected_frames(server.journal_path(session_id, third), third)


def test_cursor_at_the_end_of_the_last_run_stays_open_and_delivers_the_next_run(server):
    session_id = server.create_session()
    first = run_to_completion(server, session_id)
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    end = server.journal_path(session_id, first).stat().st_size
    assert view["cursor"] == f"{first}:{end}" and view["active_run"] is None
    for use_header in (False, True):
        if use_header:
            client = SseClient(server.url, f"/api/sessions/{session_id}/events", last_event_id=view["cursor"],
                               timeout=STREAM_TIMEOUT)
        else:
            client = SseClient(server.url, f"/api/sessions/{session_id}/events?cursor={view['cursor']}",
                               timeout=STREAM_TIMEOUT)
        try:
            assert client.status == 200  # never 204 on a session stream
            frames = client.frames()
            assert next(frames) == {"retry": "2000"}
            next_run = server.start_run(session_id, f"next run {use_header}")["run_id"]
            received = read_until_terminal_of(client, next_run)
        finally:
            client.close()
        assert received[0][1] == "run.started"
        assert received == expected_frames(server.journal_path(session_id, next_run), next_run)
        view = server.api("GET", f"/api/sessions/{session_id}")[1]


def test_resume_of_the_session_stream_mid_run_delivers_the_rest_and_later_runs(server):
    session_id = server.create_session()
    first = run_to_completion(server, session_id, "one")
    second = run_to_completion(server, session_id, "two")
    path = server.journal_path(session_id, first)
    ends = [end for _, end in journal_lines(path)]
    for offset in (0, ends[0], ends[len(ends) // 2], ends[-2]):
        client = SseClient(server.url, f"/api/sessions/{session_id}/events", last_event_id=f"{first}:{offset}",
                           timeout=STREAM_TIMEOUT)
        try:
            frames = read_until_terminal_of(client, second)
        finally:
            client.close()
        assert frames == (expected_frames(path, first, offset)
                          + expected_frames(server.journal_path(session_id, second), second))


def test_invalid_cursors_get_a_json_400_on_the_session_stream(server):
    session_id = server.create_session()
    run_id = run_to_completion(server, session_id)
    other_session = server.create_session()
    other_run = run_to_completion(server, other_session)
    size = server.journal_path(session_id, run_id).stat().st_size
    first_end = journal_lines(server.journal_path(session_id, run_id))[0][1]
    cursors = ["garbage", "0", "12", "-1", f"{run_id}:-1", f"{run_id}:{first_end + 3}", f"{run_id}:{size + 1}",
               f"{other_run}:0", f"{run_id}:", f"{run_id}:1:2", f"{run_id}:01", "../x:0", f"{run_id}:{'9' * 18}",
               f"{run_id}:{'9' * 30}", f"{run_id}:0x1", "unknownrun:0"]
    for cursor in cursors:
        quoted = urllib.parse.quote(cursor, safe="")
        for headers, path in (({}, f"/api/sessions/{session_id}/events?cursor={quoted}"),
                              ({"Last-Event-ID": cursor}, f"/api/sessions/{session_id}/events")):
            status, body, response_headers = request(server.url, "GET", path, headers=headers)
            assert status == 400, (cursor, body)
            assert response_headers["Content-Type"].startswith("application/json")
            assert json.loads(body)["error"]["code"] == "invalid_cursor"


def test_rename_and_delete_reach_the_session_stream(server):
    session_id = server.create_session()
    run_id = run_to_completion(server, session_id)
    end = server.journal_path(session_id, run_id).stat().st_size
    client = SseClient(server.url, f"/api/sessions/{session_id}/events?cursor={run_id}:{end}", timeout=STREAM_TIMEOUT)
    try:
        frames = client.frames()
        assert next(frames) == {"retry": "2000"}
        status, _, _ = server.api("PATCH", f"/api/sessions/{session_id}", {"title": "Renamed"})
        assert status == 200
        updated = next(frames)
        assert updated["event"] == "session.updated" and "id" not in updated
        assert json.loads(updated["data"])["title"] == "Renamed"
        status, _, _ = server.api("DELETE", f"/api/sessions/{session_id}")
        assert status == 204
        deleted = next(frames)
        assert deleted == {"event": "session.deleted", "data": json.dumps({"id": session_id}, separators=(",", ":"))}
        assert list(frames) == []  # the stream ends
    finally:
        client.close()


def pings_within(client, count, timeout):
    """Seconds at which the first ``count`` ``: ping`` comments arrived (after the open)."""
    opened = time.monotonic()
    seen = []
    for frame in client.frames():
        if "ping" in frame.get("comment", []):
            seen.append(time.monotonic() - opened)
            if len(seen) == count:
                return seen
        assert time.monotonic() - opened < timeout, "no heartbeat in time"
    raise AssertionError("stream ended without heartbeats")


def test_idle_streams_send_ping_heartbeats(server_factory):
    server = server_factory(env={"HERMES_WEB_HEARTBEAT_S": "0.5", "HERMES_WEB_DEMO_DELAY_MS": "3000"})
    session_id = server.create_session()
    idle_session = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=STREAM_TIMEOUT)
    try:
        times = pings_within(idle_session, 3, timeout=5)
    finally:
        idle_session.close()
    assert times[0] >= 0.4 and times[2] < 3.0
    # A run that is quiet for 3 s between deltas: its stream pings meanwhile.
    run_id = server.start_run(session_id, "slow")["run_id"]
    run_stream = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        times = pings_within(run_stream, 2, timeout=5)
    finally:
        run_stream.close()
    assert times[1] < 3.0
    server.api("POST", f"/api/runs/{run_id}/cancel")


def test_a_run_started_on_one_server_streams_live_through_another(server_factory, tmp_path):
    data_dir = tmp_path / "shared"
    writer_server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "5"}, data_dir=data_dir)
    reader_server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "5"}, data_dir=data_dir)
    session_id = writer_server.create_session()
    session_stream = SseClient(reader_server.url, f"/api/sessions/{session_id}/events", timeout=STREAM_TIMEOUT)
    try:
        session_frames = session_stream.frames()
        assert next(session_frames) == {"retry": "2000"}
        run_id = writer_server.start_run(session_id, "written by A, read through B " * 10)["run_id"]
        path = writer_server.journal_path(session_id, run_id)
        run_stream = SseClient(reader_server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
        try:
            run_frames = []
            live_at_first_text = None
            for frame in run_stream.frames():
                if "id" not in frame:
                    continue
                run_frames.append((frame["id"], frame["event"], frame["data"]))
                if frame["event"] == "text.delta" and live_at_first_text is None:
                    _, last = journal_lines(path)[-1]
                    live_at_first_text = json.loads(journal_lines(path)[-1][0])["type"] != "run.completed"
        finally:
            run_stream.close()
        received = read_until_terminal_of(session_stream, run_id)
    finally:
        session_stream.close()
    expected = expected_frames(path, run_id)
    assert expected[-1][1] == "run.completed"
    assert run_frames == expected
    assert received == expected
    assert live_at_first_text is True  # B delivered while A was still writing
    status_a, view_a, _ = writer_server.api("GET", f"/api/sessions/{session_id}")
    status_b, view_b, _ = reader_server.api("GET", f"/api/sessions/{session_id}")
    assert status_a == status_b == 200
    assert view_b == view_a
    assert view_b["messages"][1]["status"] == "completed" and view_b["active_run"] is None


def test_renames_and_deletions_made_through_another_process_reach_the_session_stream(server_factory):
    first = server_factory()
    second = server_factory(data_dir=first.data_dir)
    session_id = first.create_session()
    client = SseClient(second.url, f"/api/sessions/{session_id}/events", timeout=15)
    try:
        frames = client.frames()
        assert "retry" in next(frames)
        status, _, _ = first.api("PATCH", f"/api/sessions/{session_id}", {"title": "Renamed elsewhere"})
        assert status == 200
        updated = next(frame for frame in frames if frame.get("event") == "session.updated")
        assert json.loads(updated["data"])["title"] == "Renamed elsewhere"
        assert "id" not in updated
        status, _, _ = first.api("DELETE", f"/api/sessions/{session_id}")
        assert status == 204
        deleted = next(frame for frame in frames if frame.get("event") in ("session.deleted",))
        assert json.loads(deleted["data"]) == {"id": session_id}
        assert list(frames) == []  # the stream ended
    finally:
        client.close()
