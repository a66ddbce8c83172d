"""OpenAI-compatible endpoints: the ``openai`` one from the environment, and named ones
from ``agents.toml`` in the data dir. Each becomes an agent of that name.

The file (documented in the README)::

    default_agent = "ollama"          # optional; HERMES_WEB_DEFAULT_AGENT wins

    [agents.ollama]
    base_url = "http://127.0.0.1:11434/v1"
    model = "llama3.2"

    [agents.openrouter]
    base_url = "https://openrouter.ai/api/v1"
    model = "openai/gpt-4o-mini"
    api_key_env = "OPENROUTER_API_KEY"   # or api_key = "..." (the file is 0600 in a 0700 dir)

Every mistake is a :class:`ConfigError` naming the file, the agent and the key.
"""

import dataclasses
import math
import os
import re
import sys
import urllib.parse

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

AGENTS_FILE_NAME = "agents.toml"
ENV_AGENT_NAME = "openai"
RESERVED_NAMES = frozenset({"demo"})
DEFAULT_MAX_STEPS = 10
MAX_MAX_STEPS = 100
DEFAULT_TIMEOUT_SECONDS = 120.0
MAX_TEMPERATURE = 2.0
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class EndpointError(ValueError):
    """A malformed endpoint setting (the message names it)."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible endpoint and how the agent of that name uses it."""

    name: str
    base_url: str
    model: str
    api_key: str = dataclasses.field(default="", repr=False)
    # Where the key comes from, for error messages ("OPENAI_API_KEY", "api_key in agents.toml").
    key_source: str = ""
    models: tuple = ()  # offered models; empty = ask the endpoint's /models
    vision: bool = True  # send image attachments as image parts
    tools: bool = True  # offer the built-in tools (off for models or servers without tool calling)
    max_steps: int = DEFAULT_MAX_STEPS  # model requests per run (tool rounds + the answer)
    timeout: float = DEFAULT_TIMEOUT_SECONDS  # seconds the provider may stay silent
    system_prompt: str = ""  # used when the session sets none
    temperature: float = None  # used when the session sets none; None = the provider's

    def __post_init__(self):
        if not _NAME.fullmatch(self.name) or self.name in RESERVED_NAMES:
            raise EndpointError(f"agent name {self.name!r} must match [A-Za-z0-9_-]{{1,64}} and not be 'demo'")
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise EndpointError(f"base_url must be http(s)://host[:port]/path, not {self.base_url!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise EndpointError("model must be a non-empty string")
        if not all(isinstance(model, str) and model.strip() for model in self.models):
            raise EndpointError("models must be a list of non-empty strings")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or not 1 <= self.max_steps <= MAX_MAX_STEPS:
            raise EndpointError(f"max_steps must be a whole number from 1 to {MAX_MAX_STEPS}")
        if not _is_number(self.timeout) or not 0 < self.timeout <= 3600:
            raise EndpointError("timeout must be a number of seconds in (0, 3600]")
        if self.temperature is not None and not (_is_number(self.temperature) and 0 <= self.temperature <= MAX_TEMPERATURE):
            raise EndpointError(f"temperature must be a number from 0 to {MAX_TEMPERATURE:g}")
        if not isinstance(self.system_prompt, str):
            raise EndpointError("system_prompt must be a string")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Keys of an [agents.NAME] table, and the Endpoint field each sets.
_FILE_KEYS = {
    "base_url": "base_url", "model": "model", "api_key": "api_key", "models": "models", "vision": "vision", "tools": "tools",
    "max_steps": "max_steps", "timeout": "timeout", "system_prompt": "system_prompt", "temperature": "temperature",
}


def load_agents_file(path, environ) -> tuple:
    """``(default_agent or None, endpoints)`` from an agents file; ``((None, ()))`` if absent."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None, ()  # no file (or no data dir yet: start-up says what is wrong with it)
    except PermissionError as error:
        if not os.access(os.path.dirname(os.path.abspath(path)), os.R_OK | os.X_OK):
            return None, ()  # the data dir itself is unreadable: start-up says so, in its words
        raise EndpointError(f"{path}: {error}") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise EndpointError(f"{path}: {error}") from None
    unknown = set(document) - {"default_agent", "agents"}
    if unknown:
        raise EndpointError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (expected default_agent, [agents.NAME])")
    default = document.get("default_agent")
    if default is not None and not isinstance(default, str):
        raise EndpointError(f"{path}: default_agent must be a string")
    tables = document.get("agents", {})
    if not isinstance(tables, dict):
        raise EndpointError(f"{path}: agents must be tables: [agents.NAME]")
    endpoints = []
    for name, table in tables.items():
        where = f"{path}: [agents.{name}]"
        if not isinstance(table, dict):
            raise EndpointError(f"{where} must be a table")
        unknown = set(table) - set(_FILE_KEYS) - {"api_key_env"}
        if unknown:
            raise EndpointError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (expected {', '.join(_FILE_KEYS)}, api_key_env)")
        values = {_FILE_KEYS[key]: value for key, value in table.items() if key in _FILE_KEYS}
        for key in ("base_url", "model"):
            if key not in values:
                raise EndpointError(f"{where}: {key} is required")
        for key in ("base_url", "model", "api_key"):
            if key in values and not isinstance(values[key], str):
                raise EndpointError(f"{where}: {key} must be a string")
        if "api_key" in table and "api_key_env" in table:
            raise EndpointError(f"{where}: give api_key or api_key_env, not both")
        if "api_key" in table:
            values["key_source"] = f"api_key of [agents.{name}] in {path}"
        if "api_key_env" in table:
            variable = table["api_key_env"]
            if not isinstance(variable, str) or not variable:
                raise EndpointError(f"{where}: api_key_env must name an environment variable")
            values["api_key"] = environ.get(variable, "")
            values["key_source"] = variable + ("" if values["api_key"] else " (not set)")
        if "models" in values:
            if not isinstance(values["models"], list):
                raise EndpointError(f"{where}: models must be a list of strings")
            values["models"] = tuple(values["models"])
        for key in ("vision", "tools"):
            if key in values and not isinstance(values[key], bool):
                raise EndpointError(f"{where}: {key} must be true or false")
        try:
            endpoints.append(Endpoint(name=name, **values))
        except EndpointError as error:
            raise EndpointError(f"{where}: {error}") from None
    return default, tuple(endpoints)
