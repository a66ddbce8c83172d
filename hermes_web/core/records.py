"""Journal record kinds (PROTOCOL 1.1) and their bounds: what every layer agrees on."""

import json

# Payloads above this are truncated with a visible marker so a record stays one bounded
# line (codec.MAX_RECORD_BYTES) and the browser never has to render megabytes of tool output.
MAX_PAYLOAD_CHARS = 256 * 1024

TERMINAL_TYPES = frozenset({"run.completed", "run.failed", "run.cancelled", "run.interrupted"})


def is_terminal(record) -> bool:
    """True for a record that ends its run (None, a damaged line, is not one)."""
    return isinstance(record, dict) and record.get("type") in TERMINAL_TYPES


def bound_record(record: dict) -> list:
    """Keep records bounded: long deltas are split, oversized payloads truncated visibly."""
    kind = record["type"]
    if kind in ("text.delta", "reasoning.delta", "tool.output"):
        text = record.get("text") or ""
        if len(text) <= MAX_PAYLOAD_CHARS:
            return [record]
        return [
            dict(record, text=text[start:start + MAX_PAYLOAD_CHARS])
            for start in range(0, len(text), MAX_PAYLOAD_CHARS)
        ]
    for field in ("args", "result"):
        if field in record:
            record[field] = truncate_payload(record[field])
    return [record]


def truncate_payload(value):
    """``value`` if its JSON fits MAX_PAYLOAD_CHARS, else its JSON cut with a marker."""
    if isinstance(value, str):
        if len(value) <= MAX_PAYLOAD_CHARS:
            return value
        return value[:MAX_PAYLOAD_CHARS] + f"\n…[truncated: {len(value) - MAX_PAYLOAD_CHARS} more characters]"
    encoded = json.dumps(value, ensure_ascii=False, default=str)
    if len(encoded) <= MAX_PAYLOAD_CHARS:
        return value
    return encoded[:MAX_PAYLOAD_CHARS] + f"\n…[truncated: {len(encoded) - MAX_PAYLOAD_CHARS} more characters]"
