"""Approval and question cards in real chromium: a turn that waits for a person shows its
card in every open viewer; whichever answers first settles it, every viewer shows the
decision live, and a reload shows it again from the journal."""

from tests.browser.conftest import snap
from tests.browser.ui import assistant_selector, open_session, send_message, wait_status


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
