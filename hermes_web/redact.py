"""The one redactor (PROTOCOL 2.4): masks secrets in text, in JSON-like values and in streams.

The pattern table lives in :mod:`hermes_web.redact_patterns`; what is caught, the mask style
and what is deliberately left alone are documented in ``docs/redaction.md``.

Streaming contract: for any way of cutting a text into deltas,
``"".join(map(stream.feed, deltas)) + stream.flush() == redactor.redact(text)``. A stream
holds back only text from the leftmost position where a secret could still be starting (a
prefix of some pattern reaching the end of what it has seen), so a secret split across
deltas is masked as a whole, and prose is released as soon as it cannot be part of one.
"""

import functools
import re
from typing import Iterable

from hermes_web.redact_patterns import (
    MASK,
    PEM,
    PLACEHOLDER_VALUE,
    RULES,
    SECRET_KEY_NAME,
    TOKEN,
    VALUE,
    known_secrets,
    words,
)

__all__ = ["MASK", "Redactor", "StreamRedactor"]

# Shorter "known secrets" would mask ordinary words; they are ignored.
MIN_KNOWN_SECRET_LENGTH = 6
# Tokens at least this long keep their last 4 characters after the mask, to tell keys apart.
LONG_SECRET_LENGTH = 20
# Candidate positions are found by the first characters of the rules' start words.
START_LENGTH = 8
# Raw characters a stream keeps before its held-back text, for the patterns' lookbehinds.
LOOKBEHIND_CONTEXT = 8

_BREAKS = re.compile(r"(?:\s|\\[nr])*")  # line breaks, also JSON-escaped ones


class _Patterns:
    """A compiled pattern table.

    Every rule starts with one of a few literal words, so the regexes are tried only where
    (the first characters of) such a word begins: a match cannot start anywhere else, and
    neither can a secret that is still being streamed, except in the last few characters,
    which may hold a word's first characters.
    """

    def __init__(self, rules):
        # Each rule's one group, named after the rule, holds what gets masked; a match's
        # last group therefore names its rule.
        self.full = re.compile("|".join(rule.piece.full.replace("(?P<@>", f"(?P<{rule.name}>") for rule in rules))
        # Anchored at the end: could a match be starting here if more text came?
        self.partial = re.compile("(?:" + "|".join(rule.piece.prefix1 for rule in rules) + r")\Z")
        self._styles = {rule.name: rule.style for rule in rules}
        self.starts, self.tail = _start_regex(rules)

    def scan(self, text: str, pos: int, final: bool) -> tuple:
        """Redact ``text[pos:]`` up to where a secret could still be starting (``final``: all).

        Returns the released text and the position it ends at. A match that starts before
        that position is final: no path of the regex there reached the end of ``text``
        (else the prefix regex would have matched there), so more text cannot change it.
        """
        hold = len(text) if final else self._hold_in_tail(text, pos)
        parts, released, candidate = [], pos, pos
        while True:
            found = self.starts.search(text, candidate)
            if found is None or found.start() >= hold:
                break
            candidate = found.start()
            if not final and self.partial.match(text, candidate):
                hold = candidate
                break
            match = self.full.match(text, candidate)
            if match is None:
                candidate += 1
                continue
            parts += (text[released:candidate], self.mask(match))
            released = candidate = match.end()
            if hold < released:  # what could be starting lay inside this match
                hold = self._hold_in_tail(text, released)
        parts.append(text[released:hold])
        return "".join(parts), hold

    def _hold_in_tail(self, text: str, pos: int) -> int:
        """The first position in the last few characters where a start word could begin."""
        match = self.partial.search(text, max(pos, len(text) - self.tail))
        return match.start() if match else len(text)

    def mask(self, match: re.Match) -> str:
        name = match.lastgroup
        start, end = match.span(name)
        secret = match.string[start:end]
        style = self._styles[name]
        if style == TOKEN:
            masked = f"[REDACTED…{secret[-4:]}]" if end - match.start() >= LONG_SECRET_LENGTH else MASK
        elif style == VALUE:
            masked = _mask_value(secret)
        elif style == PEM:
            masked = _mask_pem_body(secret)
            if masked is None:
                return match.group()
        else:
            masked = MASK
        return match.string[match.start() : start] + masked + match.string[end : match.end()]


def _start_regex(rules) -> tuple:
    """A regex finding where the rules' start words (their first few characters) begin.

    Its alternatives each begin with a plain character, so the engine skips every position
    whose character cannot start a word. Returns it and the longest word it looks for.
    """
    rests = {}  # first character -> ignore_case -> the rest of the words
    for rule in rules:
        if not rule.piece.starts:
            raise ValueError(f"rule {rule.name} does not start with literal words")
        for word, ignore_case in rule.piece.starts:
            word = word[:START_LENGTH]
            for first in {word[0].lower(), word[0].upper()} if ignore_case else {word[0]}:
                rests.setdefault(first, {}).setdefault(ignore_case, set()).add(word[1:])
    branches = []
    for first, by_case in sorted(rests.items()):
        tries = [words(*sorted(tails), ignore_case=ignore_case).full for ignore_case, tails in by_case.items()]
        branches.append(re.escape(first) + "(?:" + "|".join(tries) + ")")
    longest = max(len(word[:START_LENGTH]) for rule in rules for word, _ in rule.piece.starts)
    return re.compile("|".join(branches)), longest


