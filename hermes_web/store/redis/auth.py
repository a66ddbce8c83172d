"""The login state in Redis: one password hash, one signing key, the tokens, the ended
logins and the failed-login windows of every server on that Redis (docs/security.md).

The same interface as the data dir's files (``hermes_web.security.auth_state``, which this
package does not import; both answer requests with ``core.login_state.RequestState``). Nothing
is cached: each request reads what it needs in one pipelined round trip, so a token revoked
or a login ended on one server is refused by every other at its next request.
"""

import secrets

import orjson

from hermes_web.core.login_state import SIGNING_KEY_BYTES, RequestState
from hermes_web.store.redis import scripts
from hermes_web.store.redis.client import KEYS, reaching


class RedisAuthState:
    """The state every server on one Redis checks credentials against."""

    where = f"Redis ({KEYS.password})"

    def __init__(self, client):
        self.client = client
        self._add_token = client.register_script(scripts.ADD_TOKEN)
        self._revoke_token = client.register_script(scripts.REVOKE_TOKEN)

    @reaching
    def request_state(self, token_sha256: str = None, login_id: str = None):
        pipeline = self.client.pipeline(transaction=False)
        pipeline.get(KEYS.password)
        if login_id is not None:
            pipeline.get(KEYS.signing_key)
            pipeline.exists(KEYS.ended_login(login_id))
        if token_sha256 is not None:
            pipeline.hget(KEYS.tokens, token_sha256)
        replies = iter(pipeline.execute())
        state = {"password_hash": _text(next(replies))}
        if login_id is not None:
            state.update(signing_key=next(replies) or None, login_ended=bool(next(replies)))
        if token_sha256 is not None:
            state["token_name"] = _text(next(replies))
        return RequestState(**state)

    @reaching
    def password_hash(self):
        return _text(self.client.get(KEYS.password))

    @reaching
    def store_password_hash(self, stored: str) -> None:
        self.client.set(KEYS.password, stored)

    @reaching
    def signing_key(self) -> bytes:
        """Made by the first server that needs it (SET NX): servers starting at once agree."""
        key = self.client.get(KEYS.signing_key)
        if not key:
            self.client.set(KEYS.signing_key, secrets.token_bytes(SIGNING_KEY_BYTES), nx=True)
            key = self.client.get(KEYS.signing_key)
        return key

    @reaching
    def replace_signing_key(self, key: bytes) -> None:
        self.client.set(KEYS.signing_key, key)

    @reaching
    def tokens(self) -> list:
        entries = []
        for name, entry in self.client.hgetall(KEYS.token_names).items():
            item = orjson.loads(entry)
            entries.append({"name": name.decode("utf-8", "surrogatepass"), "sha256": item.get("sha256"),
                            "created_at": item.get("created_at", 0)})
        return sorted(entries, key=lambda item: item["created_at"])

    @reaching
    def add_token(self, name: str, sha256: str, created_at: float) -> bool:
        entry = orjson.dumps({"sha256": sha256, "created_at": round(created_at, 3)})
        return bool(self._add_token(keys=[KEYS.tokens, KEYS.token_names], args=[name, sha256, entry]))

    @reaching
    def revoke_token(self, name: str) -> bool:
        return bool(self._revoke_token(keys=[KEYS.tokens, KEYS.token_names], args=[name]))

    @reaching
    def end_login(self, login_id: str, expires_at: float) -> None:
        # Kept exactly as long as the cookie could still be presented, then gone by itself.
        self.client.set(KEYS.ended_login(login_id), b"1", exat=int(expires_at) + 1)


class RedisFailureWindow:
    """Failed logins per client counted across every server (the sliding window of
    ``hermes_web.security.limits.FailureWindow``, one atomic script per step)."""

    def __init__(self, client, attempts: int, window: float):
        self.client = client
        self.attempts = attempts
        self.window_ms = max(1, int(window * 1000))
        self._script = client.register_script(scripts.LOGIN_FAILURES)

    @reaching
    def retry_after(self, key: str) -> float:
        return self._run(key, "") / 1000

    @reaching
    def record_failure(self, key: str) -> None:
        self._run(key, secrets.token_hex(8))

    @reaching
    def forget(self, key: str) -> None:
        self.client.delete(KEYS.login_failures(key))

    def _run(self, key: str, failure_id: str) -> int:
        return int(self._script(keys=[KEYS.login_failures(key)], args=[self.attempts, self.window_ms, failure_id]))


def _text(value):
    return value.decode("utf-8", "surrogatepass") if value is not None else None
