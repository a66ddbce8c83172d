"""Who may use the server: the password, login cookies and bearer tokens (PROTOCOL 2.5).

The state behind it (:mod:`hermes_web.security.auth_state`: the data dir's files, or a
Redis shared by several servers) can change while the server runs (``hermes-web
set-password``, ``token create``, ``token revoke``, a logout on another server): it is
read again for every request, so a revoked token or an ended login is refused at the very
next request and a new password takes effect without a restart.
"""

import dataclasses
import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from hermes_web.core.ids import is_valid_id
from hermes_web.security import auth

COOKIE_SALT = "hermes_web.login"
MAX_COOKIE_CHARS = 4096
MAX_TOKEN_CHARS = 256
# Reads a cookie's payload without trusting it, to know which login to look up in the same
# read as everything else; the signature is checked against the real key afterwards.
_UNVERIFIED = URLSafeTimedSerializer(b"unverified", salt=COOKIE_SALT)


@dataclasses.dataclass(frozen=True)
class Identity:
    """What one request presented: whether a credential is needed, and the valid one.

    ``credential`` is None, ``("token", name)`` or ``("cookie", (login_id, issued_at))``.
    """

    required: bool
    credential: tuple = None


class Credentials:
    """The password, the cookie signer, the tokens and the logged-out cookies of a state."""

    def __init__(self, config, state):
        self.state = state
        self.by_proxy = config.auth_by_proxy
        self.max_age = config.login_days * 86400
        # A password from the environment is hashed once per start, so checking it costs
        # what checking a stored one costs (no timing difference, same brute-force price).
        self._env_password_hash = auth.hash_password(config.password) if config.password else None
        self._env_password = config.password.encode("utf-8") if config.password else None
        self._serializer = (None, None)  # (key, serializer) of the key last used

    # ------------------------------------------------------------ what is configured

    @property
    def password_hash(self):
        """The hash a login is checked against (the environment's first), or None."""
        return self._env_password_hash or self.state.password_hash()

    @property
    def required(self) -> bool:
        """Whether every request needs a credential: a password is set and no proxy decides."""
        return self._required(self.password_hash)

    def check_password(self, password: str, offload=None) -> bool:
        """Slow (scrypt): ``offload(function, *args)`` runs the hashing off the event loop.

        The stored hash is read here, in the caller's context: a shared store's connection
        belongs to the event loop, not to the thread the hashing runs in.
        """
        stored = self.password_hash
        if stored is None:
            return False
        return (offload or _call)(auth.verify_password, password, stored)

    def identify(self, token: str = None, cookie: str = None) -> Identity:
        """Check a request's bearer token and login cookie with one read of the state.

        A token is tried first; a cookie counts when it is signed with the key in force,
        unexpired, made under the password in force and not logged out.
        """
        token_sha256 = auth.token_hash(token) if _looks_like_token(token) else None
        login_id = _unverified_login_id(cookie)
        state = self.state.request_state(token_sha256=token_sha256, login_id=login_id)
        required = self._required(self._env_password_hash or state.password_hash)
        if state.token_name is not None:
            return Identity(required, ("token", state.token_name))
        if login_id is None or state.login_ended or state.signing_key is None:
            return Identity(required)
        login = self._verified_login(cookie, state.signing_key, state.password_hash)
        return Identity(required, ("cookie", login) if login is not None and login[0] == login_id else None)

    # ------------------------------------------------------------ login cookies

    def issue_cookie(self) -> str:
        """A signed cookie value naming a fresh login and the password it was made under."""
        key = self.state.signing_key()
        payload = {"id": secrets.token_urlsafe(16), "pw": self._password_fingerprint(key, self.state.password_hash())}
        return self._serializer_for(key).dumps(payload)

    def end_login(self, login_id: str, issued_at: float) -> None:
        """Log a cookie out for good (until it would have expired anyway)."""
        self.state.end_login(login_id, issued_at + self.max_age)

    def end_every_login(self) -> None:
        """Log every cookie out, on every server of the state: a new key signs from now on."""
        self.state.replace_signing_key(secrets.token_bytes(auth.KEY_BYTES))

    def _verified_login(self, value: str, key: bytes, stored_hash):
        """``(login_id, issued_at)`` of a cookie signed with ``key``, unexpired and made under
        the password in force, else None.

        The fingerprint of the password in force is signed into each cookie, so changing
        the password logs every browser out.
        """
        try:
            payload, issued = self._serializer_for(key).loads(value, max_age=self.max_age, return_timestamp=True)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
            return None
        if not hmac.compare_digest(str(payload.get("pw", "")), self._password_fingerprint(key, stored_hash)):
            return None
        return payload["id"], issued.timestamp()

    def _serializer_for(self, key: bytes) -> URLSafeTimedSerializer:
        cached_key, serializer = self._serializer
        if cached_key != key:
            serializer = URLSafeTimedSerializer(key, salt=COOKIE_SALT)
            self._serializer = (key, serializer)
        return serializer

    def _password_fingerprint(self, key: bytes, stored_hash) -> str:
        if self._env_password is not None:
            material = self._env_password
        elif stored_hash:
            material = stored_hash.encode("ascii")
        else:
            return ""
        # Keyed, so the cookie reveals nothing about the password or its hash.
        return hmac.new(key, b"password\0" + material, hashlib.sha256).hexdigest()[:32]

    def _required(self, password_hash) -> bool:
        return not self.by_proxy and password_hash is not None


def _call(function, *args):
    return function(*args)


def _looks_like_token(token) -> bool:
    return bool(token) and token.startswith(auth.TOKEN_PREFIX) and len(token) <= MAX_TOKEN_CHARS


def _unverified_login_id(value):
    """The login id a cookie claims, or None; nothing is trusted until its signature is."""
    if not value or len(value) > MAX_COOKIE_CHARS:
        return None
    try:
        _, payload = _UNVERIFIED.loads_unsafe(value)
    except Exception:  # whatever hostile bytes make of the parser, never a 500: no login
        return None
    login_id = payload.get("id") if isinstance(payload, dict) else None
    return login_id if is_valid_id(login_id) else None
