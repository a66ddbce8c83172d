"""The redactor: what it masks, what it leaves alone, and that streaming changes nothing.

Secrets are fake, generated at test time from a seed named after the case, so a failure
reproduces. Each is checked whole, split at every position into two deltas, fed one
character at a time and split a few random ways: the stream must equal ``redact`` of the
whole text, and no 8 characters of the secret may survive.
"""

import base64
import json
import random
import string
from dataclasses import dataclass
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_web.redaction.patterns import RULES, SECRET_KEY_NAME
from hermes_web.redaction.redactor import MASK, Redactor

DIGITS = string.digits
UPPER = string.ascii_uppercase
ALNUM = string.ascii_letters + DIGITS
BASE64URL = ALNUM + "_-"
BASE64 = ALNUM + "+/"

REDACTOR = Redactor()
# A secret of no recognisable shape that a server knows; "&" ends an unquoted value.
KNOWN = "Tr0ub4dor&3-horse"
WITH_KNOWN = Redactor([KNOWN])


def random_string(rng: random.Random, alphabet: str, length: int) -> str:
    """Random, and random-looking: at least one digit, one lower and one upper where possible."""
    chars = [rng.choice(alphabet) for _ in range(length)]
    for index, group in enumerate((DIGITS, string.ascii_lowercase, UPPER)):
        if set(group) & set(alphabet) and length > 3:
            chars[index * length // 3] = rng.choice(group)
    return "".join(chars)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def pem_block(rng, label, headers="", lines=6, newline="\n"):
    body = newline.join(random_string(rng, BASE64, 64) for _ in range(lines)) + "=="
    return (f"-----BEGIN {label}-----{newline}{headers}{body}{newline}-----END {label}-----", body)


def jwt(rng):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": str(rng.getrandbits(40)), "name": "Ada", "iat": 1718000000}).encode())
    secret = f"{header[3:]}.{payload}.{b64url(rng.randbytes(32))}"
    return f"eyJ{secret}", secret


@dataclass(frozen=True)
class Case:
    name: str
    rule: str  # the table rule that must catch it
    make: Callable  # rng -> (text as it appears, the secret part that must not survive)

    def build(self):
        return self.make(random.Random(self.name))


def token(prefix, alphabet, length, suffix=""):
    def make(rng):
        secret = random_string(rng, alphabet, length) + suffix
        return prefix + secret, secret

    return make


def around(template, alphabet=ALNUM, length=24):
    """``template`` with ``{}`` replaced by a fresh secret."""

    def make(rng):
        secret = random_string(rng, alphabet, length)
        return template.format(secret), secret

    return make


def letters_only(template, length=16):
    def make(rng):
        secret = "".join(rng.choice(string.ascii_lowercase) for _ in range(length))
        return template.format(secret), secret

    return make


def basic_auth(rng):
    secret = base64.b64encode(f"deploy:{random_string(rng, ALNUM, 16)}".encode()).decode()
    return f"Authorization: Basic {secret}", secret


def quoted_pem(label, quote):
    """A private key quoted line by line (a markdown quote, a comment, an indented block)."""

    def make(rng):
        text, _ = pem_block(rng, label)
        quoted = "\n".join(quote + line for line in text.split("\n"))
        body = quoted[quoted.index("\n") + 1 : quoted.rindex("\n")]
        return quoted, body

    return make


def pem(label, headers="", newline="\n", truncate=False):
    def make(rng):
        text, body = pem_block(rng, label, headers, newline=newline)
        if truncate:
            text = text[: text.index("-----END")]
        return text, body

    return make


SECRET_CASES = [
    Case("openai legacy key", "openai", token("sk-", ALNUM, 48)),
    Case("openai project key", "openai", token("sk-proj-", BASE64URL, 156)),
    Case("openai service account key", "openai", token("sk-svcacct-", BASE64URL, 120)),
    Case("anthropic api key", "anthropic", token("sk-ant-api03-", BASE64URL, 93, "AA")),
    Case("anthropic admin key", "anthropic", token("sk-ant-admin01-", BASE64URL, 93, "AA")),
    Case("github classic pat", "github", token("ghp_", ALNUM, 36)),
    Case("github oauth token", "github", token("gho_", ALNUM, 36)),
    Case("github app server token", "github", token("ghs_", ALNUM, 36)),
    Case("github app user token", "github", token("ghu_", ALNUM, 36)),
    Case("github refresh token", "github", token("ghr_", ALNUM, 76)),
    Case("github fine-grained pat", "github_pat", token("github_pat_", ALNUM, 82)),
    Case("gitlab pat", "gitlab", token("glpat-", BASE64URL, 20)),
    Case("slack bot token", "slack", token("xoxb-", DIGITS + "-", 40)),
    Case("slack user token", "slack", token("xoxp-", ALNUM + "-", 60)),
    Case("aws access key id", "aws_access_key_id", token("AKIA", UPPER + DIGITS, 16)),
    Case("aws sts key id", "aws_access_key_id", token("ASIA", UPPER + DIGITS, 16)),
    Case("aws secret in credentials file", "aws_secret_access_key",
         around("[default]\naws_secret_access_key = {}", BASE64, 40)),
    Case("aws secret without digits", "aws_secret_access_key",
         letters_only("aws_secret_access_key={}", 40)),
    Case("aws secret in sts json", "aws_secret_access_key", around('{{"SecretAccessKey": "{}"}}', BASE64, 40)),
    Case("google api key", "google_api_key", token("AIza", BASE64URL, 35)),
    Case("stripe live key", "stripe", token("sk_live_", ALNUM, 24)),
    Case("stripe restricted key", "stripe", token("rk_live_", ALNUM, 99)),
    Case("stripe test key", "stripe", token("sk_test_", ALNUM, 24)),
    Case("hugging face token", "huggingface", token("hf_", string.ascii_letters, 34)),
    Case("npm token", "npm", token("npm_", ALNUM, 36)),
    Case("pypi token", "pypi", token("pypi-AgEIcHlwaS5vcmc", BASE64URL, 150)),
    Case("test pypi token", "pypi", token("pypi-AgENdGVzdC5weXBpLm9yZw", BASE64URL, 150)),
    Case("jwt", "jwt", jwt),
    Case("hermes_web bearer token", "hermes_web", token("hwt_", BASE64URL, 43)),
    Case("authorization bearer header", "authorization", around("Authorization: Bearer {}", ALNUM, 32)),
    Case("authorization in curl", "authorization",
         around('curl -s -H "Authorization: Bearer {}" https://api.example.com/v1/me', BASE64URL, 40)),
    Case("authorization in json", "authorization", around('{{"Authorization": "token {}"}}', ALNUM, 40)),
    Case("basic auth header", "authorization", basic_auth),
    Case("bare bearer in a log", "bearer", around("DEBUG upstream call with Bearer {} failed", BASE64URL, 40)),
    Case("env export", "env_assignment", around("export OPENAI_API_KEY={}", ALNUM, 40)),
    Case("env file without digits", "env_assignment", letters_only("POSTGRES_PASSWORD={}")),
    Case("docker env flag", "env_assignment", around("docker run -e DB_PASS={} postgres", ALNUM, 20)),
    Case("lower-case key=value", "key_value", around("api_key={}", ALNUM, 32)),
    Case("yaml password", "key_value", around("database:\n  password: {}", ALNUM, 14)),
    Case("json client secret", "key_value", around('{{"client_secret": "{}", "id": 7}}', ALNUM, 30)),
    Case("python string", "key_value", around("db_password = '{}'", ALNUM + "!#%", 18)),
    Case("quoted export with spaces", "key_value", letters_only('export SECRET="{} and more"', 12)),
    Case("http header", "key_value", around("X-Api-Key: {}", ALNUM, 32)),
    Case("cli flag", "key_value", around("mysql --password={} -u root", ALNUM, 16)),
    Case("annotated default", "key_value", around('    token: str = "{}"', ALNUM, 32)),
    Case("environ assignment", "key_value", around('os.environ["GITHUB_TOKEN"] = "{}"', ALNUM, 32)),
    Case("escaped json", "key_value", around('{{\\"apiKey\\": \\"{}\\"}}', ALNUM, 32)),
    Case("numbered key", "key_value", around("secret_2: {}", ALNUM, 20)),
    Case("postgres url", "url_password", around("postgres://admin:{}@db.internal:5432/app", ALNUM, 16)),
    Case("git https url", "url_password", around("git clone https://oauth2:{}@gitlab.com/g/r.git", BASE64URL, 20)),
    Case("redis url without user", "url_password", around("redis://:{}@cache:6379/0", ALNUM, 16)),
    Case("rsa private key", "private_key_block", pem("RSA PRIVATE KEY")),
    Case("pkcs8 private key", "private_key_block", pem("PRIVATE KEY")),
    Case("ec private key", "private_key_block", pem("EC PRIVATE KEY")),
    Case("openssh private key", "private_key_block", pem("OPENSSH PRIVATE KEY")),
    Case("encrypted pem", "private_key_block",
         pem("RSA PRIVATE KEY", "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C3D4E5F60718293A4B5C6D7E8F9\n\n")),
    Case("pgp private key", "private_key_block", pem("PGP PRIVATE KEY BLOCK", "Version: GnuPG v2\n\n")),
    Case("json-escaped pem", "private_key_block", pem("PRIVATE KEY", newline="\\n")),
    Case("truncated pem", "private_key_block", pem("PRIVATE KEY", truncate=True)),
    Case("pem quoted in markdown", "private_key_block", quoted_pem("RSA PRIVATE KEY", "> ")),
    Case("pem in a shell comment", "private_key_block", quoted_pem("OPENSSH PRIVATE KEY", "# ")),
    Case("indented pem", "private_key_block", quoted_pem("EC PRIVATE KEY", "    ")),
]

FALSE_POSITIVES = [
    'API_KEY=os.environ["API_KEY"]',
    'PASSWORD = os.getenv("PASSWORD", "")',
    "password = os.environ.get('DB_PASSWORD')",
    "token = get_token()",
    "password: str",
    "def login(username: str, password: str) -> bool:",
    "token: Optional[str] = None",
    "secret = secrets.token_hex(32)",
    "client = OpenAI(api_key=api_key)",
    "requests.get(url, auth=(user, password), timeout=10)",
    "const token = await getToken();",
    "apiKey: process.env.OPENAI_API_KEY,",
    "export TOKEN=$(gh auth token)",
    "export OPENAI_API_KEY=...",
    "password: ${DB_PASSWORD}",
    "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "api_key: <your-api-key>",
    '"password": ""',
    '{"max_tokens": 4096, "token_type": "bearer", "input_tokens": 12}',
    'tokenizer = AutoTokenizer.from_pretrained("gpt2", eos_token="</s>", unk_token="[UNK]")',
    "max_tokens=1024, temperature=0.2",
    "passwd:         files systemd",
    "PWD=/home/user/project",
    "secret_name = 'prod-db'",
    "Install scikit-learn (pip name sk-learn). OpenAI keys start with sk- and sk-proj-.",
    "Keys look like `sk-...`; never paste them. The task-abcdef0123456789abcdef0123 id is fine.",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "request 123e4567-e89b-12d3-a456-426614174000 took 12ms",
    "![plot](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==)",
    "https://user@host.example.com/path and http://localhost:8080/api?x=1",
    "ssh://git@github.com:22/org/repo.git and git@github.com:org/repo.git",
    "Authorization: Bearer $TOKEN",
    "Authorization: Bearer ${TOKEN}",
    "Authorization: Bearer <token>",
    'curl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com/user',
    'headers = {"Authorization": f"Bearer {token}"}',
    "Authorization: Bearer YOUR_TOKEN",
    "The bearer of this letter, and the token economy: a key insight about passwords.",
    "Your token budget is 1000 tokens; pass the key to the function, then bypass the cache.",
    "# Setting the API key\n\nSet `OPENAI_API_KEY` in your environment, then run `make test`.\n",
    "| name | type |\n|---|---|\n| password | string |\n| token | string |\n",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG\n-----END CERTIFICATE-----",
    "for key, value in sorted(items.items()):\n    if key == 'token':\n        pass\n",
    "x = {'key': 'value', 'tokens': ['a', 'b'], 'secrets': []}",
    "Set unk_token: [UNK] and pad_token: <pad>; mask_token = '<mask>'.",
    "Use ghp_ tokens, AKIA ids and eyJ headers: prefixes alone are not secrets.",
    "def refresh(session, token_url: str, refresh_token: str) -> dict:\n"
    '    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}\n'
    "    return session.post(token_url, data=data, auth=(client_id, client_secret)).json()\n",
    "const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });",
    "| Variable | Meaning |\n|---|---|\n| `OPENAI_API_KEY` | your key, `sk-...` |\n| `HF_TOKEN` | optional |\n",
    "",
]


def stream_through(redactor, deltas) -> str:
    stream = redactor.stream()
    return "".join(stream.feed(delta) for delta in deltas) + stream.flush()


def splits(text: str, rng: random.Random):
    """Every 2-way split, 1-character deltas and a few random 3-5 way splits."""
    for index in range(len(text) + 1):
        yield [text[:index], text[index:]]
    yield list(text)
    for _ in range(4):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(2, 4))))
        yield [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]


