"""What a finished answer offers: highlighted code with a copy button that copies the code
alone, a copy action on every message (its Markdown source), and the time of each
message with the full date on hover."""

import datetime

import pytest

from tests.browser.conftest import snap
from tests.browser.ui import assert_shows_journal, assistant_selector, journal_turn, open_session, wait_status
from tests.fake_openai import FakeOpenAI

ANSWER = (
    "Use a **generator**:\n\n"
    "```python\n"
    "def squares(limit):\n"
    "    # one at a time\n"
    "    for n in range(limit):\n"
    "        yield n * n\n"
    "```\n\n"
    "Then run it:\n\n"
    "```bash\n"
    "python3 -c 'print(1)'\n"
    "```\n"
)
QUESTION = "How do I *lazily* build `squares`?"


@pytest.fixture
def provider():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def answered(server_factory, provider, new_page):
    """A session whose one run answered ANSWER; a page on it that may use the clipboard."""
    server = server_factory(env={"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "tiny"})
    session_id = server.create_session()
    script = provider.script(content=[ANSWER[i:i + 7] for i in range(0, len(ANSWER), 7)])
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": script, "agent": "openai"})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    page = new_page(locale="en-US", timezone_id="UTC")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    open_session(page, server, session_id)
    wait_status(page, body["run_id"], "completed")
    return server, session_id, body["run_id"], page


def clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def copy_with(page, button) -> str:
    """Click a copy button, wait until it reports the copy, and read the clipboard."""
    button.click()
    page.wait_for_function("(button) => button.dataset.copied === 'true'", arg=button.element_handle())
    return clipboard(page)


def test_code_blocks_are_highlighted(answered):
    server, session_id, run_id, page = answered
    blocks = page.locator(f"{assistant_selector(run_id)} [data-testid=code-block]")
    assert blocks.count() == 2
    python = blocks.nth(0)
    assert python.locator(".code-language").inner_text() == "python"
    keywords = python.locator(".hljs-keyword").all_inner_texts()
    assert {"def", "for", "in", "yield"} <= set(keywords)
    assert python.locator(".hljs-comment").inner_text() == "# one at a time"
    # highlighted tokens have their own colour, unlike the plain text around them
    colours = page.evaluate("""(selector) => {
        const block = document.querySelectorAll(selector)[0];
        const colour = (query) => getComputedStyle(block.querySelector(query)).color;
        return [colour('.hljs-keyword'), colour('.hljs-comment'), colour('pre code')];
    }""", f"{assistant_selector(run_id)} [data-testid=code-block]")
    assert len(set(colours)) == 3
    assert_shows_journal(page, server, session_id, run_id)
    snap(page, "code-blocks")


def test_the_code_copy_button_copies_the_code_alone(answered):
    _, _, run_id, page = answered
    block = page.locator(f"{assistant_selector(run_id)} [data-testid=code-block]").nth(0)
    button = block.get_by_role("button", name="Copy python code")
    assert copy_with(page, button) == (
        "def squares(limit):\n    # one at a time\n    for n in range(limit):\n        yield n * n")
    assert button.inner_text() == "Copied"
    assert page.inner_text("[data-testid=live-status]") == "Copied to the clipboard."
    bash = page.locator(f"{assistant_selector(run_id)} [data-testid=code-block]").nth(1)
    assert copy_with(page, bash.get_by_role("button", name="Copy bash code")) == "python3 -c 'print(1)'"
    page.wait_for_function("(button) => button.innerText === 'Copy'", arg=button.element_handle())


def test_every_message_copies_its_markdown_source(answered):
    server, session_id, run_id, page = answered
    assistant = page.locator(assistant_selector(run_id))
    assert copy_with(page, assistant.get_by_role("button", name="Copy message")) == ANSWER
    assert ANSWER == journal_turn(server, session_id, run_id)["text"]
    user = page.locator(f"[data-testid=message-user][data-run-id='{run_id}']")
    copied = copy_with(page, user.get_by_role("button", name="Copy message"))
    assert copied.startswith("script ") and copied == user.locator("[data-testid=message-text]").inner_text()


def test_a_user_message_in_markdown_is_copied_as_typed(answered):
    server, session_id, _, page = answered
    run_id = server.start_run(session_id, QUESTION)["run_id"]  # the demo agent answers it
    server.wait_run_finished(run_id)
    user = page.locator(f"[data-testid=message-user][data-run-id='{run_id}']")
    user.wait_for()
    wait_status(page, run_id, "completed")
    assert copy_with(page, user.get_by_role("button", name="Copy message")) == QUESTION


def iso_utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def test_each_message_shows_its_time_and_the_full_date_on_hover(answered):
    server, session_id, run_id, page = answered
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    user, assistant = view["messages"]
    times = {
        "user": page.locator(f"[data-testid=message-user][data-run-id='{run_id}'] [data-testid=message-time]"),
        "assistant": page.locator(f"{assistant_selector(run_id)} [data-testid=message-time]"),
    }
    for role, seconds in (("user", user["created_at"]), ("assistant", assistant["finished_at"])):
        shown = times[role]
        moment = iso_utc(seconds)
        # the machine-readable instant, to the millisecond
        assert shown.get_attribute("datetime") == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # today's messages show the time of day alone (the page runs in UTC, en-US)
        assert shown.inner_text() == moment.strftime("%I:%M %p")
        # hovering shows the whole date: weekday, month, day, year and time
        title = shown.get_attribute("title")
        for part in (moment.strftime("%A"), moment.strftime("%B"), str(moment.day), str(moment.year), moment.strftime("%M:%S")):
            assert part in title, (part, title)


def test_older_messages_show_their_date(new_page, server):
    """The short form follows the message's age: the time today, the date before."""
    page = new_page(locale="en-US", timezone_id="UTC")
    page.goto(f"{server.url}/")
    page.wait_for_selector("[data-testid=composer-input]")
    now = datetime.datetime(2025, 6, 15, 18, 30, tzinfo=datetime.timezone.utc)
    cases = {
        "today": datetime.datetime(2025, 6, 15, 9, 5, tzinfo=datetime.timezone.utc),
        "yesterday": datetime.datetime(2025, 6, 14, 23, 59, tzinfo=datetime.timezone.utc),
        "this year": datetime.datetime(2025, 3, 3, 14, 5, tzinfo=datetime.timezone.utc),
        "last year": datetime.datetime(2024, 12, 31, 8, 0, tzinfo=datetime.timezone.utc),
    }
    shown = page.evaluate(
        """async ([now, cases]) => {
            const { shortTime } = await import('/static/render.js');
            return Object.fromEntries(Object.entries(cases).map(([name, seconds]) => [name, shortTime(seconds, new Date(now * 1000))]));
        }""",
        [now.timestamp(), {name: moment.timestamp() for name, moment in cases.items()}],
    )
    assert shown == {
        "today": "09:05 AM",
        "yesterday": "Yesterday 11:59 PM",
        "this year": "Mar 3, 02:05 PM",
        "last year": "Dec 31, 2024",
    }
