"""Branches in the page: Regenerate (Retry after a turn that did not complete), edit and
send again, and the "‹ 1/2 ›" switcher between the versions of a turn, in this tab, after a
reload and on a second device. What the page shows is compared with the server's view."""

import json

import pytest

from tests import provider_streams
from tests.browser.conftest import DEMO_ENV, snap
from tests.browser.ui import (
    assert_shows_journal,
    assistant_selector,
    open_session,
    send_message,
    wait_status,
    wait_streamed,
)
from tests.fake_openai import FakeOpenAI, Stream

FAST_DEMO = {"HERMES_WEB_DEMO_DELAY_MS": "2"}
USER = "[data-testid=message-user]"


@pytest.fixture
def fast_server(server_factory):
    return server_factory(env=FAST_DEMO)


def finished_run(server, session_id, text, **fields) -> str:
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": text, **fields})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    return body["run_id"]


def view(server, session_id, **query) -> dict:
    path = f"/api/sessions/{session_id}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    status, body, _ = server.api("GET", path)
    assert status == 200, body
    return body


def shown_turns(page) -> list:
    """``[(run_id, role, text)]`` of every message on the page, in order."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=messages] > article')].map((node) =>
        [node.dataset.runId, node.dataset.testid.replace('message-', ''),
         node.querySelector('[data-testid=message-text]')?.rawText ?? ''])""")


def view_turns(body) -> list:
    return [[message["run_id"], message["role"], message["text"]] for message in body["messages"]]


def wait_turns(page, body) -> None:
    """Wait until the page shows exactly the messages of the view ``body``."""
    expected = view_turns(body)
    page.wait_for_function("""(expected) => {
        const shown = [...document.querySelectorAll('[data-testid=messages] > article')].map((node) =>
            [node.dataset.runId, node.dataset.testid.replace('message-', ''),
             node.querySelector('[data-testid=message-text]')?.rawText ?? '']);
        return JSON.stringify(shown) === JSON.stringify(expected);
    }""", arg=expected, timeout=30_000)


def version_label(page, run_id) -> str:
    return page.locator(f"{USER}[data-run-id='{run_id}'] [data-testid=version-label]").inner_text()


def visible_regenerate(page) -> list:
    """``[(run_id, aria-label, text)]`` of the Regenerate / Retry buttons shown."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=regenerate]')]
        .filter((button) => !button.hidden)
        .map((button) => [button.closest('[data-run-id]').dataset.runId, button.getAttribute('aria-label'),
                          button.textContent.trim()])""")


def journal_started(server, session_id, run_id) -> dict:
    return json.loads(server.journal_path(session_id, run_id).read_text().splitlines()[0])


def test_regenerate_replaces_the_last_answer_and_offers_both_versions(fast_server, new_page):
    server = fast_server
    session_id = server.create_session()
    first = finished_run(server, session_id, "What is a journal?")
    second = finished_run(server, session_id, "And a cursor?")
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, second, "completed")
    assert visible_regenerate(page) == [[second, "Regenerate answer", "Regenerate"]]
    assert page.locator("[data-testid=versions]:visible").count() == 0

    page.get_by_role("button", name="Regenerate answer").click()
    page.wait_for_function("(run) => !document.querySelector(`[data-run-id='${run}']`)", arg=second)
    latest = view(server, session_id)
    new_run = latest["messages"][-1]["run_id"]
    assert new_run != second and latest["messages"][-2]["replaces"] == second
    assert latest["messages"][-2]["text"] == "And a cursor?"  # the same turn sent again
    wait_status(page, new_run, "completed")
    wait_turns(page, view(server, session_id))
    assert_shows_journal(page, server, session_id, new_run)
    assert journal_started(server, session_id, new_run)["replaces"] == second
    assert version_label(page, new_run) == "2/2"
    assert visible_regenerate(page) == [[new_run, "Regenerate answer", "Regenerate"]]

    page.get_by_role("button", name="Previous version").click()
    page.wait_for_selector(f"{USER}[data-run-id='{second}']")
    wait_turns(page, view(server, session_id, branch=second))
    assert [run for run, _, _ in shown_turns(page)] == [first, first, second, second]
    assert version_label(page, second) == "1/2"
    assert page.evaluate("location.search") == f"?branch={second}"
    assert visible_regenerate(page) == []  # an older version is for reading
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Next version"

    page.keyboard.press("Enter")  # the focused Next
    page.wait_for_selector(f"{USER}[data-run-id='{new_run}']")
    wait_turns(page, view(server, session_id))
    assert page.evaluate("location.search") == ""
    assert version_label(page, new_run) == "2/2"


