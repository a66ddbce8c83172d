"""Export and import in the page: the header's menu downloads a chat as Markdown or JSON,
and Import chat turns that JSON back into a new chat with the same messages."""

import json

from tests.browser.ui import ASSISTANT, export_document, open_session

USER = "[data-testid=message-user]"


def whole_view(server, session_id: str) -> dict:
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}?limit=200")
    assert status == 200
    return view


def download(page, name: str):
    page.get_by_role("button", name="Export chat").click()
    with page.expect_download() as info:
        page.get_by_role("link", name=name).click()
    return info.value


def shown_texts(page) -> list:
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=messages] > .message')].map((node) =>
        node.dataset.testid === 'message-user' ? node.querySelector('.user-text').textContent
            : node.querySelector('[data-testid=message-text]').rawText)""")


def test_export_both_formats_and_import_the_json_back(server, new_page, tmp_path):
    session_id = server.create_session()
    for text in ("first question about exports", "second question, with **markdown**"):
        server.wait_run_finished(server.start_run(session_id, text)["run_id"])
    view = whole_view(server, session_id)
    page = new_page()
    open_session(page, server, session_id)
    page.wait_for_selector(f"{ASSISTANT}[data-status=completed] >> nth=1")

    markdown = download(page, "Export as Markdown")
    assert markdown.suggested_filename.endswith(".md")
    markdown.save_as(tmp_path / "chat.md")
    text = (tmp_path / "chat.md").read_text()
    for message in view["messages"]:
        first_line = message["text"].strip().splitlines()[0]
        assert first_line in text, first_line
    assert page.locator("[data-testid=export-menu]").is_hidden()

    exported = download(page, "Export as JSON")
    assert exported.suggested_filename.endswith(".json")
    exported.save_as(tmp_path / "chat.json")
    document = json.loads((tmp_path / "chat.json").read_text())
    assert document["format"] == "hermes_web.session"
    assert [(m["role"], m["text"]) for m in document["messages"]] == [(m["role"], m["text"]) for m in view["messages"]]

    page.get_by_role("button", name="Import chat").wait_for()
    page.set_input_files("[data-testid=import-input]", str(tmp_path / "chat.json"))
    page.wait_for_url(lambda url: "/s/" in url and not url.endswith(session_id))
    imported_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.wait_for_selector(f"[data-testid=session-item][data-session-id='{imported_id}']")
    page.wait_for_function("(count) => document.querySelectorAll('[data-testid=messages] > .message').length === count",
                           arg=len(view["messages"]))
    assert shown_texts(page) == [message["text"] for message in view["messages"]]
    assert [m["text"] for m in whole_view(server, imported_id)["messages"]] == [m["text"] for m in view["messages"]]
    assert page.locator("[data-testid=notice]").is_hidden()


def test_a_refused_import_shows_the_servers_reason(server_factory, new_page, tmp_path):
    server = server_factory(env={"HERMES_WEB_MAX_IMPORT_MB": "0.01"})  # about 10 KB
    page = new_page()
    page.goto(server.url)
    page.wait_for_selector("[data-testid=composer-input]")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something else", "messages": []}))
    page.set_input_files("[data-testid=import-input]", str(wrong))
    page.wait_for_selector("[data-testid=notice]:has-text('not a hermes_web.session export')")
    assert "wrong.json" in page.text_content("[data-testid=notice]")

    big = tmp_path / "big.json"
    big.write_text(json.dumps(export_document([("a long question " * 100, "a long answer " * 100)] * 20)))
    page.set_input_files("[data-testid=import-input]", str(big))
    page.wait_for_selector("[data-testid=notice]:has-text('exceeds')")

    not_json = tmp_path / "notes.json"
    not_json.write_text("this is not JSON")
    page.set_input_files("[data-testid=import-input]", str(not_json))
    page.wait_for_selector("[data-testid=notice]:has-text('not a JSON file')")
    status, sessions, _ = server.api("GET", "/api/sessions")
    assert sessions == []
    assert page.url.rstrip("/") == server.url.rstrip("/")


def test_the_export_menu_needs_a_chat_and_closes_with_escape(server, new_page):
    page = new_page()
    page.goto(server.url)
    page.wait_for_selector("[data-testid=composer-input]")
    assert page.get_by_role("button", name="Export chat").is_disabled()
    session_id = server.create_session()
    open_session(page, server, session_id)
    button = page.get_by_role("button", name="Export chat")
    button.click()
    assert button.get_attribute("aria-expanded") == "true"
    assert page.get_by_role("link", name="Export as JSON").get_attribute("href") == f"/api/sessions/{session_id}/export?format=json"
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=export-menu]", state="hidden")
    assert button.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.id") == "export-button"


def test_the_export_menu_opens_over_the_messages_on_a_phone(server_factory, new_page):
    """The header is a layer of its own: the menu must not open under a message's controls
    (the version switcher sits right below it at phone width)."""
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "1"})
    session_id = server.create_session()
    first = server.start_run(session_id, "Name a colour for a kitchen wall")["run_id"]
    server.wait_run_finished(first)
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"replaces": first})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_session(page, server, session_id)
    page.get_by_role("button", name="Next version").wait_for()
    page.get_by_role("button", name="Export chat").click()
    page.wait_for_selector("[data-testid=export-menu]:visible")
    covered = page.evaluate("""() => [...document.querySelectorAll('[data-testid=export-menu] a')].flatMap((link) => {
        const box = link.getBoundingClientRect();
        const points = [[box.left + 4, box.top + 4], [box.right - 4, box.top + 4],
                        [box.left + 4, box.bottom - 4], [box.right - 4, box.bottom - 4],
                        [(box.left + box.right) / 2, (box.top + box.bottom) / 2]];
        return points.filter(([x, y]) => !document.elementFromPoint(x, y)?.closest('[data-testid=export-menu]'))
                     .map(([x, y]) => `${link.textContent} at ${Math.round(x)},${Math.round(y)}`);
    })""")
    assert covered == []
