"""Choosing the store (HERMES_WEB_STORE), the shared upload root, and the check of Redis's
persistence settings against the server's fsync policy."""

import pytest

from hermes_web.core.config import Config, ConfigError
from hermes_web.store.redis import connect, durability_warnings


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://:secret@redis.internal:6380/2",
                                 "rediss://cache.example:6380/0", "unix:///run/redis/redis.sock?db=1"])
def test_a_redis_url_selects_the_shared_store(url, tmp_path):
    config = Config.from_env({"HERMES_WEB_STORE": url, "HERMES_WEB_UPLOADS_DIR": str(tmp_path / "up"),
                              "HERMES_WEB_DATA_DIR": str(tmp_path / "var")})
    assert config.store_url == url and config.uploads_dir == tmp_path / "up"
    assert "secret" not in repr(config)


@pytest.mark.parametrize("url", ["postgres://db/1", "redis://:hunter2@/0", "redis://host:99999/0", "/var/run/redis.sock"])
def test_anything_else_is_a_configuration_error_that_does_not_echo_the_url(url, tmp_path):
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"HERMES_WEB_STORE": url, "HERMES_WEB_DATA_DIR": str(tmp_path)})
    assert "HERMES_WEB_STORE" in str(raised.value) and url not in str(raised.value)


def test_the_files_stay_the_default(tmp_path):
    config = Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path)})
    assert config.store_url == "" and config.uploads_dir is None


def test_the_lease_is_bounded(tmp_path):
    with pytest.raises(ConfigError):
        Config.from_env({"HERMES_WEB_REDIS_LEASE_S": "0.1", "HERMES_WEB_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("settings, policy, warned", [
    ({"appendonly": "yes", "appendfsync": "everysec"}, "interval", None),
    ({"appendonly": "yes", "appendfsync": "everysec"}, "record", "appendfsync always"),
    ({"appendonly": "yes", "appendfsync": "always"}, "record", None),
    ({"appendonly": "no", "appendfsync": "everysec"}, "interval", "appendonly yes"),
    ({"appendonly": "yes", "appendfsync": "no"}, "terminal", "everysec or always"),
    ({"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "allkeys-lru"}, "interval", "noeviction"),
])
def test_redis_persistence_is_checked_against_the_fsync_policy(redis_server, settings, policy, warned):
    client = connect(redis_server.url)
    try:
        before = {name: client.config_get(name)[name] for name in ("appendonly", "appendfsync", "maxmemory-policy")}
        for name, value in {"maxmemory-policy": "noeviction", **settings}.items():
            client.config_set(name, value)
        warnings = durability_warnings(client, policy)
    finally:
        for name, value in before.items():
            client.config_set(name, value)
        client.close()
    if warned is None:
        assert warnings == []
    else:
        assert any(warned in warning for warning in warnings), warnings


def test_an_unreachable_redis_is_a_warning_not_a_crash(tmp_path):
    from tests.support import free_port

    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    assert "cannot be reached" in durability_warnings(client, "interval")[0]
