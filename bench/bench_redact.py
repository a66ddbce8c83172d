"""Redaction cost on the streaming hot path, against doing nothing, in the same run.

About 5 MB of realistic agent output (markdown prose, standard-library Python source, tool
output: listings, JSON, logs with URLs, SHAs and UUIDs) with a fake secret every few KB is
cut into deltas of 20-200 characters and fed through ``Redactor.stream()``. Baselines: a
plain ``"".join`` of the same deltas, and ``Redactor.redact`` on the whole text. Trials
alternate so machine noise hits all alike; medians are reported.

Also: model-token-sized deltas (1-8 characters, what a provider really streams), the worst
case of 1-character deltas (must stay linear), and that every secret was masked and the
stream equals the whole-text redaction.
"""

import random
import statistics
import string
import sys
import time
from pathlib import Path

from common import print_table, verdict

from hermes_web.redaction.redactor import Redactor

TARGET_CHARS = 5_000_000
TRIALS = 5
SEED = 20240611
SMALL_DELTAS_CHARS = 1_000_000
ONE_CHAR_CHARS = 200_000
# The goal: a stream spends at most this share of a core at a fast model's pace
# (200 tokens/s, one token per delta).
TOKENS_PER_SECOND = 200
GOAL_CORE_SHARE = 0.01

WORDS = (
    "the a to of and in is it that for you this with on be are as can we will your if not "
    "from have or by an file function run code test value returns error request server user "
    "model message session stream journal record output data list config path line change "
    "here now first then also which when each should would could use using need add check "
    "token tokens key keys password secret pass passed bypass credentials api access cache "
    "python flask gevent json delta event cursor offset write read fsync process thread"
).split()
STDLIB_FILES = ("json/decoder.py", "http/client.py", "tokenize.py", "argparse.py", "subprocess.py",
                "urllib/parse.py", "logging/__init__.py", "configparser.py", "secrets.py", "base64.py")


def random_text(rng, alphabet, length):
    return "".join(rng.choice(alphabet) for _ in range(length))


ALNUM = string.ascii_letters + string.digits
# (template, alphabet, length): the secret is the random part.
SECRETS = (
    ("sk-proj-{}", ALNUM + "_-", 120),
    ("sk-ant-api03-{}AA", ALNUM + "_-", 93),
    ("ghp_{}", ALNUM, 36),
    ("AKIA{}", string.ascii_uppercase + string.digits, 16),
    ("export OPENAI_API_KEY={}", ALNUM, 40),
    ('curl -H "Authorization: Bearer {}" https://api.example.com/v1/x', ALNUM, 32),
    ("postgres://app:{}@db.internal:5432/app", ALNUM, 16),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}", ALNUM, 43),
    ('{{"api_key": "{}"}}', ALNUM, 32),
)


def prose(rng) -> str:
    sentences = []
    for _ in range(rng.randint(2, 6)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 20))]
        if rng.random() < 0.3:
            words[rng.randrange(len(words))] = f"`{rng.choice(WORDS)}()`"
        sentences.append(" ".join(words).capitalize() + rng.choice(".!?:"))
    lead = rng.choice(["", "", "## ", "- ", "1. ", "> "])
    return lead + " ".join(sentences) + "\n\n"


def code(rng, sources) -> str:
    lines = rng.choice(sources)
    start = rng.randrange(max(1, len(lines) - 40))
    return "```python\n" + "".join(lines[start : start + rng.randint(10, 40)]) + "```\n\n"


def tool_output(rng) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(
            f"-rw-r--r-- 1 user staff {rng.randint(100, 99999):>6} Jun {rng.randint(1, 30):>2} "
            f"12:{rng.randint(10, 59)} {rng.choice(WORDS)}_{rng.choice(WORDS)}.py\n" for _ in range(rng.randint(3, 12))
        )
    if kind == 1:
        return (
            '{"id": "chatcmpl-' + random_text(rng, ALNUM, 24) + '", "object": "chat.completion", '
            f'"usage": {{"prompt_tokens": {rng.randint(10, 9000)}, "completion_tokens": {rng.randint(1, 900)}}}, '
            f'"max_tokens": 1024, "token_type": "bearer"}}\n'
        )
    if kind == 2:
        return "".join(
            f"2024-06-11T12:{rng.randint(10, 59)}:{rng.randint(10, 59)}Z INFO GET https://api.example.com/v1/"
            f"{rng.choice(WORDS)}?page={rng.randint(1, 9)} 200 {rng.randint(1, 900)}ms\n"
            for _ in range(rng.randint(2, 8))
        )
    return "".join(
        f"commit {random_text(rng, '0123456789abcdef', 40)}  id={rng.getrandbits(128):032x}\n"
        for _ in range(rng.randint(2, 5))
    )