def assert_absent(secret: str, text: str) -> None:
    assert secret not in text
    for start in range(len(secret) - 7):
        assert secret[start : start + 8] not in text, f"{secret[start:start + 8]!r} survived"


def in_context(text: str) -> str:
    return f"Sure, here it is:\n{text}\nDone."


# ------------------------------------------------------------------ secrets are masked


@pytest.mark.parametrize("case", SECRET_CASES, ids=lambda case: case.name)
def test_secret_is_masked_whole_and_in_every_split(case):
    text, secret = case.build()
    whole = in_context(text)
    expected = REDACTOR.redact(whole)
    assert_absent(secret, expected)
    assert "[REDACTED" in expected
    for deltas in splits(whole, random.Random(case.name)):
        assert stream_through(REDACTOR, deltas) == expected, deltas


@pytest.mark.parametrize("case", SECRET_CASES, ids=lambda case: case.name)
def test_secret_is_caught_by_its_own_rule(case):
    text, _ = case.build()
    match = REDACTOR._stages[-1].full.search(in_context(text))
    assert match and match.lastgroup == case.rule


def test_every_rule_is_exercised():
    assert {case.rule for case in SECRET_CASES} == {rule.name for rule in RULES}


@pytest.mark.parametrize("case", SECRET_CASES, ids=lambda case: case.name)
def test_redaction_is_idempotent(case):
    text, _ = case.build()
    once = REDACTOR.redact(in_context(text))
    assert REDACTOR.redact(once) == once


