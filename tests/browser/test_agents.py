"""Choosing the agent: the picker appears only when the server offers more than one."""

from tests.browser.ui import assert_shows_journal, open_session, send_message, wait_status
from tests.fake_openai import FakeOpenAI


def test_the_picker_is_hidden_with_the_demo_agent_only(server, new_page):
    page = new_page()
    open_session(page, server, server.create_session())
    page.wait_for_function("() => document.querySelector('[data-testid=agent-select]').options.length === 1")
    assert page.locator("[data-testid=agent-select]").is_hidden()


def test_a_run_answered_by_the_openai_compatible_provider(server_factory, new_page):
    provider = FakeOpenAI().start()
    try:
        server = server_factory(env={"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "tiny"})
        session_id = server.create_session()
        page = new_page()
        open_session(page, server, session_id)
        picker = page.locator("[data-testid=agent-select]")
        picker.wait_for(state="visible")
        assert picker.input_value() == "demo"
        picker.select_option("openai")
        text = "please echo these seven words back now"
        script = provider.script(content=[word + " " for word in text.split()], reasoning=["echoing"])
        run_id = send_message(page, script)
        shown = wait_status(page, run_id, "completed")
        assert shown["text"] == text + " "
        assert shown["reasoning"] == "echoing"
        assert_shows_journal(page, server, session_id, run_id)
        assert provider.requests[-1]["body"]["model"] == "tiny"
    finally:
        provider.stop()
