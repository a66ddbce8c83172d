"""Where the login state lives: the interface every store of it implements, the operations
built on it, and its implementation over the data dir's ``auth/`` files.

The login state is the password hash, the key that signs login cookies, the bearer tokens'
hashes and the logged-out cookies. One server keeps it in its data dir
(:class:`FileAuthState`, the files of :mod:`hermes_web.security.auth`); servers sharing a
Redis keep it there (``hermes_web.store.redis.auth``), so a login, a token, a logout or a
new password on one server holds on every other at the next request. The failed-login
windows follow the same choice (:class:`LoginFailures`).

Nothing here caches beyond one request: a server asks the state once per request
(:meth:`AuthState.request_state`), the file implementation re-reading a file when its
``stat`` changed, the Redis one in one round trip.
"""

import os
import threading
from typing import Optional, Protocol

from hermes_web.core.login_state import RequestState
from hermes_web.security import auth


class AuthState(Protocol):
    """The login state of one server, or of every server on one shared store."""

    where: str  # for messages: where the password is stored

    def request_state(self, token_sha256: str = None, login_id: str = None) -> RequestState:
        """The password hash, and what the presented token and cookie need, read at once."""

    def password_hash(self) -> Optional[str]:
        """The stored password hash, or None when no password was set."""

    def store_password_hash(self, stored: str) -> None:
        """Make ``stored`` (a :func:`auth.hash_password` result) the password's hash."""

    def signing_key(self) -> bytes:
        """The cookie signing key, made once: concurrent first calls agree on it."""

    def replace_signing_key(self, key: bytes) -> None:
        """Sign with ``key`` from now on: every login cookie made before stops working."""

    def tokens(self) -> list:
        """``[{name, sha256, created_at}]``, oldest first."""

    def add_token(self, name: str, sha256: str, created_at: float) -> bool:
        """Store a token's hash under ``name``; False when a token of that name exists."""

    def revoke_token(self, name: str) -> bool:
        """Remove the token called ``name``; False when there is none."""

    def end_login(self, login_id: str, expires_at: float) -> None:
        """Remember that ``login_id`` was logged out, until ``expires_at``."""


class LoginFailures(Protocol):
    """Failed logins per client in a sliding window (:class:`hermes_web.security.limits.FailureWindow`)."""

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""

    def record_failure(self, key: str) -> None:
        """Count one failed login of ``key`` now."""

    def forget(self, key: str) -> None:
        """Clear ``key``'s failures (it logged in)."""


# ------------------------------------------------------------------ operations on any store


def set_password(state: AuthState, password: str) -> None:
    """Store the hash of ``password`` as the login password (replacing any earlier one)."""
    state.store_password_hash(auth.hash_password(auth.check_new_password(password)))


def create_token(state: AuthState, name: str) -> str:
    """Make a token called ``name``, store its hash, and return it (it is never stored)."""
    return auth.issue_token(name, lambda sha256, created_at: state.add_token(name, sha256, created_at))


# ------------------------------------------------------------------ the data dir's files


class _Watched:
    """A file's parsed content, parsed again only when the file changes."""

    def __init__(self, path, parse, missing):
        self.path = path
        self._parse = parse
        self._missing = missing
        self._signature = None
        self._value = missing
        self._lock = threading.Lock()

    def get(self):
        try:
            stat = os.stat(self.path)
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            signature = None
        with self._lock:
            if signature != self._signature:
                self._value = self._missing if signature is None else self._parse()
                self._signature = signature
            return self._value


class FileAuthState:
    """The login state in ``<data dir>/auth/`` (layout in :mod:`hermes_web.security.auth`).

    Each file is re-read when its ``stat`` changes, so ``hermes-web set-password``, ``token
    revoke`` or a logout in another process on this data dir holds at the next request.
    """

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.where = str(auth.password_path(data_dir))
        self._password = _Watched(auth.password_path(data_dir), lambda: auth.stored_password_hash(data_dir), None)
        self._key = _Watched(auth.signing_key_path(data_dir), self._read_key, None)
        self._tokens = _Watched(auth.tokens_path(data_dir), self._load_tokens, {})
        self._revoked = _Watched(auth.revoked_path(data_dir), lambda: auth.read_revoked(data_dir), {})
        self._revoke_lock = threading.Lock()

    def request_state(self, token_sha256: str = None, login_id: str = None) -> RequestState:
        return RequestState(
            password_hash=self._password.get(),
            signing_key=self._key.get() if login_id is not None else None,
            token_name=self._tokens.get().get(token_sha256) if token_sha256 is not None else None,
            login_ended=login_id is not None and login_id in self._revoked.get(),
        )

    def password_hash(self):
        return self._password.get()

    def store_password_hash(self, stored: str) -> None:
        auth.store_password_hash(self.data_dir, stored)

    def signing_key(self) -> bytes:
        return auth.signing_key(self.data_dir)

    def replace_signing_key(self, key: bytes) -> None:
        auth.replace_signing_key(self.data_dir, key)

    def tokens(self) -> list:
        return auth.list_tokens(self.data_dir)

    def add_token(self, name: str, sha256: str, created_at: float) -> bool:
        return auth.add_token(self.data_dir, name, sha256, created_at)

    def revoke_token(self, name: str) -> bool:
        return auth.revoke_token(self.data_dir, name)

    def end_login(self, login_id: str, expires_at: float) -> None:
        with self._revoke_lock:
            auth.revoke_login(self.data_dir, login_id, expires_at)

    def _read_key(self):
        try:
            key = auth.signing_key_path(self.data_dir).read_bytes()
        except FileNotFoundError:
            return None
        return key if len(key) >= auth.KEY_BYTES else None  # half-written: nothing was signed with it

    def _load_tokens(self) -> dict:
        try:
            return {item["sha256"]: item.get("name", "") for item in auth.list_tokens(self.data_dir)}
        except auth.AuthError:
            return {}

