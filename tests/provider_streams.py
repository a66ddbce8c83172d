"""Chunk sequences as real OpenAI-compatible servers stream them, for the fake provider.

Each function returns the items of one event stream (chunks as dicts, SSE comments as
strings), shaped after what each server sends: OpenAI's chunk fields and argument fragments,
Ollama's parallel calls all at index 0 with whole arguments, servers that resend the name in
every fragment or number their ids, OpenRouter's processing comments, ``reasoning`` field,
usage chunk with empty choices and mid-stream error object, and llama.cpp / vLLM / DeepSeek
``reasoning_content``.
"""

import json

CREATED = 1718000000


def chunk(delta=None, finish=None, model="fake-model", **extra) -> dict:
    """One ``chat.completion.chunk`` with a single choice."""
    body = {"id": "chatcmpl-9xYz", "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": "fp_fake", "choices": [{"index": 0, "delta": delta or {}, "logprobs": None,
                                                           "finish_reason": finish}]}
    body.update(extra)
    return body


def usage_chunk(prompt=11, completion=7, model="fake-model") -> dict:
    """OpenAI's last chunk with ``stream_options.include_usage``: no choices, only usage."""
    return {"id": "chatcmpl-9xYz", "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}}


def openai_text(pieces, reasoning=(), model="fake-model", field="reasoning_content") -> list:
    """Text (after reasoning, if any) as OpenAI-style servers stream it."""
    items = [chunk({"role": "assistant", "content": ""}, model=model)]
    items += [chunk({field: piece}, model=model) for piece in reasoning]
    items += [chunk({"content": piece}, model=model) for piece in pieces]
    items += [chunk({}, "stop", model=model), usage_chunk(completion=len(pieces), model=model)]
    return items


def _fragments(arguments: str, count: int = 3) -> list:
    size = max(1, -(-len(arguments) // count))
    return [arguments[start:start + size] for start in range(0, len(arguments), size)] or [""]


def openai_tool_calls(calls, text="") -> list:
    """OpenAI: each call opens with id, type and name at its own index, then argument fragments.

    ``calls``: ``[(id, name, args_dict), ...]``.
    """
    items = [chunk({"role": "assistant", "content": text or None})]
    for index, (call_id, name, args) in enumerate(calls):
        items.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                            "function": {"name": name, "arguments": ""}}]}))
        for fragment in _fragments(json.dumps(args)):
            items.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
    items += [chunk({}, "tool_calls"), usage_chunk(prompt=40, completion=12)]
    return items


def ollama_tool_calls(calls) -> list:
    """Ollama's /v1: every call whole in its own chunk, all at index 0, then finish."""
    items = []
    for call_id, name, args in calls:
        items.append(chunk({"role": "assistant", "content": "", "tool_calls": [
            {"id": call_id, "index": 0, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        ]}, model="llama3.2"))
    items += [chunk({"role": "assistant", "content": ""}, "tool_calls", model="llama3.2"),
              usage_chunk(prompt=60, completion=20, model="llama3.2")]
    return items


def resent_name_tool_calls(calls) -> list:
    """Servers that resend the name (and a numeric id) in every fragment, with SSE comments between."""
    items = [": keep-alive"]
    for index, (call_id, name, args) in enumerate(calls):
        for fragment in _fragments(json.dumps(args), 4):
            items.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                                "function": {"name": name, "arguments": fragment}}]}))
            items.append(": keep-alive")
    items += [chunk({}, "tool_calls"), usage_chunk(prompt=30, completion=9)]
    return items


def openrouter_text(pieces, reasoning=()) -> list:
    """OpenRouter: processing comments first, ``reasoning`` deltas, usage in the last chunk."""
    items = [": OPENROUTER PROCESSING", ": OPENROUTER PROCESSING"]
    items += [chunk({"role": "assistant", "content": "", "reasoning": piece}, model="openai/gpt-4o-mini")
              for piece in reasoning]
    items += [chunk({"role": "assistant", "content": piece}, model="openai/gpt-4o-mini") for piece in pieces]
    items += [chunk({"role": "assistant", "content": ""}, "stop", model="openai/gpt-4o-mini"),
              usage_chunk(prompt=9, completion=len(pieces), model="openai/gpt-4o-mini")]
    return items


def openrouter_mid_stream_error(pieces, message="Provider returned error") -> list:
    """OpenRouter after the upstream failed mid-answer: an error object in a chunk."""
    items = [chunk({"role": "assistant", "content": piece}) for piece in pieces]
    items.append(chunk({"content": ""}, "error", error={"code": 502, "message": message}))
    return items


def cut_off_text(pieces) -> list:
    """Text that stops: no finish reason (the caller ends the stream without [DONE])."""
    return [chunk({"role": "assistant", "content": ""})] + [chunk({"content": piece}) for piece in pieces]


def completion_of(items) -> dict:
    """The ``chat.completion`` a server answers without streaming, with what ``items`` stream."""
    content, reasoning, calls, finish, usage, model = "", "", {}, None, None, "fake-model"
    for item in items:
        if not isinstance(item, dict):
            continue  # an SSE comment
        model = item.get("model", model)
        usage = item.get("usage") or usage
        for choice in item.get("choices") or ():
            delta = choice.get("delta") or {}
            content += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                               "function": {"name": "", "arguments": ""}})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                if function.get("name") and not slot["function"]["name"]:
                    slot["function"]["name"] = function["name"]
                slot["function"]["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message = {"role": "assistant", "content": content or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {"id": "chatcmpl-9xYz", "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish or "stop"}],
            "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
