"""Who may use the server: the password, login cookies and bearer tokens (PROTOCOL 2.5).

The files behind it (:mod:`hermes_web.security.auth`) can change while the server runs (``hermes-web
set-password``, ``token create``, ``token revoke``, a logout in another server process):
each is re-read when its ``stat`` changes, so a revoked token stops working at once and a
new password takes effect without a restart.
"""

import hashlib
import hmac
import os
import secrets
import threading

from itsdangerous import BadSignature, URLSafeTimedSerializer

from hermes_web.security import auth

COOKIE_SALT = "hermes_web.login"


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


class Credentials:
    """The password, the cookie signer, the token hashes and the logged-out cookies."""

    def __init__(self, config, data_dir):
        self.data_dir = data_dir
        self.by_proxy = config.auth_by_proxy
        self.max_age = config.login_days * 86400
        key = auth.signing_key(data_dir)
        self._key = key
        self._serializer = URLSafeTimedSerializer(key, salt=COOKIE_SALT)
        # A password from the environment is hashed once per start, so checking it costs
        # what checking a stored one costs (no timing difference, same brute-force price).
        self._env_password_hash = auth.hash_password(config.password) if config.password else None
        self._env_fingerprint = self._fingerprint(config.password.encode("utf-8")) if config.password else None
        self._password = _Watched(auth.password_path(data_dir), lambda: auth.stored_password_hash(data_dir), None)
        self._tokens = _Watched(auth.tokens_path(data_dir), self._load_tokens, {})
        self._revoked = _Watched(auth.revoked_path(data_dir), lambda: auth.read_revoked(data_dir), {})
        self._revoke_lock = threading.Lock()

    # ------------------------------------------------------------ what is configured

    @property
    def password_hash(self):
        """The hash a login is checked against (the environment's first), or None."""
        return self._env_password_hash or self._password.get()

    @property
    def required(self) -> bool:
        """Whether every request needs a credential: a password is set and no proxy decides."""
        return not self.by_proxy and self.password_hash is not None

    def check_password(self, password: str) -> bool:
        """Slow (scrypt): call it off the event loop."""
        stored = self.password_hash
        return stored is not None and auth.verify_password(password, stored)

    # ------------------------------------------------------------ login cookies

    def issue_cookie(self) -> str:
        """A signed cookie value naming a fresh login and the password it was made under."""
        return self._serializer.dumps({"id": secrets.token_urlsafe(16), "pw": self._password_fingerprint()})

    def cookie_login(self, value: str):
        """``(login_id, issued_at)`` of a valid, unexpired, not logged-out cookie, else None.

        The fingerprint of the password in force is signed into each cookie, so changing
        the password logs every browser out.
        """
        if not value or len(value) > 4096:
            return None
        try:
            payload, issued = self._serializer.loads(value, max_age=self.max_age, return_timestamp=True)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
            return None
        if not hmac.compare_digest(str(payload.get("pw", "")), self._password_fingerprint()):
            return None
        if payload["id"] in self._revoked.get():
            return None
        return payload["id"], issued.timestamp()

    def end_login(self, login_id: str, issued_at: float) -> None:
        """Log a cookie out for good (until it would have expired anyway)."""
        with self._revoke_lock:
            auth.revoke_login(self.data_dir, login_id, issued_at + self.max_age)

    def _password_fingerprint(self) -> str:
        if self._env_fingerprint is not None:
            return self._env_fingerprint
        stored = self._password.get()
        return self._fingerprint(stored.encode("ascii")) if stored else ""

    def _fingerprint(self, material: bytes) -> str:
        # Keyed, so the cookie reveals nothing about the password or its hash.
        return hmac.new(self._key, b"password\0" + material, hashlib.sha256).hexdigest()[:32]

    # ------------------------------------------------------------ bearer tokens

    def token_name(self, token: str):
        """The name of the stored token ``token`` is, or None."""
        if not token.startswith(auth.TOKEN_PREFIX) or len(token) > 256:
            return None
        return self._tokens.get().get(auth.token_hash(token))

    def _load_tokens(self) -> dict:
        try:
            return {item["sha256"]: item.get("name", "") for item in auth.list_tokens(self.data_dir)}
        except auth.AuthError:
            return {}
