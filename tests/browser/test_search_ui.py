"""The sidebar's search: results in place of the session list, the matches highlighted as
text, only the newest query's answer shown, and a result opening its chat at the match
(older pages loaded until it is there)."""

from urllib.parse import parse_qs, urlparse

from tests.browser.ui import import_chat, open_session

BOX = "[data-testid=search-input]"
RESULT = "[data-testid=search-result]"


def filler(count: int, word: str = "filler") -> list:
    return [(f"{word} question {index}", f"{word} answer {index}\n\nWith a second paragraph.") for index in range(count)]


def result_sessions(page) -> list:
    return page.eval_on_selector_all(RESULT, "(nodes) => nodes.map((node) => node.dataset.sessionId)")


def test_a_result_opens_its_chat_at_the_match_loading_older_pages(server, new_page):
    turns = filler(70)
    turns[4] = ("where does the zebra quokka live?", "On an island, mostly.")
    far = import_chat(server, turns, title="Animals")
    here = import_chat(server, filler(2, "other"), title="Something else")
    page = new_page()
    open_session(page, server, here)
    page.fill(BOX, "Zebra Quokka")
    page.wait_for_selector(f"{RESULT}[data-session-id='{far}']")
    assert page.locator("[data-testid=session-list]").is_hidden()
    result = page.locator(f"{RESULT}[data-session-id='{far}']")
    # The match is marked as it is written in the message, and the snippet is plain text.
    assert result.locator("mark").all_text_contents() == ["zebra quokka"]
    assert "where does the zebra quokka live?" in result.locator(".search-snippet").text_content()
    run_id = result.get_attribute("data-run-id")
    assert run_id

    result.click()
    page.wait_for_url(f"**/s/{far}")
    user = page.locator(f"[data-testid=message-user][data-run-id='{run_id}']")
    user.wait_for(timeout=30_000)  # on the second page back: loaded for it
    page.wait_for_function("""(runId) => {
        const node = document.querySelector(`[data-testid=message-user][data-run-id="${runId}"]`);
        const box = document.getElementById('transcript').getBoundingClientRect();
        const rect = node.getBoundingClientRect();
        return rect.top >= box.top - 1 && rect.bottom <= box.bottom + 1;
    }""", arg=run_id, timeout=30_000)
    assert "is-found" in (user.get_attribute("class") or "")
    assert user.locator(".user-text").text_content() == "where does the zebra quokka live?"
    # The results stay for another pick; Escape brings the list back.
    assert page.locator(RESULT).count() >= 1
    page.focus(BOX)
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=session-list]", state="visible")
    assert page.input_value(BOX) == ""
    assert page.locator("[data-testid=search-pane]").is_hidden()


def test_only_the_newest_query_is_answered(server, new_page):
    apple = import_chat(server, [("a recipe for apple pie", "Bake it.")], title="Baking")
    apricot = import_chat(server, [("a recipe for apricot jam", "Boil it.")], title="Preserves")
    page = new_page()
    page.goto(server.url)
    page.wait_for_selector("[data-testid=session-item]")
    held = []

    def hold_apple(route):
        query = parse_qs(urlparse(route.request.url).query)["q"][0]
        if query == "apple":
            held.append(route)  # answered only after the newer query was
        else:
            route.continue_()

    page.route("**/api/search?*", hold_apple)
    page.fill(BOX, "apple")
    page.wait_for_timeout(400)  # past the debounce: the request for "apple" is out, and held
    assert len(held) == 1
    page.fill(BOX, "")
    page.type(BOX, "apricot", delay=15)  # fast typing: one request, for the last text
    page.wait_for_selector(f"{RESULT}[data-session-id='{apricot}']")
    for route in held:
        try:
            route.continue_()  # the page aborted it already; if it still answers, it is dropped
        except Exception:
            pass
    page.wait_for_timeout(500)
    assert result_sessions(page) == [apricot]
    assert apple not in result_sessions(page)
    assert page.text_content("[data-testid=search-status]") == "1 match"


def test_keyboard_no_matches_a_refused_query_and_server_text_kept_as_text(server, new_page):
    target = import_chat(server, [("<img src=x onerror=alert(1)> what does onerror do?", "It runs code.")],
                         title="Markup")
    page = new_page()
    page.goto(server.url)
    page.wait_for_selector("[data-testid=session-item]")
    page.fill(BOX, "onerror")
    page.wait_for_selector(RESULT)
    assert page.locator("[data-testid=search-results] img").count() == 0
    assert "<img src=x" in page.locator(RESULT).first.text_content()

    page.focus(BOX)
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.testid") == "search-result"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/s/{target}")

    page.fill(BOX, "nothing like this anywhere")
    page.wait_for_selector("[data-testid=search-status]:has-text('No matches')")
    assert page.locator(RESULT).count() == 0

    page.fill(BOX, "x" * 201)  # the server takes 1 to 200 characters
    page.wait_for_selector("[data-testid=search-status][data-kind=hint]")
    assert "shorter" in page.text_content("[data-testid=search-status]")
    assert page.locator("[data-testid=notice]").is_hidden()

    page.fill(BOX, "   ")  # only spaces: nothing to search, the list is back
    page.wait_for_selector("[data-testid=session-list]", state="visible")


def test_a_match_in_a_replaced_version_opens_the_branch_through_it(server_factory, new_page):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "1"})
    session_id = server.create_session()
    first = server.start_run(session_id, "Name a colour like vermilion")["run_id"]
    server.wait_run_finished(first)
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "Name a fruit", "replaces": first})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    page = new_page()
    open_session(page, server, session_id)
    page.wait_for_selector("[data-testid=message-user] .user-text:has-text('Name a fruit')")
    page.fill(BOX, "vermilion")
    result = page.locator(f"{RESULT}[data-run-id='{first}']")
    result.wait_for()
    result.click()
    user = page.locator(f"[data-testid=message-user][data-run-id='{first}']")
    user.wait_for(timeout=30_000)
    assert user.locator(".user-text").text_content() == "Name a colour like vermilion"
    assert page.locator("[data-testid=message-user] .user-text:has-text('Name a fruit')").count() == 0
    assert parse_qs(urlparse(page.url).query)["branch"] == [first]
    assert page.get_by_role("button", name="Next version").is_enabled()