# ------------------------------------------------------------------ the mask


MASKS = [
    ("sk-proj-" + "Ab1" * 20 + "Zz12", "sk-proj-[REDACTED…Zz12]"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIA[REDACTED…MPLE]"),
    ("xoxb-1234567890", "xoxb-[REDACTED]"),  # short: nothing of the body is kept
    ("API_KEY=abc123def456", "API_KEY=[REDACTED]"),
    ('{"password": "hunter22"}', '{"password": "[REDACTED]"}'),
    ("db_password = 'p4ss!'", "db_password = '[REDACTED]'"),
    ("postgres://admin:s3cret@db:5432/app", "postgres://admin:[REDACTED]@db:5432/app"),
    ("Authorization: Bearer abcDEF123456", "Authorization: Bearer [REDACTED]"),
    (
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\nAwEHoUQDQgAE==\n-----END EC PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\n[REDACTED]\n-----END EC PRIVATE KEY-----\n",
    ),
    (  # quoted line by line: the quote marks around the body are kept
        "> -----BEGIN EC PRIVATE KEY-----\n> MHcCAQEEIBkg\n> AwEHoUQDQgAE==\n> -----END EC PRIVATE KEY-----\n",
        "> -----BEGIN EC PRIVATE KEY-----\n> [REDACTED]\n> -----END EC PRIVATE KEY-----\n",
    ),
]


@pytest.mark.parametrize("text, expected", MASKS)
def test_mask_keeps_prefix_context_and_last_four_of_long_tokens(text, expected):
    assert REDACTOR.redact(text) == expected


@pytest.mark.parametrize("masked", [MASK, *(expected for _, expected in MASKS)])
def test_mask_never_matches_a_pattern(masked):
    assert REDACTOR.redact(masked) == masked


# ------------------------------------------------------------------ false positives


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_false_positives_stay_byte_identical(text):
    assert REDACTOR.redact(text) == text
    assert stream_through(REDACTOR, list(text)) == text


def test_long_base64_blob_stays_untouched():
    blob = base64.b64encode(random.Random("blob").randbytes(30_000)).decode()
    text = f"![chart](data:image/png;base64,{blob})"
    assert REDACTOR.redact(text) == text
    assert stream_through(REDACTOR, [text[i : i + 97] for i in range(0, len(text), 97)]) == text


# ------------------------------------------------------------------ streaming


def test_prose_is_released_at_once():
    stream = REDACTOR.stream()
    assert stream.feed("hello world. ") == "hello world. "
    assert stream.feed("See the docs, then run it.\n") == "See the docs, then run it.\n"
    assert stream.held == 0


@pytest.mark.parametrize(
    "delta, released",
    [
        ("the key starts with sk-", "the key starts with "),
        ("then the tok", "then the "),
        ("export GITHUB_TOKEN=ghp_abc", "export GITHUB_"),
        ("password: hunt", ""),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow", ""),
        ("connect to postgres://admin:s3c", "connect to postgres"),
    ],
)
def test_only_what_could_become_a_secret_is_held_back(delta, released):
    stream = REDACTOR.stream()
    assert stream.feed(delta) == released
    assert stream.held == len(delta) - len(released)


def test_held_back_text_is_released_once_it_cannot_be_a_secret():
    stream = REDACTOR.stream()
    assert stream.feed("we use sk-") == "we use "
    assert stream.feed("learn for this. ") == "sk-learn for this. "
    assert stream.flush() == ""


def test_flush_releases_everything_redacted():
    stream = REDACTOR.stream()
    assert stream.feed("token: ab12cd34") == ""
    assert stream.flush() == "token: [REDACTED]"


def test_private_key_is_held_until_its_end_line():
    text, body = pem_block(random.Random("held"), "RSA PRIVATE KEY")
    chunks = [text[i : i + 5] for i in range(0, len(text), 5)]
    stream = REDACTOR.stream()
    assert "".join(stream.feed(chunk) for chunk in chunks[:-1]) == ""
    out = stream.feed(chunks[-1] + "\nok") + stream.flush()
    assert out == REDACTOR.redact(text + "\nok")
    assert_absent(body, out)


@pytest.mark.parametrize(
    "endless",
    [
        "-----BEGIN PRIVATE KEY-----\n" + ("QUJD" * 16 + "\n") * 700,
        "ghp_" + "aB3" * 20_000,
        "password=" + "x1" * 20_000,
        "eyJhbGciOiJIUzI1NiJ9." + "eyJ" + "A" * 50_000,
    ],
    ids=["pem", "token", "value", "jwt"],
)
def test_held_back_text_is_bounded(endless):
    stream = REDACTOR.stream()
    released, most = [], 0
    for start in range(0, len(endless), 200):
        released.append(stream.feed(endless[start : start + 200]))
        most = max(most, stream.held)
    assert most <= 17 * 1024
    assert "".join(released) + stream.flush() == REDACTOR.redact(endless)


PROSE = "Your token budget is 1000 tokens; pass the key to the function, then bypass the cache. "


def test_long_stream_of_one_character_deltas_holds_little():
    """Each delta rescans only what is held, so a long stream of 1-character deltas stays linear."""
    text = in_context(SECRET_CASES[0].build()[0]) * 3 + PROSE * 200
    stream = REDACTOR.stream()
    held = []
    for char in text:
        stream.feed(char)
        held.append(stream.held)
    assert max(held[-len(PROSE) * 199 :]) <= 8  # prose: at most the start of a word


FRAGMENTS = [
    "sk-", "sk-proj-", "sk-ant-api03-", "ghp_", "github_pat_", "glpat-", "xoxb-", "AKIA", "AIza", "hf_", "npm_",
    "pypi-AgEIcHlwaS5vcmc", "eyJ", ".eyJ", "Authorization: ", "Bearer ", "Basic ", "token", "password", "API_KEY",
    "secret", "=", ": ", '"', "'", "\\\"", " = ", "://", "user:", "@", "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----", "\n", " ", "$TOKEN", "os.environ", "(", "[", "…", "[REDACTED]", KNOWN, KNOWN[:5],
]
WHOLE_SECRETS = [case.build()[0] for case in SECRET_CASES]
TEXT = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.sampled_from(WHOLE_SECRETS),  # secrets right next to each other: the hard case for idempotence
        st.tuples(st.sampled_from(WHOLE_SECRETS), st.integers(0, 150), st.integers(1, 150)).map(
            lambda piece: piece[0][piece[1] : piece[1] + piece[2]]  # and pieces of them
        ),
        st.text(alphabet=ALNUM + "-_./+=:@\n ", min_size=1, max_size=40),
    ),
    max_size=16,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, data=st.data())
