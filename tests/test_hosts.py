"""Which Host and Origin header values name this server (PROTOCOL 2.5): table-driven."""

import pytest

from hermes_web.security.hosts import HostPolicy, is_loopback, same_origin, split_host

MACHINE = {"studio", "studio.local"}


@pytest.mark.parametrize("value, expected", [
    ("localhost", ("localhost", None)),
    ("LocalHost:8787", ("localhost", 8787)),
    ("127.0.0.1:8787", ("127.0.0.1", 8787)),
    ("[::1]:8787", ("::1", 8787)),
    ("[::1]", ("::1", None)),
    ("localhost.:80", ("localhost", 80)),
    ("", None), (":8787", None), ("localhost:", None), ("localhost:0", None), ("localhost:65536", None),
    ("localhost:８０", None), ("localhost:1e3", None), ("[::1", None), ("[nonsense]:1", None), ("::1", None),
    ("evil.com,localhost", None), ("a b", None), ("user@localhost", None), ("localhost/x", None),
    ("x" * 400, None),
])
def test_split_host(value, expected):
    assert split_host(value) == expected


@pytest.mark.parametrize("bind, expected", [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("studio.local", False), ("", False),
])
def test_is_loopback(bind, expected):
    assert is_loopback(bind) is expected


LOOPBACK = HostPolicy("127.0.0.1", (), machine_names=MACHINE)
LAN = HostPolicy("0.0.0.0", ("hermes.example.org", ".tail1234.ts.net"), machine_names=MACHINE)
ANY = HostPolicy("127.0.0.1", ("*",), machine_names=MACHINE)


@pytest.mark.parametrize("policy, host, allowed", [
    (LOOPBACK, "127.0.0.1:8787", True),
    (LOOPBACK, "localhost:8787", True),
    (LOOPBACK, "[::1]:8787", True),
    (LOOPBACK, "LOCALHOST", True),
    # DNS rebinding: the attacker's own name, re-pointed at 127.0.0.1.
    (LOOPBACK, "rebind.attacker.example:8787", False),
    (LOOPBACK, "localhost.attacker.example", False),
    (LOOPBACK, "127.0.0.1.nip.io:8787", False),
    # On loopback, another address or the machine's name is not this server's name.
    (LOOPBACK, "192.168.1.20:8787", False),
    (LOOPBACK, "studio:8787", False),
    (LOOPBACK, "", False),
    (LOOPBACK, "evil.com, 127.0.0.1", False),
    (LAN, "192.168.1.20:8787", True),
    (LAN, "[fe80::1]:8787", True),
    (LAN, "studio:8787", True),
    (LAN, "studio.local:8787", True),
    (LAN, "hermes.example.org", True),
    (LAN, "phone.tail1234.ts.net", True),
    (LAN, "tail1234.ts.net", False),
    (LAN, "evil.tail1234.ts.net.attacker.example", False),
    (LAN, "rebind.attacker.example:8787", False),
    (LAN, "studio.local.attacker.example", False),
    (ANY, "anything.example", True),
])
def test_host_policy(policy, host, allowed):
    assert policy.allows(host) is allowed


def test_the_bound_address_is_allowed():
    assert HostPolicy("192.168.1.20", (), machine_names=set()).allows("192.168.1.20:8787")
    assert HostPolicy("hermes.lan", (), machine_names=set()).allows("hermes.lan")


@pytest.mark.parametrize("origin, host, scheme, expected", [
    ("http://127.0.0.1:8787", "127.0.0.1:8787", "http", True),
    ("http://localhost:8787", "localhost:8787", "http", True),
    ("https://hermes.example.org", "hermes.example.org", "http", True),  # TLS ended by a proxy
    ("https://hermes.example.org", "hermes.example.org:443", "https", True),
    ("http://hermes.example.org:80", "hermes.example.org", "http", True),
    # Another port of the same machine is the same site, but another origin.
    ("http://127.0.0.1:9999", "127.0.0.1:8787", "http", False),
    ("http://localhost:8787", "127.0.0.1:8787", "http", False),
    ("http://evil.example", "127.0.0.1:8787", "http", False),
    ("http://hermes.example.org", "hermes.example.org", "https", False),  # plain page, TLS server
    ("https://hermes.example.org", "hermes.example.org:8443", "https", False),
    ("null", "127.0.0.1:8787", "http", False),
    ("", "127.0.0.1:8787", "http", False),
    ("file://", "127.0.0.1:8787", "http", False),
    ("http://127.0.0.1:8787/path", "127.0.0.1:8787", "http", False),
    ("http://user@127.0.0.1:8787", "127.0.0.1:8787", "http", False),
    ("chrome-extension://abc", "127.0.0.1:8787", "http", False),
])
def test_same_origin(origin, host, scheme, expected):
    assert same_origin(origin, host, scheme) is expected
