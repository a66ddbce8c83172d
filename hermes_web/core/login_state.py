"""What a store of the login state answers a request with (docs/security.md): the value the
data dir's files (``security.auth_state``) and the shared Redis (``store.redis.auth``) both
return, kept below both so neither imports the other."""

import dataclasses
from typing import Optional

# The cookie signing key: 256 random bits.
SIGNING_KEY_BYTES = 32


@dataclasses.dataclass(frozen=True)
class RequestState:
    """What one request's credential is checked against, read together."""

    password_hash: Optional[str]
    # None when no cookie was presented, or no key was made yet (so no cookie can be valid).
    signing_key: Optional[bytes] = None
    # The name of the presented token; None when none was presented or it is not stored.
    token_name: Optional[str] = None
    # The presented cookie's login was logged out.
    login_ended: bool = False
