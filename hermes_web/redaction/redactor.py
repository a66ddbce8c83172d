"""The one redactor (PROTOCOL 2.4): masks secrets in text, in JSON-like values and in streams.

The pattern table lives in :mod:`hermes_web.redaction.patterns`; what is caught, the mask style
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

from hermes_web.redaction.patterns import (
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
# A stream keeps more context while it is this short, rather than copy 8 characters per delta.
CONTEXT_LIMIT = 256
# Deltas this short found to hold nothing that can be or start a secret are remembered, up to
# this many: a model streams tokens from a vocabulary of a few thousand strings, and a set
# lookup costs a fraction of a regex search. They are written out unchanged anyway.
PROSE_MEMO_LENGTH = 16
PROSE_MEMO_SIZE = 4096

# Line breaks (also JSON-escaped ones) and the quote marks of a key quoted line by line.
_BREAKS = re.compile(r"(?:\s|\\[nr]|[>#*;])*")
_QUOTE_MARKS = frozenset(">#*;")


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
        self.possible = _possible_regex(rules)
        self.prose = set()  # texts ``possible`` finds nothing in (see PROSE_MEMO_SIZE)

    def scan(self, text: str, pos: int, final: bool) -> tuple:
        """Redact ``text[pos:]`` up to where a secret could still be starting (``final``: all).

        Returns the released text and the position it ends at. A match that starts before
        that position is final: no path of the regex there reached the end of ``text``
        (else the prefix regex would have matched there), so more text cannot change it.
        """
        # Most text holds no start word and does not end in the first characters of one:
        # one search proves it, and the text before the first place that does is prose.
        found = self.possible.search(text, pos)
        if found is None:
            return text[pos:], len(text)
        candidate = found.start()
        hold = len(text) if final else self._hold_in_tail(text, candidate)
        parts, released = [], pos
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

    def remember_prose(self, text: str) -> None:
        """Remember a short text ``possible`` finds nothing in."""
        if len(text) <= PROSE_MEMO_LENGTH:
            if len(self.prose) >= PROSE_MEMO_SIZE:
                self.prose.clear()
            self.prose.add(text)

    def _hold_in_tail(self, text: str, pos: int) -> int:
        """The first position in the last few characters where a start word could begin.

        The prefix regex is tried only where ``possible`` matches: it cannot match anywhere
        else, and trying its many alternatives at every position was the stream's main cost.
        """
        start = max(pos, len(text) - self.tail)
        while (found := self.possible.search(text, start)) is not None:
            start = found.start()
            if self.partial.match(text, start):
                return start
            start += 1
        return len(text)

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


def _possible_regex(rules) -> re.Pattern:
    """A regex matching where a start word begins, or its first characters run to the end.

    A rule's full regex matches only where one of its start words begins, and its prefix
    regex (anchored at the end) only where such a word, or its first characters up to the
    end of the text, begin: where this finds nothing, there is nothing to mask or hold back.
    Like ``_start_regex``, each alternative begins with a plain character, so the engine
    skips every position whose character cannot start a word.
    """
    trie = {}  # a character's regex -> the trie after it; "" marks the end of a word
    for rule in rules:
        for word, ignore_case in rule.piece.starts:
            word = word[:START_LENGTH]
            chars = word.lower() if ignore_case else word
            cased = ignore_case and chars[0].isalpha()
            for first in {chars[0], chars[0].upper()} if cased else {chars[0]}:
                node = trie.setdefault(re.escape(first), {})
                for char in chars[1:]:
                    regex = f"[{char}{char.upper()}]" if ignore_case and char.isalpha() else re.escape(char)
                    node = node.setdefault(regex, {})
                node[""] = {}

    def rest(node):
        if "" in node:
            return ""  # a whole start word: a match, whatever follows
        return "(?:" + "|".join([regex + rest(child) for regex, child in sorted(node.items())] + [r"\Z"]) + ")"

    return re.compile("|".join(first + rest(node) for first, node in sorted(trie.items())))


def _mask_value(value: str) -> str:
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return quote + MASK + quote
    return MASK


def _mask_pem_body(body: str):
    """The body masked between its leading and trailing line breaks (and the quote marks of a
    quoted key: ``> [REDACTED]``); None if it is blank."""
    start = _BREAKS.match(body).end()
    if start == len(body):
        return None  # a BEGIN line alone
    end = len(body)  # walk back over the trailing breaks (a regex search would be quadratic)
    while end > start:
        if body[end - 1].isspace() or body[end - 1] in _QUOTE_MARKS:
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

    Each stage of the redactor holds back on its own: this object runs the first stage and
    feeds what it releases to a stream redactor for the others. Held-back text is bounded
    by the longest pattern (a private key block: 16 KiB).
    """

    def __init__(self, stages: tuple):
        self._patterns = stages[0]
        self._prose = stages[0].prose
        self._possible = stages[0].possible.search
        self._next = StreamRedactor(stages[1:]) if len(stages) > 1 else None
        # The raw text before the held-back text: its last LOOKBEHIND_CONTEXT characters at
        # least (all of them when fewer), for the patterns' lookbehinds.
        self._context = ""
        self._held = ""

    def feed(self, text: str) -> str:
        """The redacted text that is safe to release now."""
        if not text:
            return ""
        pending = self._held + text
        # Every delta of a run comes through here, and most (with what was held) hold nothing
        # that can be or start a secret: scan's first search would prove just that and
        # release them whole, so they go out at once.
        if pending not in self._prose:
            if self._possible(pending) is not None:
                released = self._scan(pending, final=False)
                return released if self._next is None else self._next.feed(released)
            self._patterns.remember_prose(pending)
        self._held = ""
        # At least the last LOOKBEHIND_CONTEXT characters, without a copy per delta.
        context = pending if len(pending) >= LOOKBEHIND_CONTEXT else self._context + pending
        self._context = context if len(context) <= CONTEXT_LIMIT else context[-LOOKBEHIND_CONTEXT:]
        return pending if self._next is None else self._next.feed(pending)

    def flush(self) -> str:
        """Everything held back, redacted (the stream ended, or its text must go out now)."""
        released = self._scan(self._held, final=True)
        return released if self._next is None else self._next.feed(released) + self._next.flush()

    @property
    def held(self) -> int:
        """How many characters are held back."""
        return len(self._held) + (0 if self._next is None else self._next.held)

    def _scan(self, pending: str, final: bool) -> str:
        """Release what is safe of ``pending`` (the held-back text, then any delta); hold the rest."""
        buffer = self._context + pending
        released, held_at = self._patterns.scan(buffer, len(self._context), final)
        self._context = buffer[max(0, held_at - LOOKBEHIND_CONTEXT) : held_at]
        self._held = buffer[held_at:]
        return released
