"""The login state of several real ``hermes-web serve`` processes on one real redis-server
(docs/security.md, "Several servers"): one password, one signing key, the tokens, the
logouts and the failed-login counts hold on every server at the next request."""

import os
import subprocess
import sys
import threading

import pytest

from hermes_web.core.config import Config
from hermes_web.store.redis import RedisFailureWindow, connect, open_auth_state
from tests.redis_server import require_redis_server
from tests.support import ROOT, request
from tests.test_login import login

PASSWORD = "one password for every server"


@pytest.fixture
def shared(redis_server):
    """The session's redis-server, flushed."""
    require_redis_server()
    redis_server.flush()
    return redis_server


@pytest.fixture
def cluster(shared, server_factory, tmp_path):
    """``(start(name), cli(*args, stdin="", data_dir=None))`` on the shared Redis, whose
    password the command line has just set."""
    env = {"HERMES_WEB_STORE": shared.url, "HERMES_WEB_UPLOADS_DIR": str(tmp_path / "shared-uploads"),
           "HERMES_WEB_PASSWORD": None}

    def cli(*args, stdin="", data_dir=None):
        done = subprocess.run([sys.executable, "-m", "hermes_web", *args, "--data-dir", str(data_dir or tmp_path / "cli-var")],
                              cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
                              env={name: value for name, value in {**os.environ, **env}.items() if value is not None})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(name):
        return server_factory(data_dir=tmp_path / f"{name}-var", env=env)

    assert "Redis (hermes:auth:password)" in cli("set-password", stdin=PASSWORD + "\n")
    return start, cli


def status_with(server, **headers) -> int:
    return request(server.url, "GET", "/api/sessions", headers=headers)[0]


def test_a_login_on_one_server_opens_every_other_and_a_new_password_closes_them_all(cluster):
    start, cli = cluster
    one, two = start("one"), start("two")
    assert status_with(one) == status_with(two) == 401  # the password in Redis is required by both
    status, _, _, cookie = login(one, PASSWORD)
    assert status == 200
    assert status_with(one, Cookie=cookie) == status_with(two, Cookie=cookie) == 200
    assert not (one.data_dir / "auth" / "password").exists()  # nothing of it in the data dirs

    cli("set-password", stdin="the password from now on\n", data_dir=two.data_dir)
    assert status_with(one, Cookie=cookie) == status_with(two, Cookie=cookie) == 401
    assert login(one, PASSWORD)[0] == 401
    status, _, _, cookie = login(two, "the password from now on")
    assert status == 200 and status_with(one, Cookie=cookie) == 200


def test_a_token_made_by_the_cli_works_on_every_server_until_it_is_revoked(cluster):
    start, cli = cluster
    one, two = start("one"), start("two")
    token = cli("token", "create", "backup").strip()
    assert cli("token", "list").startswith("backup\tcreated ")
    bearer = {"Authorization": f"Bearer {token}"}
    assert status_with(one, **bearer) == status_with(two, **bearer) == 200
    assert one.api("GET", "/api/auth", headers=bearer)[1]["credential"] == "token"

    cli("token", "revoke", "backup", data_dir=two.data_dir)
    assert status_with(one, **bearer) == status_with(two, **bearer) == 401  # the very next request
    assert cli("token", "list") == ""


def test_a_logout_ends_that_login_on_every_server_and_logout_everywhere_ends_all(cluster):
    start, _ = cluster
    one, two = start("one"), start("two")
    first, second, third = (login(server, PASSWORD)[3] for server in (one, two, two))

    status, _, _ = request(two.url, "POST", "/api/logout", headers={"Cookie": first})
    assert status == 204
    assert status_with(one, Cookie=first) == status_with(two, Cookie=first) == 401
    assert status_with(one, Cookie=second) == 200  # only that login ended

    status, _, _ = request(one.url, "POST", "/api/logout", {"everywhere": True}, headers={"Cookie": second})
    assert status == 204
    for cookie in (second, third):
        assert status_with(one, Cookie=cookie) == status_with(two, Cookie=cookie) == 401
    fresh = login(two, PASSWORD)[3]  # signed with the new key, accepted everywhere
    assert status_with(one, Cookie=fresh) == status_with(two, Cookie=fresh) == 200


def test_failed_logins_are_counted_across_servers(cluster):
    start, _ = cluster
    one, two = start("one"), start("two")
    for attempt in range(5):  # HERMES_WEB_LOGIN_ATTEMPTS' default, spread over both servers
        assert login((one, two)[attempt % 2], "a wrong guess")[0] == 401
    for server in (one, two):
        status, body, headers, cookie = login(server, PASSWORD)  # even the right password waits
        assert status == 429 and body["error"]["code"] == "too_many_attempts" and cookie is None
        assert 1 <= int(headers["Retry-After"]) <= 300
    assert login(one, PASSWORD, source="127.0.0.2")[0] == 200  # another address is not held back


def test_the_shared_window_slides_and_servers_starting_at_once_agree_on_the_key(shared):
    client = connect(shared.url)
    try:
        clock_free = RedisFailureWindow(client, attempts=2, window=0.4)
        clock_free.record_failure("192.0.2.1")
        assert clock_free.retry_after("192.0.2.1") == 0
        clock_free.record_failure("192.0.2.1")
        assert 0 < clock_free.retry_after("192.0.2.1") <= 0.4
        assert clock_free.retry_after("192.0.2.2") == 0
        clock_free.forget("192.0.2.1")
        assert clock_free.retry_after("192.0.2.1") == 0

        config = Config.from_env({"HERMES_WEB_STORE": shared.url})
        states = [open_auth_state(config) for _ in range(8)]
        barrier = threading.Barrier(len(states))
        keys = []

        def first_start(state):
            barrier.wait()
            keys.append(state.signing_key())

        threads = [threading.Thread(target=first_start, args=(state,)) for state in states]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(keys) == len(states) and len(set(keys)) == 1
    finally:
        client.close()
