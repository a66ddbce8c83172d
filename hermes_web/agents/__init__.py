"""Agents: providers that turn a user turn into a stream of journal events.

Every provider implements :class:`hermes_web.agents.base.Agent`; the run (``runs.py``)
writes what it yields, so adding a provider touches neither the run nor the journal.
"""

import concurrent.futures
from collections.abc import Mapping

from hermes_web.agents.base import Agent, AgentRequest, RunSettings, UnknownAgent, UnknownModel
from hermes_web.agents.demo import DemoAgent
from hermes_web.agents.openai_compat import OpenAICompatibleAgent

DEFAULT_AGENT = "demo"


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
    endpoint (``openai`` from the environment, named ones from the agents file). Tools read
    attachments through ``uploads`` (the upload store)."""
    agents = {DEFAULT_AGENT: DemoAgent(delay_seconds=config.demo_delay_ms / 1000)}
    for endpoint in config.agent_endpoints():
        agents[endpoint.name] = OpenAICompatibleAgent(endpoint, uploads)
    return Agents(agents, default=config.default_agent)


__all__ = [
    "Agent", "AgentRequest", "Agents", "RunSettings", "UnknownAgent", "UnknownModel", "DemoAgent",
    "OpenAICompatibleAgent", "build_agents", "DEFAULT_AGENT",
]
