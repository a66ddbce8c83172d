"""The browser's fold (static/fold.js) and the Python fold agree on a shared event sequence."""

import json
from pathlib import Path

from hermes_web.read.fold import fold, fold_session

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOLDEN = FIXTURES / "golden_run.jsonl"
# Regenerated and edited turns, a damaged line (as the stream's record.damaged frame), and
# every way a run ends, the last still running.
GOLDEN_BRANCHES = FIXTURES / "golden_branches.jsonl"
# Approvals and clarifying questions: settled by each kind of decider, answers to requests
# never made, malformed choices, and a run that ended (its server died) while one waited.
GOLDEN_DECISIONS = FIXTURES / "golden_decisions.jsonl"


def golden_entries(path=GOLDEN):
    """``(record, end_offset)`` pairs; offsets restart at each run, as in its own journal."""
    entries = []
    offset = 0
    for line in path.read_bytes().splitlines(keepends=True):
        record = json.loads(line)
        if record["type"] == "run.started":
            offset = 0
        offset += len(line)
        entries.append((record, offset))
    return entries


def frame_id(entry):
    record, offset = entry
    return f"{record.get('run_id') or ''}:{offset}"


def with_frame_ids(entries):
    """Stream frames as the server sends them: ``[id, record]`` with ``<run_id>:<offset>`` ids."""
    frames = []
    run_id = None
    for record, offset in entries:
        if record["type"] == "run.started":
            run_id = record["run_id"]
        frames.append([f"{run_id}:{offset}", record])
    return frames


def load_fold_module(page, server):
    page.goto(f"{server.url}/")
    page.wait_for_selector("[data-testid=composer-input]")


def test_every_prefix_folds_identically_in_python_and_in_the_browser(server, new_page):
    page = new_page()
    load_fold_module(page, server)
    entries = golden_entries()
    expected = [fold(entries[:count]) for count in range(len(entries) + 1)]
    folded = page.evaluate(
        """async (entries) => {
            const { fold } = await import('/static/fold.js');
            return [...Array(entries.length + 1).keys()].map((count) => fold(entries.slice(0, count)));
        }""",
        [[record, offset] for record, offset in entries],
    )
    assert folded == expected
    final = expected[-1]
    assert [m["status"] for m in final if m["role"] == "assistant"] == ["completed", "interrupted"]
    assert final[2]["attachments"][0]["url"].startswith("/api/file/raw?session_id=golden&path=%2Fhome%2Fme%2Fnotes.md")


def test_a_view_continued_by_frames_equals_the_whole_fold_even_with_replays(server, new_page):
    """Render a view folded up to any point, then apply every frame from the start (the
    overlap a reconnect may replay): the result is the fold of everything, each event once."""
    page = new_page()
    load_fold_module(page, server)
    entries = golden_entries()
    frames = with_frame_ids(entries)
    views = []
    for count in range(len(entries) + 1):
        messages = fold(entries[:count])
        views.append({"messages": messages, "cursor": messages[-1]["cursor"] if messages else None})
    continued = page.evaluate(
        """async ([views, frames]) => {
            const { SessionFold } = await import('/static/fold.js');
            return views.map((view) => {
                const session = new SessionFold(view);
                for (const [id, record] of frames) session.applyFrame(id, record);
                for (const [id, record] of frames) session.applyFrame(id, record);
                return session.messages();
            });
        }""",
        [views, frames],
    )
    whole = fold(entries)
    for count, messages in enumerate(continued):
        assert messages == whole, f"view folded up to record {count}"


