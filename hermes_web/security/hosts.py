"""Which ``Host`` and ``Origin`` header values name this server (PROTOCOL 2.5).

Pure functions over header values; the web layer (``hermes_web/web/guard.py``) applies them.
"""

import ipaddress
import socket
import urllib.parse

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})


def is_loopback(bind_host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    host = (bind_host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str):
    """``(host, port or None)`` of a ``Host`` header value, lower case; None if malformed.

    ``[::1]:8787`` gives ``("::1", 8787)``. A trailing dot (``localhost.``) names the same
    host, so it is dropped.
    """
    if not value or len(value) > 300 or any(ch in value for ch in " \t,/\\@?#"):
        return None
    value = value.lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, _, port_text = value.partition(":")
        rest = ":" + port_text if _ else ""
    if rest and (not rest.startswith(":") or not rest[1:].isascii() or not rest[1:].isdigit() or len(rest) > 6):
        return None
    port = int(rest[1:]) if rest else None
    host = host.rstrip(".")
    if not host or (port is not None and not 0 < port < 65536):
        return None
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The names this server answers to.

    Always ``localhost``, ``127.0.0.1``, ``[::1]``, the bound address and the configured
    names (an entry starting with a dot also allows every name under it). Bound beyond
    loopback, also any IP-address literal and the machine's own names: DNS rebinding needs
    a name the attacker controls, and neither an address nor this machine's name is one.
    """

    def __init__(self, bind_host: str, extra_names=(), machine_names=None):
        self.allow_any = "*" in extra_names
        names = set(LOOPBACK_NAMES)
        bound = (bind_host or "").strip("[]").lower()
        if bound not in WILDCARD_ADDRESSES:
            names.add(bound)
        self.beyond_loopback = not is_loopback(bind_host)
        if self.beyond_loopback:
            names.update(machine_names if machine_names is not None else _machine_names())
        suffixes = set()
        for name in extra_names:
            name = name.strip().lower().strip("[]").rstrip(".")
            if name.startswith("."):
                suffixes.add(name)
            elif name and name != "*":
                names.add(name)
        self.names = frozenset(names)
        self.suffixes = tuple(sorted(suffixes))

    def allows(self, host_header: str) -> bool:
        """Whether a request whose ``Host`` is ``host_header`` is for this server.

        Stops DNS rebinding: a page on ``http://evil.example:8787`` whose name was re-pointed
        at 127.0.0.1 reaches this server with ``Host: evil.example:8787`` and is refused.
        The port is not checked: it is the same in a rebinding attack, and a proxy may
        change it.
        """
        if self.allow_any:
            return True
        parsed = split_host(host_header)
        if parsed is None:
            return False
        host = parsed[0]
        if host in self.names or any(host.endswith(suffix) for suffix in self.suffixes):
            return True
        return self.beyond_loopback and _is_ip(host)


def same_origin(origin: str, host_header: str, request_scheme: str) -> bool:
    """Whether ``Origin`` is the page this server itself served.

    Stops cross-site request forgery: a page on another site, or on another port of this
    machine (same *site*, so ``SameSite`` cookies still go along), sends its own origin.
    The origin's host and port must equal the ``Host`` the request was sent to (a missing
    port meaning the scheme's default). A request that came over TLS must come from an
    ``https`` page; a plain one may come from either, because a TLS-terminating proxy
    forwards ``https`` pages' requests over plain HTTP.
    """
    if not origin or origin == "null" or len(origin) > 300:
        return False
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in DEFAULT_PORTS or parsed.path or parsed.query or parsed.fragment or parsed.username:
        return False
    if request_scheme == "https" and parsed.scheme != "https":
        return False
    origin_host = split_host(parsed.netloc)
    target = split_host(host_header)
    if origin_host is None or target is None:
        return False
    default = DEFAULT_PORTS[parsed.scheme]
    return origin_host[0] == target[0] and (origin_host[1] or default) == (target[1] or default)


def _machine_names() -> set:
    name = socket.gethostname().lower().rstrip(".")
    if not name:
        return set()
    short = name.split(".", 1)[0]
    return {name, short, f"{short}.local"}
