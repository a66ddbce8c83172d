"""The chat-completions ``messages`` of a run, rebuilt from the session's history.

Pure apart from the image loader it is given. The history is the session view's messages
(docs/api.md), so the same session gives the same messages before and after a restart and
after compaction. How each turn appears (docs/agents.md):

- a user turn: its text, a list of its attachments (name, type, size, id), and with vision
  on its images as ``image_url`` parts with a ``data:`` URL;
- an assistant turn with tool calls: one assistant message carrying every call (in the
  order they began), one ``tool`` message per call with its result, then the turn's text.
  The journal does not keep which text came before which call, so all of it comes last;
- a turn that did not complete keeps what it had (text, finished calls, unfinished calls
  with their "not finished" result, so every call has its answer) and ends with a note
  saying how it ended, so the model knows the answer is partial and why;
- reasoning is not sent back (providers do not take it, some refuse it).
"""

import json

ENDINGS = {
    "cancelled": "[The person stopped this answer before it was finished.]",
    "interrupted": "[This answer was cut off: the server stopped before it was finished.]",
    "running": "[This answer was cut off: the server stopped before it was finished.]",
}
MAX_ERROR_NOTE_CHARS = 300


def build_messages(history, text: str, attachments, *, system_prompt: str = "", images=None) -> list:
    """The messages for a run: system prompt, the history, then the new user turn.

    ``images(attachment) -> data URL or None`` loads an image attachment; None when images
    are not sent (vision off).
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for message in history:
        if message.get("role") == "user":
            messages.append(user_message(message.get("text") or "", message.get("attachments") or (), images))
        elif message.get("role") == "assistant":
            messages += assistant_messages(message)
    messages.append(user_message(text, attachments, images))
    return messages


def user_message(text: str, attachments, images) -> dict:
    lines, parts = [], []
    for item in attachments:
        described = f"- {item.get('name')} ({item.get('mime')}, {item.get('size')} bytes, id {item.get('id')})"
        if str(item.get("mime") or "").startswith("image/"):
            url = images(item) if images is not None else None
            if url:
                parts.append({"type": "image_url", "image_url": {"url": url}})
                described += ": the image is attached"
            else:
                described += ": an image you are not shown" if images is None else ": an image no longer available"
        lines.append(described)
    content = text
    if lines:
        listing = "Attached files (read text files with the read_attachment tool):\n" + "\n".join(lines)
        content = f"{text}\n\n{listing}" if text else listing
    if parts:
        return {"role": "user", "content": [{"type": "text", "text": content}, *parts]}
    return {"role": "user", "content": content}


def assistant_messages(message: dict) -> list:
    """One assistant turn of the history as provider messages."""
    calls = [call for call in message.get("tool_calls") or () if isinstance(call, dict) and call.get("id")]
    messages = []
    if calls:
        messages.append(tool_call_message([(call["id"], call.get("name") or "", call.get("args")) for call in calls]))
        messages += [tool_result_message(call["id"], call.get("result")) for call in calls]
    text = message.get("text") or ""
    note = ending_note(message)
    if note:
        text = f"{text}\n\n{note}" if text else note
    if text:
        messages.append({"role": "assistant", "content": text})
    return messages


def tool_call_message(calls, text: str = "") -> dict:
    """An assistant message asking for ``(call_id, name, args)`` calls (live and rebuilt alike)."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments_text(args)}}
            for call_id, name, args in calls
        ],
    }


def tool_result_message(call_id: str, result) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": result_text(result)}


def arguments_text(args) -> str:
    """Arguments as JSON text. Arguments that were not a JSON object (the model wrote broken
    JSON, or they were cut for size) go back as ``{}``: their call's result says what was wrong,
    and providers refuse a request that carries unparseable arguments."""
    return json.dumps(args, ensure_ascii=False) if isinstance(args, dict) else "{}"


def result_text(result) -> str:
    if isinstance(result, str):
        return result
    if result is None:
        return "the call did not finish"
    return json.dumps(result, ensure_ascii=False)


def ending_note(message: dict) -> str:
    """How a turn that did not complete ended, said to the model ("" for a completed turn)."""
    status = message.get("status")
    if status == "failed":
        error = message.get("error") or {}
        detail = str(error.get("message") or "no details")[:MAX_ERROR_NOTE_CHARS]
        return f"[This answer failed before it was finished: {detail}]"
    return ENDINGS.get(status, "")
