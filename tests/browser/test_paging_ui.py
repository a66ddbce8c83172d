"""Long sessions in the page: a session opens with its last page of runs, scrolling to the
top puts the older pages above in order, without duplicates and without moving what is
on screen, and a running turn goes on streaming meanwhile."""

import time

from tests.browser.conftest import DEMO_ENV
from tests.browser.ui import assert_shows_journal, import_chat, open_session, send_message, wait_status

USER = "[data-testid=message-user]"
PAGE_RUNS = 50


def import_session(server, turns: int) -> str:
    """A session of ``turns`` finished runs: ``question N`` answered by ``answer N``."""
    return import_chat(server, [(f"question {index:03d}", f"answer {index:03d}\n\nA second paragraph, so the turn has some height.")
                                for index in range(turns)], title="A long chat")


def user_texts(page) -> list:
    return page.eval_on_selector_all(USER, "(nodes) => nodes.map((node) => node.querySelector('.user-text').textContent)")


def scroll_to_top(page) -> dict:
    """Scroll the transcript to its top; the message then at the top and where it is."""
    return page.evaluate("""() => {
        const box = document.getElementById('transcript');
        box.scrollTop = 0;
        const node = document.querySelector('[data-testid=messages] > .message');
        return {id: node.dataset.messageId, top: node.getBoundingClientRect().top - box.getBoundingClientRect().top};
    }""")


def offset_of(page, message_id: str) -> float:
    return page.evaluate("""(id) => {
        const box = document.getElementById('transcript');
        const node = document.querySelector(`[data-message-id="${id}"]`);
        return node.getBoundingClientRect().top - box.getBoundingClientRect().top;
    }""", message_id)


def wait_users(page, count: int) -> None:
    page.wait_for_function("(count) => document.querySelectorAll('[data-testid=message-user]').length === count",
                           arg=count, timeout=30_000)


def test_a_long_session_opens_with_its_last_page_and_scrolling_up_adds_the_older_ones_in_order(server, new_page):
    turns = 2 * PAGE_RUNS + 10
    session_id = import_session(server, turns)
    page = new_page()
    open_session(page, server, session_id)
    wait_users(page, PAGE_RUNS)
    assert user_texts(page) == [f"question {index:03d}" for index in range(turns - PAGE_RUNS, turns)]
    assert page.locator("[data-testid=message-assistant]").count() == PAGE_RUNS
    # Opened at the bottom: nothing older is fetched until the user scrolls up.
    time.sleep(0.5)
    assert page.locator(USER).count() == PAGE_RUNS

    for shown in (2 * PAGE_RUNS, turns):
        top = scroll_to_top(page)
        wait_users(page, shown)
        page.wait_for_selector("[data-testid=older-status]", state="hidden")
        # What was at the top of the screen is still there: the page went above it.
        assert abs(offset_of(page, top["id"]) - top["top"]) <= 2
        assert user_texts(page) == [f"question {index:03d}" for index in range(turns - shown, turns)]

    ids = page.eval_on_selector_all("[data-testid=messages] > .message", "(nodes) => nodes.map((node) => node.dataset.messageId)")
    assert len(ids) == len(set(ids)) == 2 * turns
    scroll_to_top(page)
    time.sleep(0.5)  # the first run is shown: nothing more is asked for
    assert page.locator(USER).count() == turns
    assert page.locator("[data-testid=notice]").is_hidden()


def test_a_turn_streams_on_while_older_pages_load(server_factory, new_page):
    server = server_factory(env=DEMO_ENV)
    session_id = import_session(server, PAGE_RUNS + 20)
    page = new_page()
    open_session(page, server, session_id)
    wait_users(page, PAGE_RUNS)
    send_message(page, "a new question at the end of a long chat")
    mine = page.locator(f"{USER}:not([data-pending])", has_text="a new question at the end of a long chat")
    mine.wait_for()
    run_id = mine.get_attribute("data-run-id")
    page.wait_for_selector("[data-testid=connection-state][data-state=live]")
    scroll_to_top(page)
    wait_users(page, PAGE_RUNS + 20 + 1)
    assert page.locator("[data-testid=connection-state]").get_attribute("data-state") == "live"
    wait_status(page, run_id, "completed", timeout=60_000)
    assert_shows_journal(page, server, session_id, run_id)
    texts = user_texts(page)
    assert texts[:-1] == [f"question {index:03d}" for index in range(PAGE_RUNS + 20)]
    assert texts[-1] == "a new question at the end of a long chat"
    # The fold holds the whole branch in order: what regenerate and edit read from it.
    assert page.evaluate("() => document.querySelectorAll('[data-testid=messages] > .message').length") == 2 * (PAGE_RUNS + 21)


def test_a_page_of_a_branch_that_changed_loads_the_last_page_again(server, new_page):
    turns = PAGE_RUNS + 10
    session_id = import_session(server, turns)
    page = new_page()
    open_session(page, server, session_id)
    wait_users(page, PAGE_RUNS)
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")  # the last page, as the page has it
    first_shown = next(message["run_id"] for message in view["messages"] if message["role"] == "user")
    # Another tab edits the first message shown here: the page's `before` is off the branch now.
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs",
                                 {"text": "an edited question", "replaces": first_shown})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    wait_status(page, body["run_id"], "completed")
    scroll_to_top(page)
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=message-user] .user-text')]
        .map((node) => node.textContent)[0] === 'question 000'""", timeout=30_000)
    texts = user_texts(page)
    assert texts == [f"question {index:03d}" for index in range(turns - PAGE_RUNS)] + ["an edited question"]
    assert page.locator("[data-testid=notice]").is_hidden()


def test_the_last_page_with_the_older_pages_prepended_folds_like_the_whole_view(server, new_page):
    """SessionFold.prependPage: the page's fold of page + older pages is the whole view's, cursor included."""
    session_id = import_session(server, PAGE_RUNS + 30)
    server.wait_run_finished(server.start_run(session_id, "one more, run through the demo agent")["run_id"])
    page = new_page()
    open_session(page, server, session_id)
    same = page.evaluate("""async (sessionId) => {
        const { SessionFold } = await import('/static/fold.js');
        const get = async (query) => (await fetch(`/api/sessions/${sessionId}${query}`)).json();
        const whole = await get('?limit=200');
        let view = await get('?limit=50');
        const fold = new SessionFold(view);
        let pages = 1;
        while (view.has_more) {
            view = await get(`?limit=50&before=${view.before}`);
            fold.prependPage(view.messages);
            pages += 1;
        }
        const expected = new SessionFold(whole);
        return {pages, same: JSON.stringify(fold.messages()) === JSON.stringify(expected.messages()),
                cursor: fold.cursorText === expected.cursorText, count: fold.messages().length};
    }""", session_id)
    assert same == {"pages": 2, "same": True, "cursor": True, "count": 2 * (PAGE_RUNS + 31)}
