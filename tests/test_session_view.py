"""The session view (PROTOCOL 2.1): messages folded up to exactly ``cursor``, so the view plus
the session stream from that cursor shows every event exactly once."""

import json
import random
import time

from hermes_web.read.fold import RunFold
from hermes_web.store.files.journal import read_entries
from tests.support import SseClient

STREAM_TIMEOUT = 30.0


def test_view_then_tail_from_its_cursor_reproduces_the_final_message_at_any_moment(server_factory):
    # Every sample holds its stream open until the end: far more than one client's share.
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "3", "HERMES_WEB_MAX_STREAMS_PER_CLIENT": "10000",
                                 "HERMES_WEB_MAX_CONNECTIONS_PER_CLIENT": "10000"})
    rng = random.Random(7)
    session_id = server.create_session()
    samples = []
    for run_number in range(2):
        run_id = server.start_run(session_id, f"sample me while I run {run_number}")["run_id"]
        while True:
            status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
            assert status == 200
            client = SseClient(server.url, f"/api/sessions/{session_id}/events?cursor={view['cursor']}",
                               timeout=STREAM_TIMEOUT)
            assert client.status == 200
            samples.append((run_id, view, client))
            if view["active_run"] is None:
                break
            time.sleep(rng.uniform(0, 0.03))
    assert len(samples) >= 30
    try:
        for run_id, view, client in samples:
            journal = server.journal_path(session_id, run_id)
            final = None
            assistant = view["messages"][-1]
            cursor_run, cursor_offset = view["cursor"].rsplit(":", 1)
            assert cursor_run == run_id and assistant["cursor"] == view["cursor"]
            assert (view["active_run"] is None) == (assistant["status"] != "running")
            # Rebuild the fold at the view's cursor from the journal, then apply the frames.
            fold = RunFold()
            for record, end_offset in read_entries(journal):
                if end_offset <= int(cursor_offset):
                    fold.apply(record, end_offset)
            assert fold.messages() == view["messages"][-2:]
            text, reasoning = assistant["text"], assistant["reasoning"]
            if assistant["status"] == "running":
                for frame in client.frames():
                    if "id" not in frame:
                        continue
                    frame_run, frame_offset = frame["id"].rsplit(":", 1)
                    assert frame_run == run_id and int(frame_offset) > int(cursor_offset)
                    record = json.loads(frame["data"])
                    fold.apply(record, int(frame_offset))
                    if record["type"] == "text.delta":
                        text += record["text"]
                    elif record["type"] == "reasoning.delta":
                        reasoning += record["text"]
                    if fold.finished:
                        break
            final = server.api("GET", f"/api/sessions/{session_id}")[1]
            final_assistant = next(m for m in final["messages"] if m["run_id"] == run_id and m["role"] == "assistant")
            assert fold.messages()[1] == final_assistant
            assert (text, reasoning) == (final_assistant["text"], final_assistant["reasoning"])
            assert final_assistant["status"] == "completed"
            assert final_assistant["cursor"] == f"{run_id}:{journal.stat().st_size}"
    finally:
        for _, _, client in samples:
            client.close()
    running = [view for _, view, _ in samples if view["active_run"] is not None]
    assert len(running) >= 20  # most samples were taken mid-run


def test_view_of_a_session_lists_its_runs_in_order_with_user_and_assistant_turns(server):
    session_id = server.create_session()
    status, empty, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert status == 200
    assert (empty["messages"], empty["active_run"], empty["cursor"]) == ([], None, None)
    assert set(empty) == {"id", "title", "created_at", "updated_at", "messages", "active_run", "cursor", "has_more"}
    run_ids = []
    for text in ("first question", "second question"):
        run_ids.append(server.start_run(session_id, text)["run_id"])
        server.wait_run_finished(run_ids[-1])
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert [(m["role"], m["run_id"]) for m in view["messages"]] == [
        ("user", run_ids[0]), ("assistant", run_ids[0]), ("user", run_ids[1]), ("assistant", run_ids[1])]
    assert [view["messages"][0]["text"], view["messages"][2]["text"]] == ["first question", "second question"]
    assert view["cursor"] == f"{run_ids[1]}:{server.journal_path(session_id, run_ids[1]).stat().st_size}"
    assert view["title"] == "first question"  # the demo titles a session from its first message
    assistant = view["messages"][1]
    assert [call["name"] for call in assistant["tool_calls"]] == ["word_count", "clock", "list_attachments"]
    assert all(call["status"] == "done" and not call["is_error"] for call in assistant["tool_calls"])
    assert "first question" in assistant["text"] and assistant["reasoning"]
    assert assistant["agent"] == {"name": "demo", "model": "demo"}
    entries = read_entries(server.journal_path(session_id, run_ids[0]))
    fold = RunFold()
    for record, end_offset in entries:
        fold.apply(record, end_offset)
    assert fold.messages() == view["messages"][:2]
