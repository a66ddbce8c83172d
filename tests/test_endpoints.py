"""Endpoint configuration: the ``openai`` agent from the environment, named agents from
``agents.toml`` in the data dir, the default agent, and a clear error for every mistake."""

import subprocess
import sys

import pytest

from hermes_web.core.config import Config, ConfigError
from tests.support import ROOT

FILE = """
default_agent = "local"

[agents.local]
base_url = "http://127.0.0.1:11434/v1"
model = "llama3.2"
vision = false
tools = false
max_steps = 4
timeout = 300
system_prompt = "You are terse."
temperature = 0.2

[agents.router]
base_url = "https://openrouter.ai/api/v1"
model = "openai/gpt-4o-mini"
api_key_env = "ROUTER_KEY"
models = ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"]

[agents.keyed]
base_url = "https://llm.example.org/v1"
model = "m"
api_key = "file-key-0123456789"
"""


def config_with(tmp_path, text, **env):
    (tmp_path / "agents.toml").write_text(text)
    return Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path), **env})


def test_named_endpoints_come_from_the_agents_file_in_the_data_dir(tmp_path):
    config = config_with(tmp_path, FILE, ROUTER_KEY="router-key-0123456789")
    local, router, keyed = config.agent_endpoints()
    assert config.default_agent == "local" and config.agents_file == tmp_path / "agents.toml"
    assert (local.name, local.base_url, local.model, local.vision, local.tools, local.max_steps, local.timeout) == (
        "local", "http://127.0.0.1:11434/v1", "llama3.2", False, False, 4, 300)
    assert local.system_prompt == "You are terse." and local.temperature == 0.2 and local.api_key == ""
    assert router.api_key == "router-key-0123456789" and router.key_source == "ROUTER_KEY"
    assert router.models == ("openai/gpt-4o-mini", "anthropic/claude-3.5-haiku") and router.vision and router.tools
    assert keyed.api_key == "file-key-0123456789" and "agents.toml" in keyed.key_source
    # Keys from the file are known secrets, wherever they came from.
    assert {"router-key-0123456789", "file-key-0123456789"} <= set(config.known_secrets)
    assert "router-key" not in repr(config) and "file-key" not in repr(local) + repr(keyed)


def test_the_environment_defines_the_openai_agent_first_and_wins_for_the_default(tmp_path):
    config = config_with(tmp_path, FILE, HERMES_WEB_OPENAI_BASE_URL="http://127.0.0.1:8000/v1",
                         HERMES_WEB_OPENAI_MODEL="qwen", HERMES_WEB_OPENAI_VISION="0", HERMES_WEB_OPENAI_MAX_STEPS="3",
                         HERMES_WEB_OPENAI_TIMEOUT_S="9.5", HERMES_WEB_DEFAULT_AGENT="openai")
    openai = config.agent_endpoints()[0]
    assert (openai.name, openai.model, openai.vision, openai.max_steps, openai.timeout) == ("openai", "qwen", False, 3, 9.5)
    assert openai.key_source == "OPENAI_API_KEY (not set)" and config.default_agent == "openai"
    unset = config_with(tmp_path, FILE).agent_endpoints()[1]
    assert unset.key_source == "ROUTER_KEY (not set)" and unset.api_key == ""


def test_no_file_means_demo_and_the_environment_only(tmp_path):
    config = Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path)})
    assert config.agent_endpoints() == () and config.default_agent == "demo"
    elsewhere = tmp_path / "conf" / "mine.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('[agents.x]\nbase_url = "http://h/v1"\nmodel = "m"\n')
    moved = Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path), "HERMES_WEB_AGENTS_FILE": str(elsewhere)})
    assert [endpoint.name for endpoint in moved.agent_endpoints()] == ["x"]


MISTAKES = [
    ("[agents.x]\nbase_url = 'http://h/v1'\n", "model is required"),
    ("[agents.x]\nmodel = 'm'\n", "base_url is required"),
    ("[agents.x]\nbase_url = 'ftp://h'\nmodel = 'm'\n", "base_url must be http(s)"),
    ("[agents.x]\nbase_url = 'http://h/v1'\nmodel = 'm'\nmodle = 'typo'\n", "unknown key(s) modle"),
    ("[agents.demo]\nbase_url = 'http://h/v1'\nmodel = 'm'\n", "not be 'demo'"),
    ("[agents.'a b']\nbase_url = 'http://h/v1'\nmodel = 'm'\n", "must match"),
    ("[agents.x]\nbase_url = 'http://h/v1'\nmodel = 'm'\nmax_steps = 0\n", "max_steps must be"),
    ("[agents.x]\nbase_url = 'http://h/v1'\nmodel = 'm'\ntemperature = 3\n", "temperature must be"),
    ("[agents.x]\nbase_url = 'http://h/v1'\nmodel = 'm'\nvision = 'no'\n", "vision must be true or false"),
    ("[agents.x]\nbase_url = 'http://h/v1'\nmodel = 'm'\nmodels = 'm'\n", "models must be a list"),
    ("[agents.x]\nbase_url = 'http://h/v1'\nmodel = 'm'\napi_key = 'k'\napi_key_env = 'K'\n", "not both"),
    ("default_agent = 'nope'\n", "default agent 'nope' is not configured"),
    ("agents = 3\n", "agents must be tables"),
    ("[agent.x]\n", "unknown key(s) agent"),
    ("[agents.x\n", "agents.toml"),
]


@pytest.mark.parametrize("text, problem", MISTAKES)
def test_every_mistake_in_the_file_is_a_config_error_naming_it(tmp_path, text, problem):
    with pytest.raises(ConfigError) as raised:
        config_with(tmp_path, text)
    assert problem in str(raised.value)


def test_the_openai_agent_cannot_be_defined_twice(tmp_path):
    with pytest.raises(ConfigError, match="rename the one in the file"):
        config_with(tmp_path, "[agents.openai]\nbase_url = 'http://h/v1'\nmodel = 'm'\n",
                    HERMES_WEB_OPENAI_BASE_URL="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="HERMES_WEB_OPENAI"):
        Config.from_env({"HERMES_WEB_DATA_DIR": str(tmp_path), "HERMES_WEB_OPENAI_BASE_URL": "localhost:8080"})


def test_the_server_refuses_to_start_with_a_broken_file_and_says_why(tmp_path):
    (tmp_path / "agents.toml").write_text("[agents.x]\nbase_url = 'http://h/v1'\n")
    result = subprocess.run([sys.executable, "-m", "hermes_web", "serve", "--data-dir", str(tmp_path), "--port", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "[agents.x]: model is required" in result.stderr
