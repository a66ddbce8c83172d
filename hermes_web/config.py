"""Configuration: one frozen value object, read from the environment once."""

import dataclasses
import os
from pathlib import Path

FSYNC_POLICIES = ("record", "interval", "terminal")


class ConfigError(ValueError):
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
    redact_at_rest: bool = True
    heartbeat_seconds: float = 15.0
    sse_retry_ms: int = 2000
    # An OpenAI-compatible endpoint (e.g. https://api.openai.com/v1); empty = demo only.
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    openai_api_key: str = dataclasses.field(default="", repr=False)
    # Exact secret values the server knows (provider keys, its password): always masked.
    known_secrets: tuple = dataclasses.field(default=(), repr=False)

    def __post_init__(self):
        if self.fsync_policy not in FSYNC_POLICIES:
            raise ConfigError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}")
        if not 0 < self.fsync_interval <= 1.0:
            raise ConfigError("fsync interval must be in (0, 1] seconds")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be in 0..65535")
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Config":
        """Build from ``HERMES_WEB_*`` variables; explicit overrides (CLI flags) win."""
        env = os.environ if environ is None else environ
        values = {}
        readers = {
            "HERMES_WEB_DATA_DIR": ("data_dir", Path),
            "HERMES_WEB_HOST": ("host", str),
            "HERMES_WEB_PORT": ("port", int),
            "HERMES_WEB_FSYNC": ("fsync_policy", str),
            "HERMES_WEB_FSYNC_INTERVAL_MS": ("fsync_interval", lambda v: int(v) / 1000),
            "HERMES_WEB_DEMO_DELAY_MS": ("demo_delay_ms", int),
            "HERMES_WEB_MAX_UPLOAD_MB": ("max_upload_bytes", lambda v: int(float(v) * 1024 * 1024)),
            "HERMES_WEB_MAX_IMPORT_MB": ("max_import_bytes", lambda v: int(float(v) * 1024 * 1024)),
            "HERMES_WEB_REDACT_AT_REST": ("redact_at_rest", _parse_bool),
            "HERMES_WEB_HEARTBEAT_S": ("heartbeat_seconds", float),
            "HERMES_WEB_OPENAI_BASE_URL": ("openai_base_url", str),
            "HERMES_WEB_OPENAI_MODEL": ("openai_model", str),
            "OPENAI_API_KEY": ("openai_api_key", str),
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
        if secrets:
            values["known_secrets"] = tuple(secrets)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _names_secret(variable: str) -> bool:
    # The server's own credentials: provider keys and its password, whatever they are called.
    upper = variable.upper()
    return upper.endswith(("_API_KEY", "_TOKEN", "_PASSWORD", "_SECRET")) and not upper.startswith("HERMES_WEB_DEMO")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0/1, true/false, yes/no or on/off")
