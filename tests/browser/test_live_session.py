"""A running turn survives switching sessions, reloads, a second viewer, a dropped network,
Stop, and a server restart; the page always ends equal to the journal's fold."""

import time

from tests.browser.conftest import DEMO_ENV, snap
from tests.browser.ui import (
    assert_shows_journal,
    assistant_selector,
    open_session,
    rendered,
    send_message,
    wait_status,
    wait_streamed,
)

CONNECTION = "[data-testid=connection-state]"


def test_switching_away_and_back_mid_run_keeps_everything(demo_server, new_page):
    server = demo_server
    other = server.create_session()
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = send_message(page, "Tell me about switching sessions mid-run")
    before = wait_streamed(page, run_id, min_chars=20, min_tools=1)
    snap(page, "streaming-run")
    assert before["status"] == "running"
    assert page.get_attribute(CONNECTION, "data-state") == "live"

    page.click(f"[data-testid=session-item][data-session-id='{other}'] a")
    page.wait_for_url(f"**/s/{other}")
    page.wait_for_selector("[data-testid=welcome]:visible")
    assert page.locator("[data-testid=message-assistant]").count() == 0
    time.sleep(1.0)  # the run goes on while nobody watches it
    page.click(f"[data-testid=session-item][data-session-id='{session_id}'] a")
    page.wait_for_url(f"**/s/{session_id}")
    page.wait_for_selector(assistant_selector(run_id))
    back = rendered(page, run_id)
    assert back["text"].startswith(before["text"])
    assert len(back["text"]) >= len(before["text"])
    assert len(back["tools"]) >= len(before["tools"])

    wait_status(page, run_id, "completed")
    expected = assert_shows_journal(page, server, session_id, run_id)
    assert len(expected["text"]) > len(back["text"]), "the run was already over when we came back"
    assert page.get_attribute(CONNECTION, "data-state") == "idle"
    snap(page, "finished-run")


def test_reloading_mid_run_rebuilds_the_turn_and_resumes(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    run_id = server.start_run(session_id, "Reload me in the middle of the answer")["run_id"]
    page = new_page()
    open_session(page, server, session_id)
    before = wait_streamed(page, run_id, min_chars=20)
    page.reload()
    page.wait_for_selector(assistant_selector(run_id))
    after = rendered(page, run_id)
    assert after["text"].startswith(before["text"])
    assert after["status"] == "running", "the run finished before the page came back"
    wait_status(page, run_id, "completed")
    assert_shows_journal(page, server, session_id, run_id)


def test_a_second_viewer_sees_the_partial_turn_then_the_live_rest(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    first = new_page()
    open_session(first, server, session_id)
    run_id = send_message(first, "Two viewers, one answer")
    wait_streamed(first, run_id, min_chars=30)

    second = new_page()  # a separate browser context: another device
    second.goto(f"{server.url}/s/{session_id}")
    second.wait_for_selector(assistant_selector(run_id))
    joined = rendered(second, run_id)
    assert joined["status"] == "running"
    assert len(joined["text"]) >= 30, "the partial output was not there at once"
    assert second.locator("[data-testid=message-user]").count() == 1

    wait_status(first, run_id, "completed")
    wait_status(second, run_id, "completed")
    expected = assert_shows_journal(first, server, session_id, run_id)
    assert_shows_journal(second, server, session_id, run_id)
    assert rendered(first, run_id) == rendered(second, run_id)
    assert expected["text"].startswith(joined["text"])


def test_a_run_started_elsewhere_appears_live(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = server.start_run(session_id, "Started from another device")["run_id"]
    wait_streamed(page, run_id, min_chars=10)
    assert page.locator("[data-testid=message-user] [data-testid=message-text]").inner_text() == "Started from another device"
    wait_status(page, run_id, "completed")
    assert_shows_journal(page, server, session_id, run_id)


def test_a_dropped_network_reconnects_from_the_last_cursor(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page()
    stream_requests = []
    page.on("request", lambda request: "/events" in request.url and stream_requests.append(request.url))
    open_session(page, server, session_id)
    run_id = send_message(page, "Survive a network outage")
    wait_streamed(page, run_id, min_chars=10)

    def refuse(route):
        route.abort("internetdisconnected")

    page.route("**/api/sessions/*/events*", refuse)
    page.context.set_offline(True)  # the browser reports the loss; the open stream is dropped
    page.wait_for_selector(f"{CONNECTION}[data-state=reconnecting]", timeout=10_000)
    # Frames received just before the drop are drawn on the next animation frames: let them land.
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    during = rendered(page, run_id)
    time.sleep(2.5)
    assert page.get_attribute(CONNECTION, "data-state") == "reconnecting"
    assert rendered(page, run_id)["text"] == during["text"], "text arrived while offline"
    snap(page, "reconnecting")
    page.context.set_offline(False)
    page.unroute("**/api/sessions/*/events*", refuse)

    final = wait_status(page, run_id, "completed")
    assert final["status"] == "completed"
    assert_shows_journal(page, server, session_id, run_id)
    assert page.get_attribute(CONNECTION, "data-state") == "idle"
    # The stream that resumed asked for exactly what the page had applied when the network went.
    assert stream_requests[-1].endswith(f"cursor={run_id}%3A{during['cursor'].split(':')[1]}")


def test_stop_keeps_the_partial_output_and_marks_the_turn_cancelled(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = send_message(page, "Stop me halfway")
    wait_streamed(page, run_id, min_chars=20)
    page.click("[data-testid=stop-button]")
    shown = wait_status(page, run_id, "cancelled")
    expected = assert_shows_journal(page, server, session_id, run_id)
    assert expected["status"] == "cancelled"
    assert len(shown["text"]) >= 20
    assert "cancelled" in shown["statusLine"]
    assert page.is_visible("[data-testid=send-button]")
    snap(page, "cancelled-turn")


def test_a_server_killed_and_restarted_mid_run_shows_the_turn_interrupted(server_factory, new_page):
    server = server_factory(env=DEMO_ENV)
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = send_message(page, "The server dies while I answer")
    before = wait_streamed(page, run_id, min_chars=20)
    server.kill9()
    page.wait_for_selector(f"{CONNECTION}[data-state=reconnecting]", timeout=10_000)
    restarted = server_factory(env=DEMO_ENV, data_dir=server.data_dir, port=server.port)

    shown = wait_status(page, run_id, "interrupted")
    expected = assert_shows_journal(page, restarted, session_id, run_id)
    assert expected["text"].startswith(before["text"])
    assert shown["statusLine"].startswith("Interrupted")
    assert page.get_attribute(CONNECTION, "data-state") == "idle"
    snap(page, "interrupted-turn")


def test_phone_width_collapses_the_sidebar_into_a_drawer(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    server.wait_run_finished(server.start_run(session_id, "Hello from a phone")["run_id"])
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_session(page, server, session_id)
    page.wait_for_selector("[data-testid=message-assistant][data-status=completed]")
    assert not page.is_visible("[data-testid=session-list]") or page.locator("[data-testid=sidebar]").bounding_box()["x"] < 0
    snap(page, "phone")
    page.click("[data-testid=menu-button]")
    page.wait_for_function("() => document.querySelector('[data-testid=sidebar]').getBoundingClientRect().x >= 0")
    assert page.get_attribute("[data-testid=menu-button]", "aria-expanded") == "true"
    snap(page, "phone-sessions")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('[data-testid=sidebar]').getBoundingClientRect().right <= 0")
