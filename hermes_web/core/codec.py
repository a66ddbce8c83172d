"""The JSON codec of journal lines, transcripts and responses: compact UTF-8, one line.

Encoding on every append and decoding on every fold are the hot paths; orjson does each
several times faster than the standard library, with the same compact output. The standard
encoder takes what orjson refuses (lone surrogates, integers past 64 bits).
"""

import json

import orjson

# A record is one line of at most this many bytes; bigger payloads are truncated by the
# writer before they get here, so a reader never needs more than this to see a line end.
MAX_RECORD_BYTES = 1024 * 1024

_FALLBACK_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class RecordTooLarge(ValueError):
    """An encoded record exceeds MAX_RECORD_BYTES."""


def decode_line(line: bytes):
    """The JSON value of one line (ValueError when it is not JSON)."""
    return orjson.loads(line)


def decode_record(line: bytes):
    """The record a journal line holds, or None when the line is damaged (PROTOCOL 1.4):
    not JSON, not an object, or without a string ``type``."""
    try:
        record = orjson.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return None
    return record


def encode_line(value) -> bytes:
    """One compact UTF-8 JSON line ending in ``\\n`` (JSON escapes every newline inside)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return _FALLBACK_ENCODER.encode(value).encode("utf-8", "replace") + b"\n"


def encode_record(record: dict) -> bytes:
    """A journal record as one line, at most MAX_RECORD_BYTES long."""
    line = encode_line(record)
    if len(line) > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"record of {len(line)} bytes exceeds {MAX_RECORD_BYTES}")
    return line