def test_retry_after_a_stopped_turn(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    run_id = send_message(page, "Stop me and try again")
    wait_streamed(page, run_id, min_chars=10)
    assert visible_regenerate(page) == []  # nothing to regenerate while the turn runs
    page.click("[data-testid=stop-button]")
    wait_status(page, run_id, "cancelled")
    assert visible_regenerate(page) == [[run_id, "Retry answer", "Retry"]]

    page.get_by_role("button", name="Retry answer").click()
    page.wait_for_function("(run) => !document.querySelector(`[data-run-id='${run}']`)", arg=run_id)
    new_run = page.locator(USER).last.get_attribute("data-run-id")
    assert new_run != run_id
    page.wait_for_selector(f"{assistant_selector(new_run)}[data-status=running]")
    assert visible_regenerate(page) == []
    assert page.get_by_role("button", name="Edit message").is_disabled()
    wait_status(page, new_run, "completed")
    assert_shows_journal(page, server, session_id, new_run)
    assert [text for _, role, text in shown_turns(page) if role == "user"] == ["Stop me and try again"]
    assert version_label(page, new_run) == "2/2"
    assert visible_regenerate(page) == [[new_run, "Regenerate answer", "Regenerate"]]


@pytest.fixture
def provider():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def test_retry_after_a_failed_turn(server_factory, provider, new_page):
    server = server_factory(env={**FAST_DEMO, "HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "tiny"})
    session_id = server.create_session()
    script = provider.script(status=500, error_body={"error": {"message": "the model is overloaded"}})
    failed = finished_run(server, session_id, script, agent="openai")
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, failed, "failed")
    assert visible_regenerate(page) == [[failed, "Retry answer", "Retry"]]
    # The provider recovers: the same message is answered this time.
    provider.scripts[script.split()[-1]] = [Stream(provider_streams.openai_text(["It works ", "now."], ()))]
    page.get_by_role("button", name="Retry answer").click()
    page.wait_for_function("(run) => !document.querySelector(`[data-run-id='${run}']`)", arg=failed)
    new_run = page.locator(USER).last.get_attribute("data-run-id")
    shown = wait_status(page, new_run, "completed")
    assert shown["text"] == "It works now."
    assert shown["statusLine"] == ""
    assert_shows_journal(page, server, session_id, new_run)
    wait_turns(page, view(server, session_id))


def test_a_refused_regenerate_is_a_notice(fast_server, new_page):
    server = fast_server
    session_id = server.create_session()
    run_id = finished_run(server, session_id, "Regenerate me twice")
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    # Another device started a turn the stream has not brought yet: the server says 409.
    page.route(f"**/api/sessions/{session_id}/runs", lambda route: route.fulfill(
        status=409, content_type="application/json",
        body=json.dumps({"error": {"code": "run_active", "message": "busy", "run_id": run_id}})))
    page.get_by_role("button", name="Regenerate answer").click()
    page.wait_for_selector("[data-testid=notice]:has-text('already running')")
    page.unroute(f"**/api/sessions/{session_id}/runs")
    page.route(f"**/api/sessions/{session_id}/runs", lambda route: route.fulfill(
        status=400, content_type="application/json",
        body=json.dumps({"error": {"code": "invalid_replaces", "message": "replaces must name a finished run"}})))
    page.get_by_role("button", name="Regenerate answer").click()
    page.wait_for_selector("[data-testid=notice]:has-text('changed elsewhere')")
    wait_turns(page, view(server, session_id))
    assert visible_regenerate(page) == [[run_id, "Regenerate answer", "Regenerate"]]


def test_editing_a_past_message_replaces_the_later_turns(fast_server, new_page):
    server = fast_server
    session_id = server.create_session()
    first = finished_run(server, session_id, "first question")
    second = finished_run(server, session_id, "second question")
    third = finished_run(server, session_id, "third question")
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, third, "completed")
    message = page.locator(f"{USER}[data-run-id='{second}']")

    message.get_by_role("button", name="Edit message").click()
    box = message.locator("[data-testid=edit-input]")
    assert box.input_value() == "second question"
    assert page.evaluate("document.activeElement.dataset.testid") == "edit-input"
    message.get_by_role("button", name="Cancel edit").click()
    assert message.locator("[data-testid=edit-form]").count() == 0
    assert message.locator("[data-testid=message-text]").inner_text() == "second question"

    message.get_by_role("button", name="Edit message").click()
    box.fill("second question,")
    box.press("Shift+Enter")
    box.type("edited")
    assert box.input_value() == "second question,\nedited"
    requests = []
    page.on("request", lambda request: request.method == "POST" and "/runs" in request.url and requests.append(request.post_data_json))
    box.press("Enter")
    page.wait_for_function("(run) => !document.querySelector(`[data-run-id='${run}']`)", arg=third)
    latest = view(server, session_id)
    edited = latest["messages"][-1]["run_id"]
    assert requests == [{"text": "second question,\nedited", "replaces": second, "attachments": []}]
    wait_status(page, edited, "completed")
    wait_turns(page, view(server, session_id))
    assert [text for _, role, text in shown_turns(page) if role == "user"] == ["first question", "second question,\nedited"]
    assert_shows_journal(page, server, session_id, edited)
    assert version_label(page, edited) == "2/2"
    assert page.locator(f"{USER}[data-run-id='{first}'] [data-testid=versions]").is_hidden()
    snap(page, "edited-turn")

    page.get_by_role("button", name="Previous version").click()
    page.wait_for_selector(f"{USER}[data-run-id='{third}']")
    wait_turns(page, view(server, session_id, branch=second))
    assert [text for _, role, text in shown_turns(page) if role == "user"] == ["first question", "second question", "third question"]
    assert version_label(page, second) == "1/2"
    assert page.get_by_role("button", name="Previous version").is_disabled()
    assert all(button.is_disabled() for button in page.get_by_role("button", name="Edit message").all())

    page.get_by_role("button", name="Next version").click()
    page.wait_for_selector(f"{USER}[data-run-id='{edited}']")
    wait_turns(page, view(server, session_id))
    assert version_label(page, edited) == "2/2"


def test_versions_survive_a_reload_and_a_send_continues_the_latest(fast_server, new_page):
    server = fast_server
    session_id = server.create_session()
    original = finished_run(server, session_id, "Name a colour")
    edited = finished_run(server, session_id, "Name a fruit", replaces=original)
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, edited, "completed")
    assert version_label(page, edited) == "2/2"
    page.reload()
    wait_status(page, edited, "completed")
    assert version_label(page, edited) == "2/2"

    page.get_by_role("button", name="Previous version").click()
    wait_status(page, original, "completed")
    wait_turns(page, view(server, session_id, branch=original))
    page.reload()  # the address names the version shown
    wait_status(page, original, "completed")
    wait_turns(page, view(server, session_id, branch=original))
    assert version_label(page, original) == "1/2"

    # Sending from an older version continues the latest branch.
    page.fill("[data-testid=composer-input]", "Now a vegetable")
    page.press("[data-testid=composer-input]", "Enter")
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=message-user]')].some((node) =>
        !node.dataset.pending && node.dataset.runId && node.textContent.includes('Now a vegetable'))""")
    run_id = page.locator(USER).last.get_attribute("data-run-id")
    wait_status(page, run_id, "completed")
    latest = view(server, session_id)
    assert [message["run_id"] for message in latest["messages"]] == [edited, edited, run_id, run_id]
    wait_turns(page, latest)
    assert page.evaluate("location.search") == ""
    assert version_label(page, edited) == "2/2"
    assert_shows_journal(page, server, session_id, run_id)


def test_a_second_device_sees_a_regenerate_replace_the_old_answer(demo_server, new_page):
    server = demo_server
    session_id = server.create_session()
    first = server.start_run(session_id, "Regenerate me on another device")["run_id"]
    other = new_page()  # another device, open while the first answer streams
    open_session(other, server, session_id)
    wait_streamed(other, first, min_chars=5, min_tools=0)
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, first, "completed")
    wait_status(other, first, "completed")

    page.get_by_role("button", name="Regenerate answer").click()
    other.wait_for_function("(run) => !document.querySelector(`[data-run-id='${run}']`)", arg=first)
    new_run = other.locator(USER).last.get_attribute("data-run-id")
    assert new_run != first
    wait_streamed(other, new_run, min_chars=5, min_tools=0)
    assert other.locator(USER).count() == 1 and other.locator("[data-testid=message-assistant]").count() == 1
    assert version_label(other, new_run) == "2/2"
    wait_status(other, new_run, "completed")
    assert_shows_journal(other, server, session_id, new_run)
    wait_turns(other, view(server, session_id))
    assert visible_regenerate(other) == [[new_run, "Regenerate answer", "Regenerate"]]
    # The other device pages back to the first answer, as the view has it.
    other.get_by_role("button", name="Previous version").click()
    wait_status(other, first, "completed")
    assert_shows_journal(other, server, session_id, first)
    assert version_label(other, first) == "1/2"


def test_escape_in_the_edit_box_cancels_only_the_edit(server_factory, new_page):
    server = server_factory(env=DEMO_ENV)
    session_id = server.create_session()
    first = finished_run(server, session_id, "Edit me, then change your mind")
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, first, "completed")
    message = page.locator(f"{USER}[data-run-id='{first}']")
    message.get_by_role("button", name="Edit message").click()
    message.locator("[data-testid=edit-input]").fill("a draft")
    running = server.start_run(session_id, "Meanwhile, from another device")["run_id"]
    wait_streamed(page, running, min_chars=5, min_tools=0)
    assert message.get_by_role("button", name="Send edited message").is_disabled()
    message.locator("[data-testid=edit-input]").press("Escape")
    assert message.locator("[data-testid=edit-form]").count() == 0
    assert message.locator("[data-testid=message-text]").inner_text() == "Edit me, then change your mind"
    assert message.get_by_role("button", name="Edit message").is_disabled()
    wait_status(page, running, "completed")
    types = [json.loads(line)["type"] for line in server.journal_path(session_id, running).read_text().splitlines()]
    assert "run.cancelled" not in types
    assert_shows_journal(page, server, session_id, running)
