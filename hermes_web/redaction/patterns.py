"""The redaction pattern table, written in a tiny DSL that also yields each pattern's prefixes.

Every pattern is a :class:`Piece` with regexes for:

- ``full``: the exact pattern the redactor matches;
- ``loose``: a superset of ``full`` without lookaheads or possessive quantifiers;
- ``prefix``: every prefix (including the empty one) of a string ``loose`` matches;
- ``prefix1``: the same without the empty one (None if there is none).

The streaming redactor anchors the rules' ``prefix1`` at the end of what it has seen to learn
where a secret could still be starting (Python's ``re`` has no partial matching). Because
``loose`` is a superset, a stream may hold back a little more than needed, but never releases
text that more input could still turn into a secret. Every quantifier is bounded, so
held-back text is too.

Two rules keep that sound: a lookahead reads at most one character past what the following
pieces consume, or only characters those pieces could consume; lookbehinds only read text
already seen.

And every rule starts with one of a few literal words (``Piece.starts``; a lookbehind goes
after the word's first character): the redactor finds where such words begin with one fast
search and tries the rules only there.
"""

import re
from dataclasses import dataclass
from typing import Optional

MASK = "[REDACTED]"
# Literal prefixes nest this deep; past it any continuation is accepted (a bounded superset).
NESTED_LIMIT = 64

# How a match is masked (hermes_web.redaction.redactor and docs/redaction.md).
TOKEN = "token"  # keep the provider prefix, and the last 4 characters when 20+ long
OPAQUE = "opaque"  # keep the surrounding context, mask the value
VALUE = "value"  # like OPAQUE, keeping the value's quotes
PEM = "pem"  # keep the BEGIN/END lines and the line breaks around the body


@dataclass(frozen=True)
class Piece:
    """A pattern and its derived forms (see the module docstring)."""

    full: str
    loose: str
    prefix: str
    prefix1: Optional[str]
    zero_width: bool = False
    starts: tuple = ()  # (word, ignore_case): the words every match starts with, if known


@dataclass(frozen=True)
class Rule:
    """One named pattern; its only capturing group is "secret" (what gets masked).

    Every match starts with one of ``piece.starts``: the redactor tries the regexes only
    where one of those words begins.
    """

    name: str
    piece: Piece
    style: str


def lit(text: str, ignore_case: bool = False, not_after: str = "") -> Piece:
    """A literal; ``not_after``: a class the character before it must not belong to."""
    return words(text, ignore_case=ignore_case, not_after=not_after)


def words(*alternatives: str, ignore_case: bool = False, not_after: str = "") -> Piece:
    """Literal alternatives, as a trie: the engine picks a branch by its first character.

    Longer words are tried first ("secret_key" before "secret"). ``ignore_case`` is ASCII
    only; ``not_after``: a class the character before the word must not belong to.
    """
    trie = {}
    for word in alternatives:
        node = trie
        for char in word.lower() if ignore_case else word:
            node = node.setdefault(char, {})
        node[""] = {}  # the end of a word

    def char_regex(char, depth):
        regex = f"[{char}{char.upper()}]" if ignore_case and char.isalpha() else re.escape(char)
        if depth == 0 and not_after:
            regex += f"(?<!{not_after}{regex})"  # after the character, so the engine skips fast
        return regex

    def full(node, depth):
        chain = ""  # a run of single-child nodes is plain text, not nesting (long known secrets)
        while len(node) == 1 and "" not in node:
            ((char, node),) = node.items()
            chain += char_regex(char, depth)
            depth += 1
        branches = [char_regex(char, depth) + full(child, depth + 1) for char, child in node.items() if char]
        if not branches:
            return chain
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return chain + (f"(?:{body})?" if "" in node else body)

    def longest(node):
        deepest, stack = 0, [(node, 0)]
        while stack:
            node, depth = stack.pop()
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for char, child in node.items() if char)
        return deepest

    def prefix(node, depth):
        """Every prefix of what follows ``node``, the empty one included."""
        if depth >= NESTED_LIMIT:
            return f"[\\s\\S]{{0,{longest(node)}}}"
        branches = [char_regex(char, depth) + prefix(child, depth + 1) for char, child in node.items() if char]
        return "(?:" + "|".join(branches) + ")?" if branches else ""

    pattern = full(trie, 0)
    prefix1 = prefix(trie, 0)[:-1]  # drop the final "?": at least one character
    starts = tuple((word, ignore_case) for word in alternatives)
    return Piece(pattern, pattern, f"(?:{prefix1})?", prefix1, starts=starts)