def corpus(rng) -> tuple:
    """(text, the secret values planted in it)."""
    root = Path(sys.modules["json"].__file__).resolve().parent.parent
    sources = [(root / name).read_text().splitlines(keepends=True) for name in STDLIB_FILES if (root / name).exists()]
    parts, planted, size, next_secret = [], [], 0, 0
    while size < TARGET_CHARS:
        kind = rng.random()
        part = prose(rng) if kind < 0.5 else code(rng, sources) if kind < 0.8 else tool_output(rng)
        if size >= next_secret:
            template, alphabet, length = rng.choice(SECRETS)
            secret = random_text(rng, alphabet, length)
            planted.append(secret)
            part += f"Use {template.format(secret)} for that.\n\n"
            next_secret = size + rng.randint(2_000, 6_000)
        parts.append(part)
        size += len(part)
    return "".join(parts), planted


def split(rng, text, low=20, high=200) -> list:
    deltas, index = [], 0
    while index < len(text):
        size = rng.randint(low, high)
        deltas.append(text[index : index + size])
        index += size
    return deltas


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def stream_through(redactor, deltas) -> str:
    stream = redactor.stream()
    feed = stream.feed
    return "".join([feed(delta) for delta in deltas]) + stream.flush()


def main() -> int:
    rng = random.Random(SEED)
    text, planted = corpus(rng)
    deltas = split(rng, text)
    redactor = Redactor(known_secrets=["correct-horse-battery-staple"])
    megabytes = len(text.encode()) / 1e6
    token_text, one_char_text = text[:SMALL_DELTAS_CHARS], text[:ONE_CHAR_CHARS]

    runs = {"join": [], "stream": [], "whole": []}
    for _ in range(TRIALS):
        runs["join"].append(timed(lambda: "".join([delta for delta in deltas]))[0])
        seconds, streamed = timed(lambda: stream_through(redactor, deltas))
        runs["stream"].append(seconds)
        seconds, redacted = timed(lambda: redactor.redact(text))
        runs["whole"].append(seconds)

    token_deltas = split(rng, token_text, 1, 8)
    token_seconds, token_streamed = timed(lambda: stream_through(redactor, token_deltas))
    one_char_seconds, one_char = timed(lambda: stream_through(redactor, list(one_char_text)))

    join, stream, whole = (statistics.median(runs[name]) for name in ("join", "stream", "whole"))
    rows = [
        ["join (baseline)", f"{megabytes / join:,.0f}", f"{join / len(deltas) * 1e6:.2f}", "1.0"],
        ["stream.feed", f"{megabytes / stream:.1f}", f"{stream / len(deltas) * 1e6:.2f}", f"{stream / join:,.0f}"],
        ["redact(whole)", f"{megabytes / whole:.1f}", "", f"{whole / join:,.0f}"],
        ["stream, 1-8 char deltas", f"{len(token_text.encode()) / 1e6 / token_seconds:.2f}",
         f"{token_seconds / len(token_deltas) * 1e6:.2f}", ""],
        ["stream, 1-char deltas", f"{len(one_char_text.encode()) / 1e6 / one_char_seconds:.2f}",
         f"{one_char_seconds / len(one_char_text) * 1e6:.2f}", ""],
    ]
    print(f"{megabytes:.1f} MB, {len(deltas):,} deltas of 20-200 characters, {len(planted)} secrets planted")
    print_table("redaction cost (median of %d trials)" % TRIALS, ["path", "MB/s", "µs/delta", "x join"], rows)
    print(f"stream / redact(whole): {stream / whole:.2f}")

    survivors = [secret for secret in planted if secret in streamed]
    share = token_seconds / len(token_deltas) * TOKENS_PER_SECOND
    alike = streamed == redacted and token_streamed == redactor.redact(token_text)
    alike &= one_char == redactor.redact(one_char_text)
    ok = verdict("every stream equals redact(whole)", alike)
    ok &= verdict(f"no planted secret survives ({len(survivors)} did)", not survivors)
    goal = f"a {TOKENS_PER_SECOND} token/s stream costs < {GOAL_CORE_SHARE:.0%} of a core ({share:.3%})"
    ok &= verdict(goal, share < GOAL_CORE_SHARE)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
