"""Reading the page and the journal the same way in every browser test."""

import time

from hermes_web.read.fold import fold
from hermes_web.store.files.journal import read_entries

ASSISTANT = "[data-testid=message-assistant]"


def assistant_selector(run_id: str) -> str:
    return f"{ASSISTANT}[data-run-id='{run_id}']"


def open_session(page, server, session_id: str) -> None:
    page.goto(f"{server.url}/s/{session_id}")
    page.wait_for_selector("[data-testid=connection-state]:not([data-state=connecting])")


def send_message(page, text: str) -> str:
    """Type and send ``text`` with Enter; the run id once the server confirmed the turn."""
    page.fill("[data-testid=composer-input]", text)
    page.press("[data-testid=composer-input]", "Enter")
    page.wait_for_selector("[data-testid=message-user]:not([data-pending]) >> nth=-1")
    return page.locator("[data-testid=message-user]").last.get_attribute("data-run-id")


def rendered(page, run_id: str) -> dict:
    """What the page shows of a run's assistant turn (the raw sources behind the rendering)."""
    return page.evaluate(
        """(selector) => {
            const node = document.querySelector(selector);
            if (!node) return null;
            return {
                status: node.dataset.status,
                text: node.querySelector('[data-testid=message-text]').rawText ?? '',
                reasoning: node.querySelector('[data-testid=reasoning-text]').rawText ?? '',
                tools: [...node.querySelectorAll('[data-testid=tool-card]')].map((card) => ({
                    id: card.dataset.callId,
                    name: card.querySelector('[data-testid=tool-name]').textContent,
                    status: card.dataset.status,
                })),
                statusLine: node.querySelector('[data-testid=turn-status]').textContent,
                cursor: node.dataset.cursor,
            };
        }""",
        assistant_selector(run_id),
    )


def wait_streamed(page, run_id: str, min_chars: int = 1, min_tools: int = 1) -> dict:
    """Wait until the turn shows some text and at least ``min_tools`` tool cards."""
    page.wait_for_function(
        """([selector, chars, tools]) => {
            const node = document.querySelector(selector);
            return node && node.querySelectorAll('[data-testid=tool-card]').length >= tools
                && (node.querySelector('[data-testid=message-text]').rawText || '').length >= chars;
        }""",
        arg=[assistant_selector(run_id), min_chars, min_tools],
    )
    return rendered(page, run_id)


def wait_status(page, run_id: str, status: str, timeout: float = 40_000) -> dict:
    page.wait_for_selector(f"{assistant_selector(run_id)}[data-status='{status}']", timeout=timeout)
    return rendered(page, run_id)


def journal_turn(server, session_id: str, run_id: str) -> dict:
    """The assistant message the Python fold makes of the run's journal on disk."""
    messages = fold(read_entries(server.journal_path(session_id, run_id)))
    assert [message["role"] for message in messages] == ["user", "assistant"]
    return messages[1]


def assert_shows_journal(page, server, session_id: str, run_id: str) -> dict:
    """The page shows exactly the journal's fold: same text, reasoning, cards, status."""
    expected = journal_turn(server, session_id, run_id)
    shown = rendered(page, run_id)
    assert shown is not None, "the assistant turn is not on the page"
    assert shown["text"] == expected["text"]
    assert shown["reasoning"] == expected["reasoning"]
    assert shown["tools"] == [
        {"id": call["id"], "name": call["name"], "status": call["status"]} for call in expected["tool_calls"]
    ]
    assert shown["status"] == expected["status"]
    assert shown["cursor"] == expected["cursor"]
    # One user turn and one assistant turn per run: nothing duplicated, nothing optimistic left.
    assert page.locator(f"[data-testid=message-user][data-run-id='{run_id}']").count() == 1
    assert page.locator(assistant_selector(run_id)).count() == 1
    assert page.locator("[data-pending]").count() == 0
    return expected


def export_document(turns, title: str = "Imported chat") -> dict:
    """A session export (PROTOCOL 2.6) of finished runs, each ``(user text, answer text)``."""
    now = time.time() - len(turns)
    messages = []
    for index, (question, answer) in enumerate(turns):
        run_id = f"old{index:04d}"
        messages.append({"id": f"{run_id}-user", "role": "user", "run_id": run_id, "text": question,
                         "attachments": [], "created_at": now + index})
        messages.append({"id": f"{run_id}-answer", "role": "assistant", "run_id": run_id, "status": "completed",
                         "text": answer, "reasoning": "", "tool_calls": [], "created_at": now + index,
                         "finished_at": now + index})
    return {"format": "hermes_web.session", "version": 1,
            "session": {"id": "elsewhere", "title": title, "created_at": now, "updated_at": now},
            "messages": messages}


def import_chat(server, turns, title: str = "Imported chat") -> str:
    """A new session holding ``turns`` (see ``export_document``), made the quick way: an import."""
    status, body, _ = server.api("POST", "/api/sessions/import", export_document(turns, title))
    assert status == 201, body
    return body["id"]
