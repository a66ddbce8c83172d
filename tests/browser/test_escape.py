"""Escape stops a running turn from anywhere in the page, unless it was spent on something
else first (closing the phone drawer, leaving a rename)."""

import json
import time

from tests.browser.ui import assert_shows_journal, open_session, rendered, send_message, wait_status, wait_streamed


def journal_types(server, session_id, run_id) -> list:
    return [json.loads(line)["type"] for line in server.journal_path(session_id, run_id).read_text().splitlines()]


def test_escape_in_the_composer_cancels_the_running_turn(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = send_message(page, "Escape me halfway")
    wait_streamed(page, run_id, min_chars=20)
    assert page.evaluate("document.activeElement.id") == "composer-input"
    page.keyboard.press("Escape")
    wait_status(page, run_id, "cancelled")
    assert journal_types(server, session_id, run_id)[-1] == "run.cancelled"
    assert_shows_journal(page, server, session_id, run_id)


def test_escape_elsewhere_in_the_page_cancels_too(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = server.start_run(session_id, "Escape from the transcript")["run_id"]
    wait_streamed(page, run_id, min_chars=10)
    page.click("[data-testid=session-title]")  # focus leaves the composer
    assert page.evaluate("document.activeElement.id") != "composer-input"
    page.keyboard.press("Escape")
    wait_status(page, run_id, "cancelled")
    assert journal_types(server, session_id, run_id)[-1] == "run.cancelled"


def test_escape_that_closes_the_drawer_or_a_rename_does_not_cancel(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_session(page, server, session_id)
    run_id = send_message(page, "Keep running while I look around")
    wait_streamed(page, run_id, min_chars=10)

    page.click("[data-testid=menu-button]")
    page.wait_for_function("() => document.body.classList.contains('drawer-open')")
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.body.classList.contains('drawer-open')")

    page.get_by_role("button", name="Rename session").click()
    page.wait_for_selector("[data-testid=rename-input]:visible")
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=rename-input]", state="hidden")

    time.sleep(0.5)  # a cancel, had one been sent, would be journaled by now
    assert rendered(page, run_id)["status"] == "running"
    assert "run.cancelled" not in journal_types(server, session_id, run_id)

    page.keyboard.press("Escape")  # nothing else to close: this one stops the turn
    wait_status(page, run_id, "cancelled")
    assert journal_types(server, session_id, run_id)[-1] == "run.cancelled"


def test_escape_with_nothing_running_does_nothing(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    run_id = server.start_run(session_id, "already answered")["run_id"]
    server.wait_run_finished(run_id)
    page = new_page()
    cancels = []
    page.on("request", lambda request: "/cancel" in request.url and cancels.append(request.url))
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    page.keyboard.press("Escape")
    time.sleep(0.3)
    assert cancels == []
    assert journal_types(server, session_id, run_id)[-1] == "run.completed"