def chars(cls: str, low: int, high: int, possessive: bool = False) -> Piece:
    """A run of ``low`` to ``high`` characters of the class ``cls``."""
    count = f"{{{low},{high}}}"
    return Piece(cls + count + ("+" if possessive else ""), cls + count, f"{cls}{{0,{high}}}", f"{cls}{{1,{high}}}")


def seq(*pieces: Piece) -> Piece:
    """The pieces one after another; a prefix is a prefix of one piece after whole earlier ones."""
    prefix, prefix1 = "", None
    starts = next((p.starts for p in pieces if not p.zero_width), ())
    for piece in reversed(pieces):
        if piece.zero_width:
            prefix = piece.loose + prefix
            prefix1 = piece.loose + prefix1 if prefix1 else None
            continue
        after = f"{piece.loose}{prefix1}" if prefix1 else None
        prefix1 = _either(piece.prefix1, after)
        prefix = f"(?:{piece.prefix}|{piece.loose}{prefix})" if prefix else piece.prefix
    return Piece("".join(p.full for p in pieces), "".join(p.loose for p in pieces), prefix, prefix1, starts=starts)


def alt(*pieces: Piece) -> Piece:
    """Any of the pieces, tried in order."""

    def join(parts):
        return "(?:" + "|".join(parts) + ")"

    prefix1 = [p.prefix1 for p in pieces if p.prefix1]
    return Piece(
        join(p.full for p in pieces),
        join(p.loose for p in pieces),
        join(p.prefix for p in pieces),
        join(prefix1) if prefix1 else None,
    )


def opt(piece: Piece) -> Piece:
    """The piece or nothing (greedy)."""
    return Piece(f"(?:{piece.full})?", f"(?:{piece.loose})?", piece.prefix, piece.prefix1)


def secret(piece: Piece) -> Piece:
    """The masked part of a rule; "@" becomes the rule's name when the table is compiled."""
    return Piece(f"(?P<@>{piece.full})", piece.loose, piece.prefix, piece.prefix1, starts=piece.starts)


def ahead(regex: str) -> Piece:
    """A lookahead: only in ``full`` (the prefix check must not depend on unseen text)."""
    return Piece(regex, "", "", None, zero_width=True)


def behind(regex: str) -> Piece:
    """A lookbehind: it only reads text already seen, so the prefix check keeps it."""
    return Piece(regex, regex, regex, None, zero_width=True)


def raw(full: str, loose_cls: str, high: int) -> Piece:
    """A hand-written pattern whose loose form is a run of up to ``high`` of ``loose_cls``."""
    return Piece(full, f"{loose_cls}{{0,{high}}}", f"{loose_cls}{{0,{high}}}", f"{loose_cls}{{1,{high}}}")


def _either(left: Optional[str], right: Optional[str]) -> Optional[str]:
    if left and right:
        return f"(?:{left}|{right})"
    return left or right


# ------------------------------------------------------------------ shared pieces

SPACES = chars(r"[ \t]", 0, 16)
QUOTE = opt(words('\\"', '"', "'"))
# A key's closing quote, and the "]" of os.environ["API_KEY"] only after a quote.
CLOSE_KEY = opt(seq(words('\\"', '"', "'"), opt(lit("]"))))
# A value that is code or a template, not a literal: $VAR ${VAR} $(cmd) <token> {token}
# [UNK] %(x)s ***** ... os.environ[...] process.env.X, and our own mask.
NOT_PLACEHOLDER = ahead(r"(?![$<{\[%*]|os\.|process\.env|\.\.\.|…)")
NOT_CALL = ahead(r"(?![(\[])")  # token=get_token(), password=form["password"]
ALNUM = "[A-Za-z0-9]"
BASE64URL = "[A-Za-z0-9_-]"
# Tokens start where an alphanumeric run starts: not "task-...". A mask ends in "]", which
# counts as alphanumeric here, so text right after a mask is judged the same on a second
# pass as it was after the masked (alphanumeric) secret on the first.
WORD_BEFORE = r"[A-Za-z0-9\]]"


