"""Search over every session, and export/import of a session (PROTOCOL 2.6)."""

import json

import pytest

from hermes_web.read.search import snippet
from tests.support import ServerProcess, request


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("search") / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "0"}).start()
    yield server
    server.stop()


def run(server, session_id, text, **body):
    if text is not None:
        body["text"] = text
    status, started, _ = server.api("POST", f"/api/sessions/{session_id}/runs", body)
    assert status == 202, started
    server.wait_run_finished(started["run_id"])
    return started["run_id"]


def search(server, query, limit=None):
    from urllib.parse import quote

    path = f"/api/search?q={quote(query)}" + (f"&limit={limit}" if limit else "")
    status, body, _ = server.api("GET", path)
    assert status == 200, body
    return body["results"]


def test_search_finds_titles_questions_and_answers_case_insensitively_newest_first(server):
    older = server.create_session()
    older_run = run(server, older, "Where is the Zanzibar archipelago?")
    newer = server.create_session()
    newer_run = run(server, newer, "tell me about zanzibar spices")
    results = search(server, "ZANZIBAR")
    hits = [(result["session_id"], result["run_id"]) for result in results]
    assert hits.index((newer, newer_run)) < hits.index((older, older_run))
    for result in results:
        assert "zanzibar" in result["snippet"].lower() and result["title"]
    # The demo's answer quotes the message: answers are searched too, and a title hit has no run.
    server.api("PATCH", f"/api/sessions/{older}", {"title": "Quokka facts"})
    titles = search(server, "quokka")
    assert {"session_id": older, "run_id": None, "title": "Quokka facts", "snippet": "Quokka facts"} in titles
    assert search(server, "demo` agent", limit=1)[0]["run_id"]  # answer text
    assert len(search(server, "zanzibar", limit=1)) == 1
    assert search(server, "zq") == [] and search(server, "no such words anywhere") == []


def test_search_snippets_are_redacted_and_deleted_sessions_are_gone(server):
    session_id = server.create_session()
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    run(server, session_id, f"my key is {secret} please keep it quiet marmoset")
    results = search(server, "marmoset")
    assert results and all(secret not in json.dumps(result) for result in results)
    assert search(server, secret[:20]) == []
    assert request(server.url, "DELETE", f"/api/sessions/{session_id}")[0] == 204
    assert search(server, "marmoset") == []


@pytest.mark.parametrize("query", ["", "%20%20%20", "x" * 201])
def test_a_bad_query_is_a_400(server, query):
    status, body, _ = server.api("GET", f"/api/search?q={query}")
    assert status == 400 and body["error"]["code"] == "invalid_query"


def test_snippet_cuts_around_the_match_on_one_line():
    text = "a" * 100 + "NEEDLE\nin the\thay" + "b" * 100
    assert snippet(text, 100, 106, context=10) == "…" + "a" * 10 + "NEEDLE in the ha…"
    assert snippet("short NEEDLE", 6, 12) == "short NEEDLE"


def test_export_json_then_import_gives_a_session_with_the_same_messages(server):
    session_id = server.create_session()
    first = run(server, session_id, "first *question*")
    run(server, session_id, "second question")
    run(server, session_id, None, replaces=first)  # a regenerated turn: the export is the active branch
    view = server.api("GET", f"/api/session?session_id={session_id}")[1]
    status, data, headers = request(server.url, "GET", f"/api/sessions/{session_id}/export?format=json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert "attachment" in headers["Content-Disposition"]
    document = json.loads(data)
    assert document["format"] == "hermes_web.session" and document["version"] == 1
    assert document["session"]["id"] == session_id and document["messages"] == view["messages"]
    status, created, _ = server.api("POST", "/api/sessions/import", document)
    assert status == 201 and created["id"] != session_id and created["title"] == view["title"]
    imported = server.api("GET", f"/api/session?session_id={created['id']}")[1]
    keys = ("role", "text", "reasoning", "status", "tool_calls")
    strip = lambda messages: [{key: message.get(key) for key in keys} for message in messages]  # noqa: E731
    assert strip(imported["messages"]) == strip(view["messages"])
    assert all(message["run_id"] not in {m["run_id"] for m in view["messages"]} for message in imported["messages"])
    # An imported session continues like any other.
    next_run = run(server, created["id"], "and now?")
    assert server.api("GET", f"/api/runs/{next_run}")[1]["status"] == "completed"
    status, after, _ = server.api("GET", f"/api/sessions/{created['id']}")
    assert status == 200 and len(after["messages"]) == len(view["messages"]) + 2


def test_export_markdown_is_readable(server):
    session_id = server.create_session()
    run(server, session_id, "Explain the journal")
    status, data, headers = request(server.url, "GET", f"/api/sessions/{session_id}/export?format=md")
    assert status == 200 and headers["Content-Type"].startswith("text/markdown")
    text = data.decode()
    assert text.startswith("# ") and "## You" in text and "Explain the journal" in text and "## Assistant" in text
    assert "word_count" in text  # tool calls are shown


@pytest.mark.parametrize("document, code", [
    ({"format": "other", "version": 1, "session": {}, "messages": []}, "invalid_import"),
    ({"format": "hermes_web.session", "version": 2, "session": {}, "messages": []}, "invalid_import"),
    ({"format": "hermes_web.session", "version": 1, "session": {}, "messages": [{"role": "assistant", "run_id": "r",
                                                                                  "text": ""}]}, "invalid_import"),
    ({"format": "hermes_web.session", "version": 1, "session": {}, "messages": [{"role": "user", "run_id": "../x",
                                                                                  "text": "hi"}]}, "invalid_import"),
    ({"format": "hermes_web.session", "version": 1, "session": {}, "messages": "nope"}, "invalid_import"),
])
def test_a_bad_import_is_a_400_and_creates_nothing(server, document, code):
    before = len(server.api("GET", "/api/sessions")[1])
    status, body, _ = server.api("POST", "/api/sessions/import", document)
    assert status == 400 and body["error"]["code"] == code
    assert len(server.api("GET", "/api/sessions")[1]) == before


def test_export_format_must_be_md_or_json(server):
    session_id = server.create_session()
    status, body, _ = server.api("GET", f"/api/sessions/{session_id}/export?format=pdf")
    assert status == 400 and body["error"]["code"] == "invalid_format"
