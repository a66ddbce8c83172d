"""Agents: providers that turn a user turn into a stream of journal events.

Every provider implements :class:`hermes_web.runs.agents.base.Agent`; the run (``runs/manager.py``)
writes what it yields, so adding a provider touches neither the run nor the journal.
"""

import concurrent.futures
import logging
from collections.abc import Mapping

from hermes_web.core.startup import StartupError
from hermes_web.runs.agents.base import Agent, AgentRequest, RunSettings, UnknownAgent, UnknownModel
from hermes_web.runs.agents.demo import DemoAgent
from hermes_web.runs.agents.hermes import AGENT_NAME as HERMES_AGENT
from hermes_web.runs.agents.hermes import HermesAgent, HermesSettings, hermes_importable
from hermes_web.runs.agents.openai_compat import OpenAICompatibleAgent

DEFAULT_AGENT = "demo"
log = logging.getLogger(__name__)


class Agents(Mapping):
    """The agents this server offers, by name, and which one a run gets when it names none."""

    def __init__(self, agents: dict, default: str = DEFAULT_AGENT):
        if default not in agents:
            raise UnknownAgent(default)
        self._agents = dict(agents)
        self.default = default

    def __getitem__(self, name):
        return self._agents[name]

    def __iter__(self):
        return iter(self._agents)

    def __len__(self):
        return len(self._agents)

    def choose(self, agent_name=None, model=None, remembered=None) -> tuple:
        """``(agent, model)`` for a run: what it names, else what the session used last
        (``remembered``: its metadata), else the default agent and its default model.

        Raises UnknownAgent or UnknownModel for a name that is not offered.
        """
        remembered = remembered or {}
        last_agent = remembered.get("agent") if remembered.get("agent") in self._agents else None
        name = agent_name or last_agent or self.default
        agent = self._agents.get(name)
        if agent is None:
            raise UnknownAgent(name)
        if model:
            if not agent.accepts(model):
                raise UnknownModel(f"agent {name!r} does not offer the model {model!r}")
            return agent, model
        last_model = remembered.get("model")
        if name == last_agent and isinstance(last_model, str) and agent.accepts(last_model):
            return agent, last_model
        return agent, agent.model

    def describe(self) -> list:
        """What ``GET /api/agents`` lists: each agent with its models, the default first.

        Model lists are gathered in parallel: endpoints that do not answer cost one short
        timeout together, not one each.
        """
        names = sorted(self._agents, key=lambda name: (name != self.default, name))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            listed = dict(zip(names, pool.map(lambda name: _models_of(self._agents[name]), names)))
        described = []
        for name in names:
            agent = self._agents[name]
            models, error = listed[name]
            entry = {"name": name, "model": agent.model, "models": models, "default": name == self.default}
            endpoint = getattr(agent, "endpoint", None)
            if endpoint is not None:
                entry.update(vision=endpoint.vision, tools=endpoint.tools)
            if error:
                entry["models_error"] = error
            described.append(entry)
        return described


def _models_of(agent) -> tuple:
    if hasattr(agent, "models_with_error"):
        return agent.models_with_error()
    return agent.models(), None


def build_agents(config, uploads=None) -> Agents:
    """The agents of a configuration: ``demo`` always, then one per OpenAI-compatible
    endpoint (``openai`` from the environment, named ones from the agents file), and
    ``hermes`` when Hermes Agent can be imported. Tools read attachments through ``uploads``
    (the upload store).

    Raises StartupError when Hermes Agent was asked for (``HERMES_WEB_HERMES_PYTHON``, or as
    the default agent) and cannot be imported.
    """
    agents = {DEFAULT_AGENT: DemoAgent(delay_seconds=config.demo_delay_ms / 1000)}
    for endpoint in config.agent_endpoints():
        agents[endpoint.name] = OpenAICompatibleAgent(endpoint, uploads)
    hermes = _hermes_agent(config, uploads, taken=HERMES_AGENT in agents)
    if hermes is not None:
        agents[HERMES_AGENT] = hermes
    return Agents(agents, default=config.default_agent)


def _hermes_agent(config, uploads, taken: bool):
    settings = HermesSettings(python=config.hermes_python, base_url=config.hermes_base_url, model=config.hermes_model,
                              api_key=config.hermes_api_key, toolsets=config.hermes_toolsets,
                              pass_env=config.hermes_pass_env, stream=config.hermes_stream)
    wanted = bool(config.hermes_python) or config.default_agent == HERMES_AGENT
    if taken:
        if config.hermes_python:
            log.warning("an agent named %r is configured in %s: Hermes Agent is not offered", HERMES_AGENT, config.agents_file)
        return None
    if not hermes_importable(settings.interpreter):
        if wanted:
            raise StartupError(
                f"Hermes Agent cannot be imported by {settings.interpreter} (HERMES_WEB_HERMES_PYTHON): "
                "install it there with `pip install 'hermes-web[hermes]'` (or `pip install hermes-agent`)")
        return None
    from hermes_web.store.datadir import DataDir

    return HermesAgent(settings, DataDir(config.data_dir).workspaces_root, uploads)


__all__ = [
    "Agent", "AgentRequest", "Agents", "RunSettings", "UnknownAgent", "UnknownModel", "DemoAgent",
    "HermesAgent", "OpenAICompatibleAgent", "build_agents", "DEFAULT_AGENT",
]
