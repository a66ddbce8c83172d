"""Export and import of a session (PROTOCOL 2.6). Pure: views in, documents out, and back.

The JSON export is ``{"format": "hermes_web.session", "version": 1, "session": {...},
"messages": [...]}`` with the active branch's messages exactly as the session view shows
them; importing it gives a new session whose view shows the same messages (new ids, the
attachments' files are not part of an export). The Markdown export is for people.
"""

import datetime
import json

from hermes_web.core.ids import is_valid_id, new_run_id

EXPORT_FORMAT = "hermes_web.session"
EXPORT_VERSION = 1
SESSION_FIELDS = ("id", "title", "created_at", "updated_at")
MAX_IMPORT_MESSAGES = 20_000
STATUSES = ("completed", "failed", "cancelled", "interrupted", "running")


class InvalidImport(ValueError):
    """The document is not a session export this server can import; the message says why."""


def export_json(view: dict) -> dict:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session": {field: view.get(field) for field in SESSION_FIELDS},
        "messages": view["messages"],
    }


def export_markdown(view: dict) -> str:
    """The conversation as Markdown a person can read (and paste elsewhere)."""
    lines = [f"# {_one_line(view.get('title') or 'Untitled')}", ""]
    created = _when(view.get("created_at"))
    if created:
        lines += [f"_Exported from hermes_web; started {created}._", ""]
    for message in view["messages"]:
        when = _when(message.get("created_at"))
        if message.get("role") == "user":
            lines += [f"## You{f' · {when}' if when else ''}", ""]
            lines += [message.get("text") or "", ""]
            for attachment in message.get("attachments") or ():
                lines.append(f"- 📎 {attachment.get('name')} ({attachment.get('mime')}, {attachment.get('size')} bytes)")
            if message.get("attachments"):
                lines.append("")
            continue
        agent = (message.get("agent") or {}).get("name") or "assistant"
        lines += [f"## Assistant ({agent}){f' · {when}' if when else ''}", ""]
        if message.get("reasoning"):
            lines += ["<details><summary>Reasoning</summary>", "", message["reasoning"], "", "</details>", ""]
        for call in message.get("tool_calls") or ():
            lines += [f"**Tool `{call.get('name')}`** ({call.get('status')})", "", "```json",
                      json.dumps(call.get("args"), ensure_ascii=False, indent=2), "```", "", "Result:", "", "```",
                      _text_of(call.get("result")), "```", ""]
        for item in message.get("approvals") or ():
            decided = f"{item.get('choice')} (by {item.get('by')})" if item.get("status") == "resolved" else item.get("status")
            lines += [f"**Approval: {_one_line(str(item.get('title') or ''))}**: {decided}", "", "```",
                      str(item.get("detail") or ""), "```", ""]
        for item in message.get("questions") or ():
            answered = (f"{item.get('answer') or '(no answer)'} (by {item.get('by')})"
                        if item.get("status") == "resolved" else item.get("status"))
            lines += [f"**Question: {_one_line(str(item.get('question') or ''))}**: {answered}", ""]
        lines += [message.get("text") or "", ""]
        status = message.get("status")
        if status and status != "completed":
            detail = (message.get("error") or {}).get("message") if status == "failed" else message.get("reason")
            lines += [f"_This answer is {status}{f': {detail}' if detail else ''}._", ""]
    return "\n".join(lines).rstrip() + "\n"


