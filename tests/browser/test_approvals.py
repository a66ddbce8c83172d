"""Approval and question cards in real chromium: a turn that waits for a person shows its
card in every open viewer; whichever answers first settles it, every viewer shows the
decision live, and a reload shows it again from the journal. The demo agent's ``/approval``
and ``/question`` turns, and the real Hermes Agent asking before a dangerous command."""

from tests import provider_streams as streams
from tests.browser.conftest import snap
from tests.browser.ui import assistant_selector, open_session, send_message, wait_status
from tests.fake_openai import FakeOpenAI, Stream
from tests.hermes_support import hermes_env, make_hermes_home, needs_hermes


def card_state(page, run_id, testid):
    return page.evaluate(
        """([selector, testid]) => {
            const card = document.querySelector(`${selector} [data-testid=${testid}]`);
            if (!card) return null;
            return {
                status: card.dataset.status,
                outcome: card.querySelector('.decision-outcome').textContent,
                buttons: [...card.querySelectorAll('button[data-choice]')].map((b) => [b.getAttribute('aria-label'), b.disabled]),
            };
        }""",
        [assistant_selector(run_id), testid],
    )


def test_an_approval_shows_everywhere_and_the_first_answer_settles_it_everywhere(demo_server, new_page):
    phone, laptop = new_page(viewport={"width": 390, "height": 800}), new_page()
    session_id = demo_server.create_session()
    for page in (phone, laptop):
        open_session(page, demo_server, session_id)
    run_id = send_message(laptop, "/approval rm -rf build/")
    for page in (phone, laptop):
        page.wait_for_selector(f"{assistant_selector(run_id)} [data-testid=approval-card][data-status=pending]")
        state = card_state(page, run_id, "approval-card")
        assert state["buttons"] == [["Allow once", False], ["Allow for this session", False],
                                    ["Always allow", False], ["Deny", False]]
        assert page.locator(f"{assistant_selector(run_id)} [data-testid=approval-detail]").text_content() == "rm -rf build/"
    snap(laptop, "approval-pending")

    phone.get_by_role("button", name="Deny").click()
    for page in (phone, laptop):
        page.wait_for_selector(f"{assistant_selector(run_id)} [data-testid=approval-card][data-status=resolved]")
        state = card_state(page, run_id, "approval-card")
        assert state["outcome"] == "Denied."
        assert all(disabled for _, disabled in state["buttons"])
        assert wait_status(page, run_id, "completed")["text"] == "You chose **deny**."
    assert laptop.locator(f"{assistant_selector(run_id)} .decision-choice.is-chosen").get_attribute("data-choice") == "deny"

    laptop.reload()
    laptop.wait_for_selector(f"{assistant_selector(run_id)} [data-testid=approval-card][data-status=resolved]")
    assert card_state(laptop, run_id, "approval-card")["outcome"] == "Denied."


def test_a_question_takes_a_typed_answer_from_another_viewer(demo_server, new_page):
    asker, answerer = new_page(), new_page()
    session_id = demo_server.create_session()
    for page in (asker, answerer):
        open_session(page, demo_server, session_id)
    run_id = send_message(asker, "/question")
    card = f"{assistant_selector(run_id)} [data-testid=question-card]"
    answerer.wait_for_selector(f"{card}[data-status=pending]")
    assert [b[0] for b in card_state(answerer, run_id, "question-card")["buttons"]] == [
        "Answer: red", "Answer: green", "Answer: blue"]
    asker.wait_for_selector(f"{card}[data-status=pending]")
    asker.fill(f"{card} [data-testid=question-input]", "half-typed")  # survives the frames that follow
    answerer.fill(f"{card} [data-testid=question-input]", "teal, please")
    answerer.get_by_role("button", name="Send answer").click()
    for page in (asker, answerer):
        page.wait_for_selector(f"{card}[data-status=resolved]")
        assert card_state(page, run_id, "question-card")["outcome"] == "Answered: teal, please"
        assert wait_status(page, run_id, "completed")["text"] == "You answered: **teal, please**."
        assert page.locator(f"{card} [data-testid=question-input]").is_hidden()
    snap(answerer, "question-answered")


def test_a_stopped_turn_shows_its_approval_settled_by_the_stop(demo_server, new_page):
    page = new_page()
    session_id = demo_server.create_session()
    open_session(page, demo_server, session_id)
    run_id = send_message(page, "/approval git push --force")
    page.wait_for_selector(f"{assistant_selector(run_id)} [data-testid=approval-card][data-status=pending]")
    page.click("[data-testid=stop-button]")
    wait_status(page, run_id, "cancelled")
    page.wait_for_selector(f"{assistant_selector(run_id)} [data-testid=approval-card][data-status=resolved]")
    assert card_state(page, run_id, "approval-card")["outcome"] == "Denied: the turn was stopped."


@needs_hermes
def test_hermes_asks_before_a_dangerous_command_and_deny_in_the_page_keeps_it_from_running(server_factory, new_page, tmp_path):
    provider = FakeOpenAI(models=["fake-model"]).start()
    try:
        server = server_factory(env=hermes_env(provider, make_hermes_home(tmp_path)))
        text = provider.script(
            Stream(streams.openai_tool_calls([("call_rm_page", "terminal", {"command": "touch page-marker && rm -rf ./build"})])),
            Stream(streams.openai_text(["Left it alone."])))
        session_id = server.create_session()
        page = new_page()
        open_session(page, server, session_id)
        run_id = send_message(page, text)
        card = f"{assistant_selector(run_id)} [data-testid=approval-card]"
        page.wait_for_selector(f"{card}[data-status=pending]", timeout=60_000)
        assert page.locator(f"{card} [data-testid=approval-detail]").text_content() == "touch page-marker && rm -rf ./build"
        assert [label for label, _ in card_state(page, run_id, "approval-card")["buttons"]] == [
            "Allow once", "Allow for this session", "Always allow", "Deny"]
        page.get_by_role("button", name="Deny").click()
        page.wait_for_selector(f"{card}[data-status=resolved]")
        shown = wait_status(page, run_id, "completed", timeout=60_000)
        assert shown["text"].strip() == "Left it alone."
        assert not (server.data_dir / "workspaces" / session_id / "page-marker").exists()
    finally:
        provider.stop()
