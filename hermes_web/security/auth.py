"""Passwords, the signing key and bearer tokens: the hashing every store of the login state
shares, and plain functions over ``<data dir>/auth/``, the store of one server
(:mod:`hermes_web.security.auth_state`; with ``HERMES_WEB_STORE=redis://`` the same state
lives in Redis instead).

Everything here is a file the owner can inspect, replace or delete (docs/security.md):

- ``auth/password``: the scrypt hash of the login password (``hermes-web set-password``);
- ``auth/signing-key``: 32 random bytes that sign login cookies, made once;
- ``auth/tokens.json``: SHA-256 hashes of the bearer tokens (``hermes-web token create``);
- ``auth/revoked.json``: login cookies ended by a logout, until they would have expired.

Files are 0600 and the directory 0700; each is replaced atomically, so a server reading
one while the command line writes it sees the old or the new version.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from hermes_web.core.fsutil import FILE_MODE, atomic_write, ensure_dir, fsync_dir, write_all
from hermes_web.core.login_state import SIGNING_KEY_BYTES

# scrypt costs: N=2**15, r=8, p=1 needs 32 MiB and about 0.1 s per guess on one core, which
# is what makes an offline guess of a stolen hash expensive and keeps a Raspberry Pi able to
# check a login. Each hash records its own parameters, so raising them later keeps old
# hashes valid.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# scrypt needs 128 * N * r bytes; OpenSSL refuses anything above maxmem.
SCRYPT_MAXMEM = 128 * SCRYPT_N * SCRYPT_R * 2
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
KEY_BYTES = SIGNING_KEY_BYTES
TOKEN_PREFIX = "hwt_"
TOKEN_NAME_CHARS = 64


class AuthError(ValueError):
    """A password, token name or auth file is unusable; the message says why."""


def auth_dir(data_dir) -> Path:
    return Path(data_dir) / "auth"


def password_path(data_dir) -> Path:
    return auth_dir(data_dir) / "password"


def signing_key_path(data_dir) -> Path:
    return auth_dir(data_dir) / "signing-key"


def tokens_path(data_dir) -> Path:
    return auth_dir(data_dir) / "tokens.json"


def revoked_path(data_dir) -> Path:
    return auth_dir(data_dir) / "revoked.json"


# ------------------------------------------------------------------ passwords


def check_new_password(password: str) -> str:
    """``password`` if it is long enough to be worth hashing; AuthError otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AuthError(f"the password may have at most {MAX_PASSWORD_CHARS} characters")
    return password


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` (base64url): a slow, salted, self-describing hash."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return "$".join(["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored``, compared in constant time.

    A malformed ``stored`` never verifies. Slow on purpose (see SCRYPT_N): the web layer runs
    it off the event loop and a few at a time.
    """
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def set_password(data_dir, password: str) -> None:
    """Store the hash of ``password`` as the login password (replacing any earlier one)."""
    store_password_hash(data_dir, hash_password(check_new_password(password)))


def store_password_hash(data_dir, stored: str) -> None:
    """Make ``stored`` (a :func:`hash_password` result) the login password's hash."""
    ensure_dir(auth_dir(data_dir))
    atomic_write(password_path(data_dir), stored.encode("ascii") + b"\n")


def stored_password_hash(data_dir):
    """The stored password hash, or None when no password was set."""
    try:
        return password_path(data_dir).read_text("ascii").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise AuthError(f"cannot read {password_path(data_dir)}: {error}") from None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=max(SCRYPT_MAXMEM, 128 * n * r * 2), dklen=HASH_BYTES)


# ------------------------------------------------------------------ signing key


def signing_key(data_dir) -> bytes:
    """The key that signs login cookies: made once (0600), then read back every start.

    Two servers starting at once on one data dir agree on it: the file is created with
    O_EXCL and the loser reads the winner's key.
    """
    path = signing_key_path(data_dir)
    ensure_dir(path.parent)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            return signing_key(data_dir)
        try:
            write_all(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return key
    if len(key) < KEY_BYTES:
        # Half-written by a crash between create and write: nothing was signed with it yet.
        path.unlink(missing_ok=True)
        return signing_key(data_dir)
    return key


def replace_signing_key(data_dir, key: bytes) -> None:
    """Sign with ``key`` from now on: every login cookie made before stops working."""
    ensure_dir(auth_dir(data_dir))
    atomic_write(signing_key_path(data_dir), key)


# ------------------------------------------------------------------ bearer tokens


def new_token() -> str:
    """A bearer token: a recognisable prefix (so the redactor and a reader spot it) and
    256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # Tokens are 256 random bits: a fast hash is enough, nobody can guess one to test it.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > TOKEN_NAME_CHARS or not name.isprintable() or name != name.strip():
        raise AuthError(f"a token name is 1-{TOKEN_NAME_CHARS} printable characters without surrounding spaces")
    return name


def list_tokens(data_dir) -> list:
    """The stored tokens as ``[{name, sha256, created_at}]``, oldest first."""
    try:
        data = json.loads(tokens_path(data_dir).read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise AuthError(f"cannot read {tokens_path(data_dir)}: {error}") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list):
        raise AuthError(f"{tokens_path(data_dir)} has no token list")
    return [item for item in tokens if isinstance(item, dict) and isinstance(item.get("sha256"), str)]


def create_token(data_dir, name: str) -> str:
    """Make a token called ``name``, store its hash, and return it (it is never stored)."""
    return issue_token(name, lambda sha256, created_at: add_token(data_dir, name, sha256, created_at))


def issue_token(name: str, add) -> str:
    """A new token called ``name``, its hash stored by ``add(sha256, created_at)``, which
    answers False when a token of that name exists."""
    check_token_name(name)
    token = new_token()
    if not add(token_hash(token), time.time()):
        raise AuthError(f"a token named {name!r} exists; revoke it first or pick another name")
    return token


def add_token(data_dir, name: str, sha256: str, created_at: float) -> bool:
    """Store a token's hash under ``name``; False when a token of that name exists."""
    tokens = list_tokens(data_dir)
    if any(item.get("name") == name for item in tokens):
        return False
    tokens.append({"name": name, "sha256": sha256, "created_at": round(created_at, 3)})
    _write_tokens(data_dir, tokens)
    return True


def revoke_token(data_dir, name: str) -> bool:
    """Remove the token called ``name``; False when there is none."""
    tokens = list_tokens(data_dir)
    kept = [item for item in tokens if item.get("name") != name]
    if len(kept) == len(tokens):
        return False
    _write_tokens(data_dir, kept)
    return True


def _write_tokens(data_dir, tokens: list) -> None:
    ensure_dir(auth_dir(data_dir))
    atomic_write(tokens_path(data_dir), json.dumps({"tokens": tokens}, indent=1).encode("utf-8") + b"\n")


# ------------------------------------------------------------------ logged-out cookies


def read_revoked(data_dir) -> dict:
    """``{login_id: expires_at}`` of the login cookies a logout ended."""
    try:
        data = json.loads(revoked_path(data_dir).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(key, str) and isinstance(value, (int, float))}


def revoke_login(data_dir, login_id: str, expires_at: float) -> None:
    """Remember that ``login_id`` was logged out; entries past their expiry are dropped."""
    now = time.time()
    revoked = {key: value for key, value in read_revoked(data_dir).items() if value > now}
    revoked[login_id] = round(expires_at, 3)
    ensure_dir(auth_dir(data_dir))
    atomic_write(revoked_path(data_dir), json.dumps(revoked).encode("ascii"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
