"""Configuring the hermes agent: its settings, what a worker's environment keeps, and start-up
refusing (in one line) when Hermes Agent was asked for and cannot be imported."""

import sys

import pytest

from hermes_web.core.config import Config, ConfigError
from hermes_web.runs.agents.hermes import hermes_importable
from hermes_web.runs.agents.hermes_workers import worker_environment
from tests.support import free_port
from tests.test_cli import assert_one_line_failure, hermes_web


def test_settings_are_read_from_the_environment_and_the_key_is_a_known_secret(tmp_path):
    config = Config.from_env({
        "HERMES_WEB_DATA_DIR": str(tmp_path),
        "HERMES_WEB_HERMES_PYTHON": "/opt/hermes/venv/bin/python",
        "HERMES_WEB_HERMES_BASE_URL": "http://127.0.0.1:11434/v1",
        "HERMES_WEB_HERMES_MODEL": "qwen2.5",
        "HERMES_WEB_HERMES_API_KEY": "hermes-key-that-must-be-masked",
        "HERMES_WEB_HERMES_TOOLSETS": "terminal, file ,clarify",
        "HERMES_WEB_HERMES_PASS_ENV": "OPENROUTER_API_KEY",
        "HERMES_WEB_APPROVAL_TIMEOUT_S": "45",
    })
    assert config.hermes_python == "/opt/hermes/venv/bin/python"
    assert (config.hermes_base_url, config.hermes_model) == ("http://127.0.0.1:11434/v1", "qwen2.5")
    assert config.hermes_toolsets == ("terminal", "file", "clarify")
    assert config.hermes_pass_env == ("OPENROUTER_API_KEY",)
    assert config.approval_timeout == 45
    assert "hermes-key-that-must-be-masked" in config.known_secrets
    assert "hermes-key-that-must-be-masked" not in repr(config)


@pytest.mark.parametrize("env", [
    {"HERMES_WEB_HERMES_BASE_URL": "ftp://example.org"},
    {"HERMES_WEB_HERMES_TOOLSETS": "terminal;rm -rf /"},
    {"HERMES_WEB_APPROVAL_TIMEOUT_S": "0"},
    {"HERMES_WEB_APPROVAL_TIMEOUT_S": "soon"},
])
def test_malformed_settings_are_config_errors(tmp_path, env):
    with pytest.raises(ConfigError):
        Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path), **env})


def test_a_worker_gets_the_shell_basics_and_hermes_settings_never_the_servers_secrets():
    environ = {
        "PATH": "/usr/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
        "HERMES_HOME": "/home/me/.hermes", "TIRITH_BIN": "/usr/local/bin/tirith", "HTTPS_PROXY": "http://proxy:3128",
        "HERMES_WEB_PASSWORD": "server-password", "HERMES_WEB_HERMES_API_KEY": "hermes-key",
        "OPENAI_API_KEY": "sk-server", "AWS_SECRET_ACCESS_KEY": "aws", "OPENROUTER_API_KEY": "or-key",
        "GITHUB_TOKEN": "ghp",
    }
    passed = worker_environment(environ, extra_names=("OPENROUTER_API_KEY",))
    assert passed == {
        "PATH": "/usr/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
        "HERMES_HOME": "/home/me/.hermes", "TIRITH_BIN": "/usr/local/bin/tirith", "HTTPS_PROXY": "http://proxy:3128",
        "OPENROUTER_API_KEY": "or-key",
    }


def test_an_interpreter_without_hermes_is_not_offered():
    assert hermes_importable(sys.executable) == _spec("run_agent")
    assert hermes_importable("/nonexistent/python") is False


def _spec(name) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("env, mentions", [
    ({"HERMES_WEB_HERMES_PYTHON": "/nonexistent/python"}, ["/nonexistent/python", "HERMES_WEB_HERMES_PYTHON", "hermes-web[hermes]"]),
    ({"HERMES_WEB_HERMES_PYTHON": sys.executable, "HERMES_WEB_DEFAULT_AGENT": "hermes"}, ["Hermes Agent cannot be imported"]),
], ids=["missing-interpreter", "default-agent-without-hermes"])
def test_asking_for_hermes_without_it_refuses_to_start_in_one_line(tmp_path, env, mentions):
    if _spec("run_agent"):
        pytest.skip("this interpreter has Hermes Agent")
    outcome = hermes_web("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "var"), env=env)
    assert_one_line_failure(outcome, 1, *mentions)