def random_run(cls: str, limit: int) -> Piece:
    """The next ``limit`` characters of ``cls`` hold a digit, or both lower and upper case.

    Real keys are random; this keeps "sk-learn-contrib-project" and "Bearer YOUR_TOKEN".
    Each lookahead scans only ``cls`` characters, lazily and no further than the run it
    guards, so the check stays linear and the prefix check covers everything it reads.
    """
    run = f"{cls}{{0,{limit - 1}}}?"
    return ahead(f"(?:(?={run}[0-9])|(?={run}[a-z])(?={run}[A-Z]))")


def token(name: str, keep: Piece, body: Piece, end: str = "") -> Rule:
    """A provider token: the documented prefix (kept) and its random body (masked)."""
    return Rule(name, seq(keep, secret(body), *([ahead(end)] if end else [])), TOKEN)


def known_secrets(values) -> Rule:
    """The exact secret values the server knows."""
    return Rule("known_secret", secret(words(*values)), OPAQUE)


# ------------------------------------------------------------------ key = value

# Key names that name a secret. A match starts at the word, so "OPENAI_API_KEY", "x-api-key"
# and "accessToken" are covered by their endings; the key must END there (optionally with a
# small number, API_KEY_2), so "max_tokens", "token_type" and "secret_name" stay.
_KEY_KINDS = ("api", "secret", "private", "access", "signing", "encryption", "client", "master", "session", "app")
KEY_WORDS = (
    *(f"{kind}{joint}key" for kind in _KEY_KINDS for joint in ("_", "-", "")),
    "token", "secret", "password", "passwd", "passphrase", "credential", "credentials",
    "_pass", ".pass", "-pass",  # DB_PASS, --pass; not "bypass", "compass"
    "_pwd", ".pwd", "-pwd",  # MYSQL_PWD; not the shell's PWD
)  # fmt: skip
KEY_END = opt(seq(chars("[_-]", 0, 1), chars("[0-9]", 1, 3)))
# The key predicate of Redactor.redact_value: the same names, plus the Authorization header.
SECRET_KEY_NAME = re.compile(
    r"[\w.-]{0,64}?(?:" + "|".join(map(re.escape, KEY_WORDS)) + r")(?:[_-]?[0-9]{1,3})?|(?:proxy-)?authorization",
    re.IGNORECASE | re.ASCII,
)
PLACEHOLDER_VALUE = re.compile(
    r"\s*(?:(?:bearer|basic|token|bot)\s+)?(?:$|[$<{\[%*]|os\.|process\.env|\.\.\.|…|[\w.]+\()", re.IGNORECASE
)


def _quoted(quote: str, content: str) -> Piece:
    return seq(lit(quote), NOT_PLACEHOLDER, chars(content, 1, 256, possessive=True), lit(quote))


QUOTED_VALUE = alt(_quoted('\\"', r'[^"\\\n]'), _quoted('"', r'[^"\\\n]'), _quoted("'", r"[^'\\\n]"))
# Unquoted: 6+ characters with a digit or a symbol, so identifiers (api_key=api_key,
# password: str, token = None, secret = settings.SECRET) are code, not secrets.
BARE_VALUE = seq(
    NOT_PLACEHOLDER,
    ahead(r"(?=[A-Za-z_.]{0,255}+[^A-Za-z_.\s'\"`,;&(){}\[\]<>])"),
    chars(r"[^\s'\"`,;&(){}\[\]<>]", 6, 256, possessive=True),
    NOT_CALL,
)
SEPARATOR = alt(
    seq(SPACES, words(":=", "=>", "=", ":"), SPACES),
    # password: str = "..." (a type annotation, then the value)
    seq(SPACES, lit(":"), SPACES, chars("[A-Za-z_]", 1, 1), chars(r"[\w.\[\], |]", 0, 40), SPACES, lit("="), SPACES),
)
# KEY=value, KEY: value, "key": "value", key = 'value', --password=value, export KEY="value".
KEY_VALUE = Rule(
    "key_value",
    seq(words(*KEY_WORDS, ignore_case=True), KEY_END, CLOSE_KEY, SEPARATOR,
        secret(alt(QUOTED_VALUE, BARE_VALUE))),
    VALUE,
)
# Shell and .env assignments (POSTGRES_PASSWORD=mysecretpassword): an upper-case name and
# "=" without spaces mark a literal, so the value needs no digit. Python keyword arguments
# (api_key=api_key) are lower case and go through KEY_VALUE.
ENV_ASSIGNMENT = Rule(
    "env_assignment",
    seq(words(*(word.upper() for word in KEY_WORDS), not_after=r"[a-z\]]"), KEY_END, lit("="),
        secret(seq(NOT_PLACEHOLDER, chars(r"[^\s'\"`;&|<>(){}\[\]\\]", 6, 256, possessive=True), NOT_CALL))),
    VALUE,
)
# ~/.aws/credentials, `aws configure`, STS JSON: the 40-character secret next to its key
# name, also when it happens to hold no digit.
AWS_SECRET_ACCESS_KEY = Rule(
    "aws_secret_access_key",
    seq(words("secret_access_key", "secretaccesskey", "aws_secret_key", ignore_case=True),
        QUOTE, SPACES, words(":", "="), SPACES, QUOTE,
        secret(chars("[A-Za-z0-9/+]", 40, 40)), ahead(r"(?![A-Za-z0-9/+=])")),
    OPAQUE,
)

