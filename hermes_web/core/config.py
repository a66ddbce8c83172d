"""Configuration: one frozen value object, read from the environment once."""

import dataclasses
import os
import re
import urllib.parse
from pathlib import Path

from hermes_web.core.endpoints import (
    AGENTS_FILE_NAME,
    DEFAULT_MAX_STEPS,
    DEFAULT_TIMEOUT_SECONDS,
    ENV_AGENT_NAME,
    Endpoint,
    EndpointError,
    load_agents_file,
)
from hermes_web.core.startup import StartupError

FSYNC_POLICIES = ("record", "interval", "terminal")
DEMO_AGENT = "demo"
HERMES_AGENT = "hermes"


class ConfigError(StartupError, ValueError):
    """A configuration value is malformed."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the server can be told; defaults are the embedded defaults."""

    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8787
    # "interval" bounds loss on power failure to one interval; run.started and
    # terminal records are fsynced under every policy.
    fsync_policy: str = "interval"
    fsync_interval: float = 0.2
    demo_delay_ms: int = 40
    max_upload_bytes: int = 20 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    # A session export can be much larger than any other request body.
    max_import_bytes: int = 64 * 1024 * 1024
    # Durable Streams (docs/durable-streams.md): the largest body one append may carry, and
    # how long a live read waits for data before it answers "nothing yet".
    max_append_bytes: int = 8 * 1024 * 1024
    long_poll_seconds: float = 20.0
    redact_at_rest: bool = True
    heartbeat_seconds: float = 15.0
    sse_retry_ms: int = 2000
    # An OpenAI-compatible endpoint (e.g. https://api.openai.com/v1); empty = demo only.
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    openai_api_key: str = dataclasses.field(default="", repr=False)
    openai_vision: bool = True  # image attachments reach the model as image parts
    openai_tools: bool = True  # the model is offered the built-in tools
    openai_max_steps: int = DEFAULT_MAX_STEPS  # model requests per run
    openai_timeout: float = DEFAULT_TIMEOUT_SECONDS  # seconds the provider may stay silent
    # Named endpoints from the agents file (agents.toml in the data dir), and where it is.
    endpoints: tuple = ()
    agents_file: Path = None
    # The agent of a run that names none, in a session that has not used one yet.
    default_agent: str = DEMO_AGENT
    # The hermes agent (Hermes Agent in worker processes): the interpreter that imports it
    # ("" = the server's own), and what overrides Hermes's own configuration ($HERMES_HOME).
    hermes_python: str = ""
    hermes_base_url: str = ""
    hermes_model: str = ""
    hermes_api_key: str = dataclasses.field(default="", repr=False)
    hermes_toolsets: tuple = ()
    hermes_pass_env: tuple = ()
    # False for a provider that cannot stream (it answers a streamed request with one JSON
    # body): Hermes then asks without streaming, and the answer arrives whole.
    hermes_stream: bool = True
    # GET /metrics and the counting behind it (docs/deploy.md#metrics).
    metrics: bool = True
    # Seconds an approval or a clarifying question waits for a person before it is settled
    # by the timeout (an approval as "deny").
    approval_timeout: float = 300.0
    # The run watchdog: the longest a run may last, and the longest its agent may give no
    # sign of life while nobody is asked anything; either ends the run failed.
    run_timeout: float = 1800.0
    run_silence: float = 300.0
    # Exact secret values the server knows (provider keys, its password): always masked.
    known_secrets: tuple = dataclasses.field(default=(), repr=False)
    # Who may talk to the server (docs/security.md). Extra Host names ("*" turns the check off).
    allowed_hosts: tuple = ()
    # A password given in the environment wins over the one `hermes-web set-password` stored.
    password: str = dataclasses.field(default="", repr=False)
    # An authenticating reverse proxy in front decides who gets in: the server asks nothing.
    auth_by_proxy: bool = False
    certfile: str = ""
    keyfile: str = ""
    login_days: float = 30.0
    login_attempts: int = 5
    login_window_seconds: float = 300.0
    # Connection limits (docs/security.md, "Limits").
    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    write_timeout: float = 30.0
    max_connections: int = 0  # 0: derived from the open-file limit
    max_connections_per_client: int = 128
    max_streams_per_client: int = 64
    # Where sessions and run logs live: empty for the data dir's files, or a Redis URL
    # (redis://host:port/db) shared by several servers (docs/redis.md). Not in repr: it
    # may carry a password.
    store_url: str = dataclasses.field(default="", repr=False)
    # The upload root; None for <data dir>/uploads. Servers sharing a store share it.
    uploads_dir: Path = None
    # How long a Redis-stored run outlives its owner's last renewal before another server
    # ends it with run.interrupted.
    redis_lease_seconds: float = 10.0

    def __post_init__(self):
        if self.fsync_policy not in FSYNC_POLICIES:
            raise ConfigError(f"HERMES_WEB_FSYNC must be one of {', '.join(FSYNC_POLICIES)}")
        if not 0 < self.fsync_interval <= 1.0:
            raise ConfigError("HERMES_WEB_FSYNC_INTERVAL_MS must be in 1..1000")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not in 0..65535 (--port or HERMES_WEB_PORT)")
        if self.hermes_base_url and not _is_http_url(self.hermes_base_url):
            raise ConfigError("HERMES_WEB_HERMES_BASE_URL must be an http:// or https:// URL with a host")
        if not 0 < self.approval_timeout <= 86400:
            raise ConfigError("HERMES_WEB_APPROVAL_TIMEOUT_S must be in (0, 86400] seconds")
        if not 0 < self.run_timeout <= 7 * 86400:
            raise ConfigError("HERMES_WEB_RUN_TIMEOUT_S must be in (0, 604800] seconds")
        if not 0 < self.run_silence <= 7 * 86400:
            raise ConfigError("HERMES_WEB_RUN_SILENCE_S must be in (0, 604800] seconds")
        if self.openai_base_url and not _is_http_url(self.openai_base_url):
            # The value is not echoed: a URL may carry credentials.
            raise ConfigError("HERMES_WEB_OPENAI_BASE_URL must be an http:// or https:// URL with a host, "
                              "e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("TLS needs both --certfile and --keyfile (HERMES_WEB_CERTFILE, HERMES_WEB_KEYFILE)")
        for name in ("header_timeout", "keepalive_timeout", "write_timeout", "login_window_seconds", "login_days"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{_SETTING_NAMES[name]} must be positive")
        for name in ("max_connections_per_client", "max_streams_per_client", "login_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_SETTING_NAMES[name]} must be at least 1")
        if not 0.1 <= self.long_poll_seconds <= 300:
            raise ConfigError("HERMES_WEB_LONG_POLL_S must be in 0.1..300 seconds")
        if self.max_append_bytes < 1:
            raise ConfigError("HERMES_WEB_MAX_APPEND_MB must be positive")
        if self.max_connections < 0:
            raise ConfigError("HERMES_WEB_MAX_CONNECTIONS must be 0 (from the open-file limit) or positive")
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.uploads_dir is not None:
            object.__setattr__(self, "uploads_dir", Path(self.uploads_dir))
        if self.store_url and not _is_store_url(self.store_url):
            # The value is not echoed: a URL may carry a password.
            raise ConfigError("HERMES_WEB_STORE must be empty (local files) or a Redis URL: "
                              "redis://host:port/db, rediss://... (TLS) or unix:///path/redis.sock")
        if not 0.5 <= self.redis_lease_seconds <= 300:
            raise ConfigError("HERMES_WEB_REDIS_LEASE_S must be in 0.5..300")
        names = [endpoint.name for endpoint in self.agent_endpoints()]
        if len(set(names)) != len(names):
            raise ConfigError(f"agent {ENV_AGENT_NAME!r} is set by HERMES_WEB_OPENAI_BASE_URL and by {self.agents_file}: "
                              "rename the one in the file")
        # "hermes" is checked when the agents are built: whether Hermes Agent can be
        # imported is not known before.
        if self.default_agent not in (DEMO_AGENT, HERMES_AGENT, *names):
            raise ConfigError(f"default agent {self.default_agent!r} is not configured "
                              f"(agents: {', '.join([DEMO_AGENT, *names])})")

    def agent_endpoints(self) -> tuple:
        """Every OpenAI-compatible endpoint: ``openai`` from the environment, then the file's."""
        endpoints = list(self.endpoints)
        if self.openai_base_url:
            try:
                endpoints.insert(0, Endpoint(
                    name=ENV_AGENT_NAME, base_url=self.openai_base_url, model=self.openai_model,
                    api_key=self.openai_api_key, key_source="OPENAI_API_KEY" + ("" if self.openai_api_key else " (not set)"),
                    vision=self.openai_vision, tools=self.openai_tools, max_steps=self.openai_max_steps, timeout=self.openai_timeout,
                ))
            except EndpointError as error:
                raise ConfigError(f"HERMES_WEB_OPENAI_*: {error}") from None
        return tuple(endpoints)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Config":
        """Build from ``HERMES_WEB_*`` variables; explicit overrides (CLI flags) win."""
        env = os.environ if environ is None else environ
        values = {}
        readers = {
            "HERMES_WEB_DATA_DIR": ("data_dir", Path),
            "HERMES_WEB_HOST": ("host", str),
            "HERMES_WEB_PORT": ("port", _parse_int),
            "HERMES_WEB_FSYNC": ("fsync_policy", str),
            "HERMES_WEB_FSYNC_INTERVAL_MS": ("fsync_interval", lambda v: _parse_int(v) / 1000),
            "HERMES_WEB_DEMO_DELAY_MS": ("demo_delay_ms", _parse_int),
            "HERMES_WEB_MAX_UPLOAD_MB": ("max_upload_bytes", lambda v: int(_parse_number(v) * 1024 * 1024)),
            "HERMES_WEB_MAX_IMPORT_MB": ("max_import_bytes", lambda v: int(_parse_number(v) * 1024 * 1024)),
            "HERMES_WEB_MAX_APPEND_MB": ("max_append_bytes", lambda v: int(_parse_number(v) * 1024 * 1024)),
            "HERMES_WEB_LONG_POLL_S": ("long_poll_seconds", _parse_number),
            "HERMES_WEB_REDACT_AT_REST": ("redact_at_rest", _parse_bool),
            "HERMES_WEB_HEARTBEAT_S": ("heartbeat_seconds", _parse_number),
            "HERMES_WEB_OPENAI_BASE_URL": ("openai_base_url", str),
            "HERMES_WEB_OPENAI_MODEL": ("openai_model", str),
            "OPENAI_API_KEY": ("openai_api_key", str),
            "HERMES_WEB_OPENAI_VISION": ("openai_vision", _parse_bool),
            "HERMES_WEB_OPENAI_TOOLS": ("openai_tools", _parse_bool),
            "HERMES_WEB_OPENAI_MAX_STEPS": ("openai_max_steps", int),
            "HERMES_WEB_OPENAI_TIMEOUT_S": ("openai_timeout", float),
            "HERMES_WEB_DEFAULT_AGENT": ("default_agent", str),
            "HERMES_WEB_AGENTS_FILE": ("agents_file", Path),
            "HERMES_WEB_ALLOWED_HOSTS": ("allowed_hosts", _parse_names),
            "HERMES_WEB_PASSWORD": ("password", str),
            "HERMES_WEB_AUTH_BY_PROXY": ("auth_by_proxy", _parse_bool),
            "HERMES_WEB_CERTFILE": ("certfile", str),
            "HERMES_WEB_KEYFILE": ("keyfile", str),
            "HERMES_WEB_LOGIN_DAYS": ("login_days", float),
            "HERMES_WEB_LOGIN_ATTEMPTS": ("login_attempts", int),
            "HERMES_WEB_LOGIN_WINDOW_S": ("login_window_seconds", float),
            "HERMES_WEB_HEADER_TIMEOUT_S": ("header_timeout", float),
            "HERMES_WEB_KEEPALIVE_TIMEOUT_S": ("keepalive_timeout", float),
            "HERMES_WEB_WRITE_TIMEOUT_S": ("write_timeout", float),
            "HERMES_WEB_MAX_CONNECTIONS": ("max_connections", int),
            "HERMES_WEB_MAX_CONNECTIONS_PER_CLIENT": ("max_connections_per_client", int),
            "HERMES_WEB_MAX_STREAMS_PER_CLIENT": ("max_streams_per_client", int),
            "HERMES_WEB_APPROVAL_TIMEOUT_S": ("approval_timeout", _parse_number),
            "HERMES_WEB_RUN_TIMEOUT_S": ("run_timeout", _parse_number),
            "HERMES_WEB_RUN_SILENCE_S": ("run_silence", _parse_number),
            "HERMES_WEB_HERMES_PYTHON": ("hermes_python", str),
            "HERMES_WEB_HERMES_BASE_URL": ("hermes_base_url", str),
            "HERMES_WEB_HERMES_MODEL": ("hermes_model", str),
            "HERMES_WEB_HERMES_API_KEY": ("hermes_api_key", str),
            "HERMES_WEB_HERMES_TOOLSETS": ("hermes_toolsets", _parse_list),
            "HERMES_WEB_HERMES_PASS_ENV": ("hermes_pass_env", _parse_list),
            "HERMES_WEB_HERMES_STREAM": ("hermes_stream", _parse_bool),
            "HERMES_WEB_METRICS": ("metrics", _parse_bool),
            "HERMES_WEB_STORE": ("store_url", str),
            "HERMES_WEB_UPLOADS_DIR": ("uploads_dir", Path),
            "HERMES_WEB_REDIS_LEASE_S": ("redis_lease_seconds", _parse_number),
        }
        for name, (field, parse) in readers.items():
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from None
        secrets = [env[name] for name in sorted(env) if _names_secret(name) and env[name]]
        values.update({k: v for k, v in overrides.items() if v is not None})
        agents_file = Path(values.get("agents_file") or Path(values.get("data_dir", cls.data_dir)) / AGENTS_FILE_NAME)
        try:
            default_agent, endpoints = load_agents_file(agents_file, env)
        except EndpointError as error:
            raise ConfigError(str(error)) from None
        values.update(agents_file=agents_file, endpoints=endpoints)
        values.setdefault("default_agent", default_agent or DEMO_AGENT)
        secrets += [endpoint.api_key for endpoint in endpoints if endpoint.api_key]
        if secrets:
            values["known_secrets"] = tuple(dict.fromkeys(secrets))
        return cls(**values)


def _names_secret(variable: str) -> bool:
    # The server's own credentials: provider keys and its password, whatever they are called.
    upper = variable.upper()
    return upper.endswith(("_API_KEY", "_TOKEN", "_PASSWORD", "_SECRET")) and not upper.startswith("HERMES_WEB_DEMO")


# The variables that set the request-check and limit settings, for error messages.
_SETTING_NAMES = {
    "header_timeout": "HERMES_WEB_HEADER_TIMEOUT_S", "keepalive_timeout": "HERMES_WEB_KEEPALIVE_TIMEOUT_S",
    "write_timeout": "HERMES_WEB_WRITE_TIMEOUT_S", "login_window_seconds": "HERMES_WEB_LOGIN_WINDOW_S",
    "login_days": "HERMES_WEB_LOGIN_DAYS", "max_connections_per_client": "HERMES_WEB_MAX_CONNECTIONS_PER_CLIENT",
    "max_streams_per_client": "HERMES_WEB_MAX_STREAMS_PER_CLIENT", "login_attempts": "HERMES_WEB_LOGIN_ATTEMPTS",
}


def _parse_names(raw: str) -> tuple:
    return tuple(name.strip().lower() for name in raw.split(",") if name.strip())


def _parse_list(raw: str) -> tuple:
    """A comma-separated list of names, as written (toolsets, environment variables)."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", name) for name in names):
        raise ValueError("expected names separated by commas")
    return names


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0/1, true/false, yes/no or on/off")


def _parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("not an integer") from None


def _parse_number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value


def _is_store_url(url: str) -> bool:
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    if parsed.scheme == "unix":
        return bool(parsed.path)
    return parsed.scheme in ("redis", "rediss") and bool(parsed.hostname)


def _is_http_url(url: str) -> bool:
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)
