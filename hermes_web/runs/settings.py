"""Per-session settings in the session's metadata: validated changes, and what a run gets.

A session's metadata may carry ``agent`` and ``model`` (set by its last run, or chosen in
the UI before one), ``system_prompt`` and ``temperature``. ``None`` clears a setting, so the
agent's default applies again.
"""

import math

from hermes_web.runs.agents import RunSettings

MAX_TITLE_CHARS = 200
MAX_SYSTEM_PROMPT_CHARS = 20_000
MAX_TEMPERATURE = 2.0
MAX_MODEL_CHARS = 200
FIELDS = ("title", "system_prompt", "temperature", "agent", "model")


class InvalidSetting(ValueError):
    """A change that cannot be applied; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def validated_changes(body: dict, agents, meta: dict) -> dict:
    """The metadata changes a ``PATCH`` body asks for, each checked; InvalidSetting otherwise."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidSetting("unknown_field", f"unknown field(s) {', '.join(unknown)}; a session has {', '.join(FIELDS)}")
    if not body:
        raise InvalidSetting("nothing_to_change", f"give at least one of {', '.join(FIELDS)}")
    changes = {}
    if "title" in body:
        changes["title"] = checked_title(body["title"])
    if "system_prompt" in body:
        prompt = body["system_prompt"]
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_SYSTEM_PROMPT_CHARS):
            raise InvalidSetting("invalid_system_prompt",
                                 f"system_prompt must be a string of at most {MAX_SYSTEM_PROMPT_CHARS} characters, or null")
        changes["system_prompt"] = prompt if prompt and prompt.strip() else None
    if "temperature" in body:
        temperature = body["temperature"]
        if temperature is not None and not (
            isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            and math.isfinite(temperature) and 0 <= temperature <= MAX_TEMPERATURE
        ):
            raise InvalidSetting("invalid_temperature", f"temperature must be a number from 0 to {MAX_TEMPERATURE:g}, or null")
        changes["temperature"] = temperature
    if "agent" in body:
        agent = body["agent"]
        if agent is not None and (not isinstance(agent, str) or agent not in agents):
            raise InvalidSetting("unknown_agent", f"no agent named {agent!r}" if isinstance(agent, str) else "agent must be a string")
        changes["agent"] = agent
        if "model" not in body:
            changes["model"] = None  # another agent's model means nothing to this one
    if "model" in body:
        model = body["model"]
        if model is not None:
            name = changes.get("agent") or meta.get("agent") or agents.default
            agent = agents.get(name) or agents[agents.default]
            if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS or not agent.accepts(model):
                raise InvalidSetting("unknown_model", f"agent {agent.name!r} does not offer a model named {model!r}"
                                     if isinstance(model, str) else "model must be a string")
        changes["model"] = model
    return changes


def checked_title(title) -> str:
    """A session title: a non-empty string of at most MAX_TITLE_CHARS, trimmed."""
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
        raise InvalidSetting("invalid_title", f"title must be a non-empty string of at most {MAX_TITLE_CHARS} characters")
    return title.strip()


def checked_run_model(model):
    """The ``model`` of a run request: a string or None; InvalidSetting otherwise."""
    if model is not None and (not isinstance(model, str) or not model or len(model) > MAX_MODEL_CHARS):
        raise InvalidSetting("unknown_model", f"model must be a non-empty string of at most {MAX_MODEL_CHARS} characters")
    return model


def run_settings(meta: dict) -> RunSettings:
    """The settings a run of this session starts with."""
    prompt = meta.get("system_prompt")
    temperature = meta.get("temperature")
    return RunSettings(
        system_prompt=prompt if isinstance(prompt, str) else "",
        temperature=temperature if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) else None,
    )