# ------------------------------------------------------------------ headers, URLs, PEM

CREDENTIAL = r"[A-Za-z0-9._~+/=-]"  # RFC 6750 b64token, and Basic's base64
# Authorization: Bearer ... / Basic ... / token ... (HTTP headers, curl -H, JSON, Python).
AUTHORIZATION = Rule(
    "authorization",
    seq(lit("authorization", ignore_case=True), CLOSE_KEY, SPACES, words(":", "="), SPACES, QUOTE,
        SPACES, words("bearer", "basic", "token", "bot", ignore_case=True), chars(r"[ \t]", 1, 16),
        secret(seq(random_run(CREDENTIAL, 4096), chars(CREDENTIAL, 1, 4096, possessive=True)))),
    OPAQUE,
)
# A bare "Bearer <token>" outside a header (logs, prose): capital B, 16+ random characters.
BEARER = Rule(
    "bearer",
    seq(lit("Bearer", not_after=r"[\w\]-]"), chars(r"[ \t]", 1, 16),
        secret(seq(random_run(CREDENTIAL, 4096), chars(CREDENTIAL, 16, 4096, possessive=True)))),
    OPAQUE,
)
# RFC 3986 userinfo: scheme://user:password@host keeps scheme, user and host.
URL_PASSWORD = Rule(
    "url_password",
    seq(lit("://"), behind(r"(?<=[A-Za-z0-9+.-]://)"), chars(r"[^\s:/?#@'\"<>\[\]]", 0, 128), lit(":"),
        secret(seq(NOT_PLACEHOLDER, chars(r"[^\s/?#@'\"<>]", 1, 256, possessive=True))), lit("@")),
    OPAQUE,
)
# RFC 7468 / OpenSSH / OpenPGP private key blocks. The body (base64, RFC 1421 headers such as
# "Proc-Type: 4,ENCRYPTED", JSON-escaped "\n") runs to the END line, or, when the block was
# cut short, to the first character that cannot be in a body; at most 16 KiB.
PEM_LABEL = seq(chars("[A-Z0-9 ]", 0, 40), lit("PRIVATE KEY"), opt(lit(" BLOCK")), lit("-----"))
# "[" and "]": a masked body is a body too, so a second pass masks the same span. ">", "#",
# "*" and ";": a key quoted line by line (a markdown quote, a shell, C or INI comment) keeps
# its body whole instead of ending it at the first line's quote mark.
PEM_BODY = raw(r"(?:[A-Za-z0-9+/=\s\\:,.()_\[\]>#*;]|-(?!----)){0,16384}+", r"[A-Za-z0-9+/=\s\\:,.()_\[\]>#*;-]", 16384)
PRIVATE_KEY_BLOCK = Rule(
    "private_key_block",
    seq(lit("-----BEGIN "), PEM_LABEL, secret(PEM_BODY), opt(seq(lit("-----END "), PEM_LABEL))),
    PEM,
)


# ------------------------------------------------------------------ provider tokens


def _start(*prefixes: str) -> Piece:
    return words(*prefixes, not_after=WORD_BEFORE)


