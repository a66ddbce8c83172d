"""Choosing the agent: the picker appears only when the server offers more than one."""

from tests.browser.ui import assert_shows_journal, assistant_selector, open_session, send_message, wait_status
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


def test_the_model_picker_choice_is_the_sessions_across_reloads_and_new_chats(server_factory, new_page):
    from tests import provider_streams
    from tests.fake_openai import Stream

    provider = FakeOpenAI(models=["tiny", "big-model", "vision-model"]).start()
    try:
        server = server_factory(env={"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "tiny"})
        session_id = server.create_session()
        page = new_page()
        open_session(page, server, session_id)
        agent, model = page.locator("[data-testid=agent-select]"), page.locator("[data-testid=model-select]")
        agent.wait_for(state="visible")
        assert model.is_hidden()  # demo has one model
        agent.select_option("openai")
        model.wait_for(state="visible")
        assert [o.get_attribute("value") for o in model.locator("option").all()] == ["tiny", "big-model", "vision-model"]
        model.select_option("big-model")
        page.wait_for_function(f"""async () => (await (await fetch('/api/sessions/{session_id}')).json()).model === 'big-model'""")

        script = provider.script(Stream(provider_streams.openai_tool_calls([("call_c", "calculator", {"expression": "2+2"})])),
                                 Stream(provider_streams.openai_text(["Four."])))
        run_id = send_message(page, script)
        wait_status(page, run_id, "completed")
        assert_shows_journal(page, server, session_id, run_id)
        assert [body["model"] for body in provider.requests_for(script)] == ["big-model", "big-model"]
        assert page.locator("[data-testid=tool-card]").count() == 1

        page.reload()
        page.wait_for_function("() => document.querySelector('[data-testid=model-select]').value === 'big-model'")
        assert agent.input_value() == "openai"
        page.click("[data-testid=new-session]")
        page.wait_for_function("() => document.querySelector('[data-testid=agent-select]').value === 'openai'")
        assert model.input_value() == "big-model"  # a new chat keeps the last choice, not the default
    finally:
        provider.stop()


def test_the_settings_dialog_sets_the_system_prompt_and_temperature(server_factory, new_page):
    provider = FakeOpenAI().start()
    try:
        server = server_factory(env={"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_DEFAULT_AGENT": "openai"})
        session_id = server.create_session()
        page = new_page()
        open_session(page, server, session_id)
        page.click("[data-testid=session-settings]")
        dialog = page.locator("[data-testid=settings-dialog]")
        dialog.wait_for(state="visible")
        page.fill("[data-testid=settings-system-prompt]", "Answer in French.")
        page.fill("[data-testid=settings-temperature]", "2.5")
        page.click("[data-testid=settings-save]")
        error = page.locator("[data-testid=settings-error]")
        error.wait_for(state="visible")
        assert "temperature must be a number from 0 to 2" in error.inner_text()
        page.fill("[data-testid=settings-temperature]", "0.4")
        page.click("[data-testid=settings-save]")
        dialog.wait_for(state="hidden")

        script = provider.script(content=["Bonjour."])
        run_id = send_message(page, script)
        wait_status(page, run_id, "completed")
        (request,) = provider.requests_for(script)
        assert request["messages"][0] == {"role": "system", "content": "Answer in French."}
        assert request["temperature"] == 0.4

        page.reload()
        page.click("[data-testid=session-settings]")
        assert page.input_value("[data-testid=settings-system-prompt]") == "Answer in French."
        assert page.input_value("[data-testid=settings-temperature]") == "0.4"
        page.click("[data-testid=settings-cancel]")
        dialog.wait_for(state="hidden")
    finally:
        provider.stop()


def test_a_turn_says_what_it_waits_on_and_for_how_long_across_a_reload(server_factory, new_page):
    import threading

    from tests import provider_streams
    from tests.fake_openai import Stream

    provider = FakeOpenAI().start()
    release = threading.Event()
    try:
        server = server_factory(env={"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_DEFAULT_AGENT": "openai"})
        session_id = server.create_session()
        page = new_page()
        open_session(page, server, session_id)
        # The model's first answer is held until released: nothing arrives meanwhile.
        script = provider.script(
            Stream(provider_streams.openai_tool_calls([("call_w", "calculator", {"expression": "6*7"})]), gates={0: release}),
            Stream(provider_streams.openai_text(["Forty-two."])))
        run_id = send_message(page, script)
        activity = page.locator(f"{assistant_selector(run_id)} [data-testid=turn-activity]")
        activity.wait_for(state="visible")
        assert activity.inner_text().startswith("Waiting for the model · ")
        # The clock goes on though no record arrives.
        page.wait_for_function(
            """(selector) => /· [2-9] s$/.test(document.querySelector(selector).textContent)""",
            arg=f"{assistant_selector(run_id)} [data-testid=turn-activity]", timeout=10000)
        # A reload shows the same wait, from the session view.
        page.reload()
        activity = page.locator(f"{assistant_selector(run_id)} [data-testid=turn-activity]")
        activity.wait_for(state="visible")
        assert activity.inner_text().startswith("Waiting for the model · ")
        assert activity.get_attribute("data-state") == "waiting_for_model"
        release.set()
        wait_status(page, run_id, "completed")
        assert activity.is_hidden()
        assert_shows_journal(page, server, session_id, run_id)
    finally:
        release.set()
        provider.stop()