def test_any_split_streams_like_the_whole(text, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    deltas = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]
    assert stream_through(WITH_KNOWN, deltas) == WITH_KNOWN.redact(text)


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_redacting_twice_changes_nothing_more(text):
    once = WITH_KNOWN.redact(text)
    assert WITH_KNOWN.redact(once) == once


@pytest.mark.parametrize("first", SECRET_CASES, ids=lambda case: case.name)
def test_adjacent_secrets_redact_idempotently_and_stream_alike(first):
    rng = random.Random(first.name)
    for second in SECRET_CASES:
        text = first.build()[0] + second.build()[0] + KNOWN + first.build()[0][:9]
        once = WITH_KNOWN.redact(text)
        assert WITH_KNOWN.redact(once) == once, text
        assert_absent(KNOWN, once)
        cut = rng.randrange(len(text) + 1)
        assert stream_through(WITH_KNOWN, [text[:cut], text[cut:]]) == once


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_possible_finds_every_place_a_rule_or_its_prefix_can_match(text):
    # The stream's fast path and its tail check skip every position this regex passes over.
    for patterns in WITH_KNOWN._stages:
        for pos in range(len(text)):
            if patterns.starts.match(text, pos) or (
                len(text) - pos <= patterns.tail and patterns.partial.match(text, pos)
            ):
                assert patterns.possible.match(text, pos), (text, pos)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, data=st.data())