PROVIDER_TOKENS = (
    # Anthropic: "sk-ant-api03-..." (API), "sk-ant-admin01-..." (admin), ~100 base64url chars.
    token("anthropic", seq(_start("sk-ant-"), opt(seq(chars("[a-z]", 3, 8), chars("[0-9]", 2, 2), lit("-")))),
          chars(BASE64URL, 20, 255, possessive=True)),
    # OpenAI: "sk-proj-", "sk-svcacct-", "sk-admin-" and legacy "sk-" + 48 alphanumerics.
    token("openai", seq(_start("sk-"), opt(words("proj-", "svcacct-", "admin-", "None-"))),
          seq(random_run(BASE64URL, 255), chars(BASE64URL, 20, 255, possessive=True))),
    # GitHub fine-grained PATs: "github_pat_" + 82 characters (22 + "_" + 59).
    token("github_pat", _start("github_pat_"), chars("[A-Za-z0-9_]", 22, 255, possessive=True)),
    # GitHub: ghp_ (PAT), gho_ (OAuth), ghu_/ghs_ (app user/server), ghr_ (refresh) + 36.
    token("github", _start("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), chars(ALNUM, 36, 255, possessive=True)),
    # GitLab personal access tokens: "glpat-" + 20+ characters, optional dotted suffixes.
    token("gitlab", _start("glpat-"), seq(chars(BASE64URL, 20, 255, possessive=True),
                                          opt(seq(lit("."), chars(BASE64URL, 1, 64, possessive=True))),
                                          opt(seq(lit("."), chars(BASE64URL, 1, 64, possessive=True))))),
    # Slack: xoxb- (bot), xoxp- (user), xoxa-/xoxr- (app, refresh), xoxs- (session).
    token("slack", _start("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"),
          chars("[A-Za-z0-9-]", 10, 255, possessive=True)),
    # Stripe secret and restricted keys: sk_live_, sk_test_, rk_live_, rk_test_.
    token("stripe", _start("sk_live_", "sk_test_", "rk_live_", "rk_test_"), chars(ALNUM, 16, 255, possessive=True)),
    # AWS access key ids: AKIA (long-term), ASIA (STS), ABIA, ACCA + 16 upper alphanumerics.
    token("aws_access_key_id", _start("AKIA", "ASIA", "ABIA", "ACCA"), chars("[A-Z0-9]", 16, 16),
          end=r"(?![A-Za-z0-9])"),
    # Google API keys: "AIza" + 35 base64url characters.
    token("google_api_key", _start("AIza"), chars(BASE64URL, 35, 35), end=r"(?![A-Za-z0-9_-])"),
    # Hugging Face user access tokens: "hf_" + 34 letters.
    token("huggingface", _start("hf_"), seq(random_run(ALNUM, 255), chars(ALNUM, 30, 255, possessive=True))),
    # npm access tokens: "npm_" + 36 alphanumerics.
    token("npm", _start("npm_"), chars(ALNUM, 36, 36), end=r"(?![A-Za-z0-9])"),
    # PyPI API tokens: "pypi-" + a macaroon whose base64 starts with the issuer, "pypi.org"
    # (AgEIcHlwaS5vcmc) or "test.pypi.org" (AgENdGVzdC5weXBpLm9yZw).
    token("pypi", _start("pypi-"), seq(words("AgEIcHlwaS5vcmc", "AgENdGVzdC5weXBpLm9yZw"),
                                       chars(BASE64URL, 50, 1024, possessive=True))),
    # hermes_web's own bearer tokens (hermes-web token create): "hwt_" + 43 base64url characters.
    token("hermes_web", _start("hwt_"), chars(BASE64URL, 32, 255, possessive=True)),
    # JSON Web Tokens (RFC 7519): base64url of '{"' is "eyJ", for header and payload.
    token("jwt", _start("eyJ"), seq(chars(BASE64URL, 8, 4096, possessive=True), lit(".eyJ"),
                                    chars(BASE64URL, 8, 4096, possessive=True), lit("."),
                                    chars(BASE64URL, 16, 4096, possessive=True))),
)

# At one position the first rule that matches wins: key = value forms before the tokens
# they may contain (the whole value is masked), specific prefixes before general ones.
RULES = (
    PRIVATE_KEY_BLOCK,
    AUTHORIZATION,
    AWS_SECRET_ACCESS_KEY,
    ENV_ASSIGNMENT,
    KEY_VALUE,
    URL_PASSWORD,
    *PROVIDER_TOKENS,
    BEARER,
)