def _mask_value(value: str) -> str:
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return quote + MASK + quote
    return MASK


def _mask_pem_body(body: str):
    """The body masked between its leading and trailing line breaks; None if it is blank."""
    start = _BREAKS.match(body).end()
    if start == len(body):
        return None  # a BEGIN line alone
    end = len(body)  # walk back over the trailing breaks (a regex search would be quadratic)
    while end > start:
        if body[end - 1].isspace():
            end -= 1
        elif body[end - 2 : end] in ("\\n", "\\r") and end - 2 >= start:
            end -= 2
        else:
            break
    return body[:start] + MASK + body[end:]


@functools.lru_cache(maxsize=8)
def _stages(secrets: tuple) -> tuple:
    """The known secrets first, then the pattern table.

    A separate first stage, so a pattern match that runs into a known secret (a value cut at
    its "&", a token glued to it) cannot leave part of it behind.
    """
    return ((_Patterns((known_secrets(secrets),)),) if secrets else ()) + (_pattern_table(),)


@functools.lru_cache(maxsize=1)
def _pattern_table() -> _Patterns:
    return _Patterns(RULES)


class Redactor:
    """Masks secrets: provider keys, bearer tokens, KEY=value secrets, private keys, URL passwords."""

    def __init__(self, known_secrets: Iterable[str] = ()):
        usable = {
            secret
            for secret in known_secrets
            if isinstance(secret, str)
            and len(secret) >= MIN_KNOWN_SECRET_LENGTH
            and not secret.isspace()
            and secret not in MASK
        }
        self._stages = _stages(tuple(sorted(usable)))

    def redact(self, text: str) -> str:
        """The text with every secret masked."""
        for stage in self._stages:
            if not text:
                break
            text = stage.scan(text, 0, final=True)[0]
        return text

    def redact_value(self, value):
        """A JSON-like value of the same shape with every string (keys too) redacted.

        A string under a key that names a secret (``api_key``, ``OPENAI_API_KEY``,
        ``x-api-key``, ``password``, ``Authorization``...) is masked whole unless it is a
        placeholder (empty, ``$VAR``, ``<token>``, ``os.environ[...]``, a call).
        """
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_value(key): self._redact_entry(key, item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact_value(item) for item in value)
        return value

    def _redact_entry(self, key, value):
        if (
            isinstance(value, str)
            and isinstance(key, str)
            and SECRET_KEY_NAME.fullmatch(key)
            and not PLACEHOLDER_VALUE.match(value)
        ):
            return MASK
        return self.redact_value(value)

    def stream(self) -> "StreamRedactor":
        """A redactor for one stream of deltas (one per text, reasoning or tool output stream)."""
        return StreamRedactor(self._stages)


class StreamRedactor:
    """Redacts a stream delta by delta, holding back only what could still become a secret.

    Each stage of the redactor holds back on its own; what a stage releases is fed to the
    next. Held-back text is bounded by the longest pattern (a private key block: 16 KiB).
    """

    def __init__(self, stages: tuple):
        self._stages = [_StageStream(patterns) for patterns in stages]

    def feed(self, text: str) -> str:
        """The redacted text that is safe to release now."""
        for stage in self._stages:
            text = stage.feed(text)
        return text

    def flush(self) -> str:
        """Everything held back, redacted (the stream ended, or its text must go out now)."""
        text = ""
        for stage in self._stages:
            text = stage.feed(text) + stage.flush()
        return text

    @property
    def held(self) -> int:
        """How many characters are held back."""
        return sum(stage.held for stage in self._stages)


class _StageStream:
    def __init__(self, patterns: _Patterns):
        self._patterns = patterns
        self._buffer = ""  # released context, then the held-back text
        self._held_at = 0  # where the held-back text starts in _buffer

    def feed(self, text: str) -> str:
        if not text:
            return ""
        buffer = self._buffer + text
        released, held_at = self._patterns.scan(buffer, self._held_at, final=False)
        self._keep(buffer, held_at)
        return released

    def flush(self) -> str:
        released, held_at = self._patterns.scan(self._buffer, self._held_at, final=True)
        self._keep(self._buffer, held_at)
        return released

    @property
    def held(self) -> int:
        return len(self._buffer) - self._held_at

    def _keep(self, buffer: str, held_at: int) -> None:
        start = max(0, held_at - LOOKBEHIND_CONTEXT)
        self._buffer = buffer[start:]
        self._held_at = held_at - start
