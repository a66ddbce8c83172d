"""The browser's fold (static/fold.js) and the Python fold agree on a shared event sequence."""

import json
from pathlib import Path

from hermes_web.fold import fold

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden_run.jsonl"


def golden_entries():
    """``(record, end_offset)`` pairs; offsets restart at each run, as in its own journal."""
    entries = []
    offset = 0
    for line in GOLDEN.read_bytes().splitlines(keepends=True):
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