def import_messages(document, new_session_id: str) -> tuple:
    """``(session fields, messages)`` of an export, re-identified for ``new_session_id``:
    every run gets a new id (so it never collides with the original), cursors are
    ``<run_id>:0`` (there is no journal behind an imported run). InvalidImport otherwise."""
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise InvalidImport(f"not a {EXPORT_FORMAT} export (its 'format' field)")
    if document.get("version") != EXPORT_VERSION:
        raise InvalidImport(f"export version {document.get('version')!r} is not {EXPORT_VERSION}")
    session = document.get("session")
    messages = document.get("messages")
    if not isinstance(session, dict) or not isinstance(messages, list):
        raise InvalidImport("an export has a 'session' object and a 'messages' list")
    if len(messages) > MAX_IMPORT_MESSAGES:
        raise InvalidImport(f"at most {MAX_IMPORT_MESSAGES} messages can be imported")
    title = session.get("title")
    if not isinstance(title, str) or not title.strip():
        title = "Imported chat"
    imported = []
    run_ids = {}
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidImport(f"message {index} is not a user or assistant message")
        old_run = message.get("run_id")
        if not isinstance(old_run, str) or not is_valid_id(old_run):
            raise InvalidImport(f"message {index} has no valid run_id")
        if message["role"] == "user":
            if old_run in run_ids:
                raise InvalidImport(f"message {index}: run {old_run} has two user messages")
            run_ids[old_run] = new_run_id(new_session_id)
        elif not imported or imported[-1]["role"] != "user" or imported[-1]["run_id"] != run_ids.get(old_run):
            raise InvalidImport(f"message {index}: an assistant message follows its own user message")
        run_id = run_ids[old_run]
        imported.append(_imported_message(message, run_id, index))
    return {"title": title[:200]}, imported


def _imported_message(message: dict, run_id: str, index: int) -> dict:
    text = message.get("text")
    if not isinstance(text, str):
        raise InvalidImport(f"message {index} has no text")
    created_at = _number(message.get("created_at"))
    if message["role"] == "user":
        attachments = []
        for item in message.get("attachments") or ():
            if isinstance(item, dict):
                # The files stay behind: a chip with the name, nothing to fetch.
                attachments.append({"id": None, "name": str(item.get("name") or "file"),
                                    "mime": str(item.get("mime") or "application/octet-stream"),
                                    "size": _number(item.get("size")), "url": None})
        return {"id": f"{run_id}-user", "role": "user", "run_id": run_id, "text": text,
                "attachments": attachments, "created_at": created_at}
    status = message.get("status") if message.get("status") in STATUSES else "completed"
    if status == "running":
        status = "interrupted"  # nothing will ever finish it here
    tool_calls = []
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            tool_calls.append({
                "id": str(call.get("id") or f"call_{len(tool_calls)}"), "name": str(call.get("name") or "tool"),
                "args": call.get("args"), "status": call.get("status") if call.get("status") in ("done", "error") else "error",
                "result": call.get("result"), "is_error": bool(call.get("is_error")),
                "duration_ms": _number(call.get("duration_ms")),
            })
    reasoning = message.get("reasoning")
    error = message.get("error") if isinstance(message.get("error"), dict) else None
    reason = message.get("reason") if isinstance(message.get("reason"), str) else None
    if status == "interrupted" and reason is None:
        reason = "imported"
    agent = message.get("agent") if isinstance(message.get("agent"), dict) else None
    imported = {
        "id": f"{run_id}-assistant", "role": "assistant", "run_id": run_id, "status": status, "text": text,
        "reasoning": reasoning if isinstance(reasoning, str) else "", "tool_calls": tool_calls,
        "agent": agent, "error": error, "reason": reason, "usage": None,
        "created_at": created_at, "finished_at": _number(message.get("finished_at")),
        "cursor": f"{run_id}:0",
    }
    for field, value_field in (("approvals", "choice"), ("questions", "answer")):
        requests = [_imported_request(item, value_field) for item in message.get(field) or () if isinstance(item, dict)]
        if requests:
            imported[field] = requests
    return imported


def _imported_request(item: dict, value_field: str) -> dict:
    """An approval or question as the fold shows it; one still pending can never be
    answered here (no run is behind it)."""
    request = {key: (item.get(key) if isinstance(item.get(key), str) else None)
               for key in ("id", "call_id", "title", "detail", "question", "by", value_field)
               if key in item or key in ("id", "by", value_field)}
    request["choices"] = [choice for choice in item.get("choices") or () if isinstance(choice, str)]
    request["status"] = "resolved" if item.get("status") == "resolved" else "expired"
    return request


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _when(ts) -> str:
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or ts <= 0:
        return ""
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _text_of(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2)