def test_branches_fold_identically_live_and_from_any_view(server, new_page):
    """A session with regenerated and edited turns: the browser's session fold, fed the
    frames from any view the server could have given, shows the active branch exactly as
    the server's fold does, with the same versions on each turn."""
    page = new_page()
    load_fold_module(page, server)
    entries = golden_entries(GOLDEN_BRANCHES)
    frames = with_frame_ids(entries)
    expected = [fold_session(entries[:count]) for count in range(len(entries) + 1)]
    views = [{"messages": messages, "cursor": _cursor_of(entries[:count])} for count, messages in enumerate(expected)]
    results = page.evaluate(
        """async ([views, frames]) => {
            const { SessionFold } = await import('/static/fold.js');
            const live = [];
            const session = new SessionFold({ messages: [], cursor: null });
            live.push(session.messages());
            for (const [id, record] of frames) {
                session.applyFrame(id, record);
                live.push(session.messages());
            }
            const continued = views.map((view) => {
                const resumed = new SessionFold(view);
                for (const [id, record] of frames) resumed.applyFrame(id, record);
                for (const [id, record] of frames) resumed.applyFrame(id, record);
                return resumed.messages();
            });
            return { live, continued };
        }""",
        [views, frames],
    )
    assert results["live"] == expected
    for count, messages in enumerate(results["continued"]):
        assert messages == expected[-1], f"view folded up to record {count}"
    final = expected[-1]
    assert [message["run_id"][-6:] for message in final[::2]] == ["aaaaaa", "eeeeee", "ffffff"]
    assert final[2]["alternatives"] == [entries[i][0]["run_id"] for i in (4, 7, 15)]
    assert final[3]["status"] == "interrupted" and final[5]["status"] == "running"
    versions = fold_session(entries[:12])
    assert versions[3]["damaged"] == 1 and versions[2]["alternatives"][-1] == versions[2]["run_id"]


def test_approvals_and_questions_fold_identically_and_continue_from_any_view(server, new_page):
    page = new_page()
    load_fold_module(page, server)
    entries = golden_entries(GOLDEN_DECISIONS)
    frames = with_frame_ids(entries)
    expected = [fold(entries[:count]) for count in range(len(entries) + 1)]
    views = [{"messages": messages, "cursor": _cursor_of(entries[:count])} for count, messages in enumerate(expected)]
    results = page.evaluate(
        """async ([entries, views, frames]) => {
            const { fold, SessionFold } = await import('/static/fold.js');
            const prefixes = [...Array(entries.length + 1).keys()].map((count) => fold(entries.slice(0, count)));
            const continued = views.map((view) => {
                const resumed = new SessionFold(view);
                for (const [id, record] of frames) resumed.applyFrame(id, record);
                return resumed.messages();
            });
            return { prefixes, continued };
        }""",
        [[[record, offset] for record, offset in entries], views, frames],
    )
    assert results["prefixes"] == expected
    for count, messages in enumerate(results["continued"]):
        assert messages == expected[-1], f"view folded up to record {count}"
    first, second = expected[-1][1], expected[-1][3]
    assert [(a["id"], a["status"], a["choice"], a["by"]) for a in first["approvals"]] == [
        ("apr_1", "resolved", "session", "user"), ("apr_2", "resolved", "deny", "cancel")]
    assert first["approvals"][1]["choices"] == [] and first["questions"][0]["choices"] == ["rouge", "🌊"]
    assert [(q["status"], q["answer"], q["by"]) for q in first["questions"]] == [
        ("resolved", "ni l'un ni l'autre: vert", "user"), ("resolved", "", "timeout")]
    assert second["approvals"][0]["status"] == "expired" and second["questions"][0]["status"] == "resolved"
    # While it waited, the same card was pending, and the turn said it waited for a person.
    assert expected[6][1]["approvals"][0]["status"] == "pending"
    assert expected[6][1]["activity"]["state"] == "waiting_for_approval"
    # Settled: the wait is over; the next status is what the turn waits on then; an ended run waits on nothing.
    assert expected[7][1]["activity"]["state"] == "waiting_for_approval" and "activity" not in expected[8][1]
    assert expected[9][1]["activity"] == expected[10][1]["activity"] == {"state": "running_tool", "detail": "running terminal", "call_id": "c1",
                                          "since": 1700000100.32}
    assert "activity" not in first and "activity" not in second


def _cursor_of(entries):
    """The cursor a view of these entries carries: the last record's frame id."""
    frames = with_frame_ids(entries)
    return frames[-1][0] if frames else None