def test_hold_in_tail_equals_searching_with_the_prefix_regex(text, data):
    pos = data.draw(st.integers(0, len(text)))
    for patterns in WITH_KNOWN._stages:
        found = patterns.partial.search(text, max(pos, len(text) - patterns.tail))
        assert patterns._hold_in_tail(text, pos) == (found.start() if found else len(text))


@settings(max_examples=200, deadline=None)
@given(text=TEXT, data=st.data())
def test_remembered_prose_deltas_stream_like_the_whole(text, data):
    # The same cuts twice: the second time, deltas found to be prose are remembered ones.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    deltas = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]
    assert stream_through(WITH_KNOWN, deltas + deltas) == WITH_KNOWN.redact(text + text)


@settings(max_examples=100, deadline=None)
@given(text=TEXT)
def test_one_character_deltas_stream_like_the_whole(text):
    assert stream_through(WITH_KNOWN, list(text)) == WITH_KNOWN.redact(text)


# ------------------------------------------------------------------ known secrets


@pytest.mark.parametrize(
    "text",
    [
        f"the server password is {KNOWN}.",
        f'{{"config": "{KNOWN}"}}',
        f"x{KNOWN}y",
        f"mysql://root:{KNOWN}@localhost",
        f"password={KNOWN}",  # a bare value ends at "&": the known secret still goes whole
        f"ghp_{'aB1' * 12}{KNOWN}",
    ],
)
def test_known_secret_is_masked_anywhere_and_in_every_split(text):
    redactor = Redactor([KNOWN, "a.b*c+d?e", ""])
    expected = redactor.redact(text)
    assert_absent(KNOWN, expected)
    for deltas in splits(text, random.Random(text)):
        assert stream_through(redactor, deltas) == expected


