"""The sidebar: New chat creates nothing until the first message (or file), and a list of
thousands of sessions draws a bounded number of rows, patched in place."""

import json
import time

from tests.browser.test_attachments import png_bytes
from tests.browser.ui import open_session, send_message, wait_status, wait_streamed

NEW_CHAT = "[data-testid=new-session]"


def session_ids(server) -> list:
    status, sessions, _ = server.api("GET", "/api/sessions")
    assert status == 200
    return [session["id"] for session in sessions]


def test_new_chat_three_times_leaves_no_empty_session(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    server.wait_run_finished(server.start_run(session_id, "an earlier chat")["run_id"])
    page = new_page()
    open_session(page, server, session_id)
    for _ in range(3):
        page.get_by_role("button", name="Start a new chat").click()
        page.wait_for_url(f"{server.url}/")
        page.wait_for_selector("[data-testid=welcome]:visible")
        assert page.evaluate("document.activeElement.id") == "composer-input"
    time.sleep(0.3)  # a POST sent by any click would have landed by now
    assert session_ids(server) == [session_id]
    assert page.locator("[data-testid=session-item]").count() == 1
    assert page.inner_text("[data-testid=session-title]") == "New chat"

    run_id = send_message(page, "the first message creates the chat")
    created = [sid for sid in session_ids(server) if sid != session_id]
    assert len(created) == 1
    page.wait_for_url(f"**/s/{created[0]}")
    wait_status(page, run_id, "completed")
    page.wait_for_selector(f"[data-testid=session-item][data-session-id='{created[0]}']")
    assert session_ids(server)[0] == created[0]


def test_new_chat_keeps_a_session_that_is_still_empty(demo_server, new_page):
    """A file attached before the first message needs a session: it is created then, and
    New chat afterwards stays in it instead of leaving it empty behind."""
    server = demo_server
    page = new_page()
    page.goto(f"{server.url}/")
    page.wait_for_selector("[data-testid=composer-input]")
    page.set_input_files("[data-testid=file-input]", files=[
        {"name": "first.png", "mimeType": "image/png", "buffer": png_bytes()}])
    page.wait_for_selector("[data-testid=composer-attachments] [data-testid=attachment]:not(.attachment-pending)")
    (created,) = session_ids(server)
    page.wait_for_url(f"**/s/{created}")
    page.click(NEW_CHAT)
    page.click(NEW_CHAT)
    assert page.url.endswith(f"/s/{created}")
    assert session_ids(server) == [created]
    assert page.locator("[data-testid=composer-attachments] [data-testid=attachment]").count() == 1
    run_id = send_message(page, "")
    status, view, _ = server.api("GET", f"/api/sessions/{created}")
    assert [message["role"] for message in view["messages"]] == ["user", "assistant"]
    assert view["messages"][0]["run_id"] == run_id
    assert view["messages"][0]["attachments"][0]["name"] == "first.png"


def seed_sessions(data_dir, count: int) -> list:
    """``count`` sessions written as their metadata files, the on-disk format of the store."""
    sessions_dir = data_dir / "sessions"
    sessions_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = time.time()
    ids = []
    for index in range(count):
        session_id = f"seeded{index:05d}"
        meta = {"id": session_id, "title": f"Seeded chat {index}", "created_at": now - index, "updated_at": now - index}
        path = sessions_dir / f"{session_id}.json"
        path.write_text(json.dumps(meta))
        path.chmod(0o600)
        ids.append(session_id)
    return ids


ROW_COUNT = "() => document.querySelectorAll('[data-testid=session-item]').length"


def test_thousands_of_sessions_draw_a_bounded_list(server_factory, tmp_path, new_page):
    data_dir = tmp_path / "var"
    ids = seed_sessions(data_dir, 3000)
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "20"}, data_dir=data_dir)
    page = new_page()
    page.goto(f"{server.url}/s/{ids[0]}")
    page.wait_for_selector(f"[data-testid=session-item][data-session-id='{ids[0]}']")
    first = page.evaluate(ROW_COUNT)
    assert 0 < first <= 200, first
    titles = page.locator("[data-testid=session-item] .session-name").all_inner_texts()
    assert titles == [f"Seeded chat {index}" for index in range(first)]  # newest first

    # activated where it is (scrolling it into view would load more by itself, below)
    page.get_by_role("button", name=f"Show {min(first, 3000 - first)} more chats").dispatch_event("click")
    page.wait_for_function(f"() => ({ROW_COUNT})() > {first}")
    second = page.evaluate(ROW_COUNT)
    assert second == 2 * first
    # scrolling to the end of the list brings more rows without a click
    page.evaluate("() => document.querySelector('.session-list-wrap').scrollTo(0, 1e9)")
    page.wait_for_function(f"() => ({ROW_COUNT})() > {second}")
    assert page.evaluate(ROW_COUNT) <= 3000 // 2

    # a running turn and the periodic refresh patch rows in place: no row is rebuilt
    page.evaluate("""() => {
        window.removedRows = 0;
        new MutationObserver((records) => {
            for (const record of records) window.removedRows += record.removedNodes.length;
        }).observe(document.querySelector('[data-testid=session-list]'), { childList: true });
    }""")
    run_id = send_message(page, "stream while three thousand chats are listed")
    wait_streamed(page, run_id, min_chars=200)
    page.wait_for_selector(f"[data-testid=session-item][data-session-id='{ids[0]}'] [data-testid=session-running]:visible")
    wait_status(page, run_id, "completed")
    page.wait_for_selector(f"[data-testid=session-item][data-session-id='{ids[0]}'] [data-testid=session-running]",
                           state="hidden")
    assert page.evaluate("window.removedRows") == 0

    # and the list still answers at once: opening a session from it
    page.click(f"[data-testid=session-item][data-session-id='{ids[5]}'] a")
    page.wait_for_url(f"**/s/{ids[5]}")
    page.wait_for_selector(f"[data-testid=session-item][data-session-id='{ids[5]}'] a[aria-current=page]")
    assert page.locator("[data-testid=session-item] a[aria-current=page]").count() == 1
