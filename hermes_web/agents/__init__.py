"""Agents: providers that turn a user turn into a stream of journal events.

Every provider implements :class:`hermes_web.agents.base.Agent`; the run (``runs.py``)
writes what it yields, so adding a provider touches neither the run nor the journal.
"""

from hermes_web.agents.base import Agent, AgentRequest, UnknownAgent
from hermes_web.agents.demo import DemoAgent
from hermes_web.agents.openai_compat import OpenAICompatibleAgent


def build_agents(config) -> dict:
    """The agents this server offers, by name. ``demo`` is always there and the default;
    ``openai`` when an OpenAI-compatible endpoint is configured."""
    agents = {"demo": DemoAgent(delay_seconds=config.demo_delay_ms / 1000)}
    if config.openai_base_url:
        agents["openai"] = OpenAICompatibleAgent(config.openai_base_url, config.openai_model, config.openai_api_key)
    return agents


DEFAULT_AGENT = "demo"


def default_agent_name(config, agents: dict) -> str:
    """The agent a run uses when it names none."""
    return DEFAULT_AGENT

__all__ = ["Agent", "AgentRequest", "UnknownAgent", "DemoAgent", "OpenAICompatibleAgent", "build_agents", "default_agent_name", "DEFAULT_AGENT"]
