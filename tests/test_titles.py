"""Session titles cut from the first message: plain words, no Markdown syntax; a message
of files alone is named after its first file. Both agents title a session this way."""

import threading

import pytest

from hermes_web.core.endpoints import Endpoint
from hermes_web.runs.agents.base import AgentRequest, title_for
from hermes_web.runs.agents.demo import DemoAgent
from hermes_web.runs.agents.openai_compat import OpenAICompatibleAgent
from tests.fake_openai import FakeOpenAI
from tests.test_uploads import upload_one

PHOTO = {"id": "a1", "name": "holiday photo.png", "mime": "image/png", "size": 10}
NOTES = {"id": "a2", "name": "notes.txt", "mime": "text/plain", "size": 3}


@pytest.mark.parametrize(("text", "attachments", "expected"), [
    # plain text: the first six words, an ellipsis when there were more
    ("first question", (), "first question"),
    ("one two three four five six", (), "one two three four five six"),
    ("one two three four five six seven", (), "one two three four five six…"),
    ("  spaced \n\n out\ttext  ", (), "spaced out text"),
    # Markdown syntax is gone, the words it marks up stay
    ("# Deploying **the** app", (), "Deploying the app"),
    ("## Why does `make test` fail?", (), "Why does make test fail?"),
    ("*Emphasis* and _more_ and ~~struck~~ words", (), "Emphasis and more and struck words"),
    ("> quoted question here", (), "quoted question here"),
    ("- first item\n- second item", (), "first item second item"),
    ("1. step one\n2. step two", (), "step one step two"),
    ("Read [the docs](https://example.com/docs) please", (), "Read the docs please"),
    ("See ![a cat](cat.png) here", (), "See a cat here"),
    ("<b>bold</b> html", (), "bold html"),
    ("Tom &amp; Jerry", (), "Tom & Jerry"),
    ("\\*not emphasis\\*", (), "*not emphasis*"),
    ("| col a | col b |\n|---|---|\n| 1 | 2 |", (), "col a col b 1 2"),
    # what is not Markdown is left alone
    ("rename my_var_name to other_name", (), "rename my_var_name to other_name"),
    ("2 * 3 * 4 really", (), "2 * 3 * 4 really"),
    ("snake_case_word", (), "snake_case_word"),
    # prose wins over code; code alone still names the session
    ("```python\nprint(1)\n```\nwhy does this fail", (), "why does this fail"),
    ("```\nSELECT * FROM users\n```", (), "SELECT * FROM users"),
    ("    indented code only", (), "indented code only"),
    # a message of files alone: the first file's name
    ("", (PHOTO,), "holiday photo.png"),
    ("   ", (PHOTO, NOTES), "holiday photo.png and 1 more"),
    ("---", (NOTES,), "notes.txt"),
    ("hello", (PHOTO,), "hello"),
    ("[Attached files: /home/me/report.pdf, /home/me/b.txt]", (), "report.pdf and 1 more"),
    ("look [Attached files: /home/me/report.pdf]", (), "look"),
    # nothing to name it after
    ("", (), "Untitled"),
    ("***", (), "Untitled"),
    ("", ({"id": "x", "name": "  "},), "Untitled"),
])
def test_title_for(text, attachments, expected):
    assert title_for(text, attachments) == expected


def test_long_titles_are_cut_with_an_ellipsis():
    words = " ".join(["supercalifragilistic"] * 5)  # five words, 104 characters
    title = title_for(words)
    assert len(title) == 80 and title.endswith("…")
    assert words.startswith(title[:-1])


def test_a_long_file_name_is_cut_to_the_limit():
    title = title_for("", ({"name": "x" * 300 + ".txt"},))
    assert len(title) == 80 and title.endswith("…")


def request_for(text, attachments=()):
    return AgentRequest(session_id="s1", run_id="r1", text=text, attachments=tuple(attachments))


def test_the_demo_agent_titles_with_title_for():
    events = DemoAgent(delay_seconds=0).stream(request_for("", (PHOTO,)), threading.Event())
    assert next(events) == {"type": "title", "title": "holiday photo.png"}


def test_the_openai_compatible_agent_titles_with_title_for():
    provider = FakeOpenAI().start()
    try:
        agent = OpenAICompatibleAgent(Endpoint(name="openai", base_url=provider.url, model="tiny", tools=False))
        events = list(agent.stream(request_for("# **Plan** the _trip_"), threading.Event()))
        assert events[0] == {"type": "title", "title": "Plan the trip"}
    finally:
        provider.stop()


def test_a_session_started_with_only_a_file_is_named_after_it(server):
    session_id = server.create_session()
    attachment = upload_one(server, session_id, "quarterly report.pdf", b"%PDF-1.4 tiny")
    server.wait_run_finished(server.start_run(session_id, "", attachments=[attachment["id"]])["run_id"])
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert status == 200 and view["title"] == "quarterly report.pdf"