def test_known_secret_with_regex_characters_is_literal():
    redactor = Redactor(["a.b*c+d?e"])
    assert redactor.redact("a.b*c+d?e and aXbbbccd") == "[REDACTED] and aXbbbccd"


def test_short_known_secrets_are_ignored():
    assert Redactor(["abc", "", "12345"]).redact("abc 12345 abc") == "abc 12345 abc"


# ------------------------------------------------------------------ redact_value

SECRET_KEYS = [
    "api_key", "API_KEY", "OPENAI_API_KEY", "x-api-key", "apiKey", "accessToken", "GITHUB_TOKEN", "client_secret",
    "db_password", "PASSWD", "credentials", "private_key", "aws_secret_access_key", "Authorization",
    "proxy-authorization", "DB_PASS", "MYSQL_PWD", "token_2", "secret", "passphrase",
]
PLAIN_KEYS = ["max_tokens", "token_type", "tokens", "secret_name", "password_hint", "keys", "key", "monkey",
              "bypass", "pwd", "author", "id", "text"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_key_naming_a_secret_masks_its_whole_value(key):
    assert REDACTOR.redact_value({key: "a plain value"}) == {key: MASK}
    assert SECRET_KEY_NAME.fullmatch(key)


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_other_keys_keep_their_value(key):
    assert REDACTOR.redact_value({key: "a plain value"}) == {key: "a plain value"}


@pytest.mark.parametrize("value", ["", "${OPENAI_API_KEY}", "$TOKEN", "<password>", "os.environ['X']",
                                   "getenv('TOKEN')", "Bearer $TOKEN", "Bearer <token>", "..."])
def test_placeholder_under_a_secret_key_is_kept(value):
    assert REDACTOR.redact_value({"api_key": value, "Authorization": value}) == {"api_key": value,
                                                                               "Authorization": value}


def test_redact_value_masks_nested_tool_args_and_results():
    openai = "sk-proj-" + random_string(random.Random("v"), BASE64URL, 100)
    github = "ghp_" + random_string(random.Random("g"), ALNUM, 36)
    args = {
        "command": f"curl -H 'Authorization: Bearer {github}' https://api.github.com/user",
        "env": {"OPENAI_API_KEY": openai, "HOME": "/root", "DEBUG": "1"},
        "headers": [{"x-api-key": "abc123"}, {"accept": "application/json"}],
        "password": "hunter2",
        "max_tokens": 100,
        "stream": True,
        "timeout": None,
        "tags": ("a", openai),
    }
    result = {"output": f"token: {github}\nok", "is_error": False, "usage": {"input_tokens": 5}}
    assert REDACTOR.redact_value({"args": args, "result": result}) == {
        "args": {
            "command": "curl -H 'Authorization: Bearer [REDACTED]' https://api.github.com/user",
            "env": {"OPENAI_API_KEY": MASK, "HOME": "/root", "DEBUG": "1"},
            "headers": [{"x-api-key": MASK}, {"accept": "application/json"}],
            "password": MASK,
            "max_tokens": 100,
            "stream": True,
            "timeout": None,
            "tags": ("a", f"sk-proj-[REDACTED…{openai[-4:]}]"),
        },
        "result": {"output": "token: [REDACTED]\nok", "is_error": False, "usage": {"input_tokens": 5}},
    }


def test_redact_value_keeps_non_strings_under_secret_keys_and_redacts_keys():
    key = "ghp_" + "aB1" * 12
    value = {"token": 1234, "password": None, "secret": {"inner": "x"}, key: "v", "list": []}
    assert REDACTOR.redact_value(value) == {
        "token": 1234, "password": None, "secret": {"inner": "x"}, "ghp_[REDACTED…1aB1]": "v", "list": []
    }
