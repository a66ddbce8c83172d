"""Choosing agents and models, and per-session settings, through the API of a real server:
model lists from /v1/models (cached), a run's model, what a session remembers, system
prompt and temperature, and several named endpoints from agents.toml."""

import json

import pytest

from tests import provider_streams as streams
from tests.fake_openai import FakeOpenAI, Stream
from tests.support import ServerProcess, SseClient


@pytest.fixture
def providers():
    started = []

    def start(**options):
        fake = FakeOpenAI(**options).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the tests that only send bad requests."""
    provider = FakeOpenAI().start()
    server = ServerProcess(tmp_path_factory.mktemp("settings") / "var", env=env_for(provider)).start()
    yield server
    server.stop()
    provider.stop()


def env_for(provider, **env):
    return {"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "fake-model", **env}


def answer(provider):
    return provider.script(Stream(streams.openai_text(["ok"])))


def meta_of(server, session_id):
    return next(item for item in server.api("GET", "/api/sessions")[1] if item["id"] == session_id)


def test_agents_list_their_models_from_the_endpoint_and_cache_them(server_factory, providers):
    listing = providers(models=["big-model", "fake-model", "small-model"])
    silent = providers(models=None)  # answers /v1/models with 404
    server = server_factory(env=env_for(listing))
    status, agents, _ = server.api("GET", "/api/agents")
    assert status == 200
    assert agents[0] == {"name": "demo", "model": "demo", "models": ["demo"], "default": True}
    assert agents[1] == {"name": "openai", "model": "fake-model", "models": ["fake-model", "big-model", "small-model"],
                         "default": False, "vision": True, "tools": True}
    assert server.api("GET", "/api/agents")[1] == agents and listing.models_requests == 1  # cached

    other = server_factory(env=env_for(silent), data_dir=server.data_dir.parent / "other")
    (_, openai) = other.api("GET", "/api/agents")[1]
    assert openai["models"] == ["fake-model"] and "HTTP 404" in openai["models_error"]


def test_a_run_may_name_a_model_and_the_session_remembers_agent_and_model(server_factory, providers):
    provider = providers(models=["fake-model", "big-model"])
    server = server_factory(env=env_for(provider))
    session_id = server.create_session()
    assert "agent" not in meta_of(server, session_id)
    chosen = answer(provider)
    run_id, frames = server.run_to_end(session_id, chosen, agent="openai", model="big-model")
    assert frames[0][2]["agent"] == {"name": "openai", "model": "big-model"}
    assert provider.requests_for(chosen)[0]["model"] == "big-model"
    assert (meta_of(server, session_id)["agent"], meta_of(server, session_id)["model"]) == ("openai", "big-model")

    remembered = answer(provider)
    _, frames = server.run_to_end(session_id, remembered)  # no agent, no model: the session's
    assert frames[0][2]["agent"] == {"name": "openai", "model": "big-model"}
    assert provider.requests_for(remembered)[0]["model"] == "big-model"

    _, frames = server.run_to_end(session_id, "switching", agent="demo")
    assert frames[0][2]["agent"] == {"name": "demo", "model": "demo"} and meta_of(server, session_id)["agent"] == "demo"
    _, frames = server.run_to_end(session_id, "and staying")
    assert frames[0][2]["agent"]["name"] == "demo"
    # A new session gets the server's default agent.
    _, frames = server.run_to_end(server.create_session(), "fresh")
    assert frames[0][2]["agent"]["name"] == "demo"


def test_the_default_agent_is_configurable(server_factory, providers):
    provider = providers()
    server = server_factory(env=env_for(provider, HERMES_WEB_DEFAULT_AGENT="openai"))
    text = answer(provider)
    _, frames = server.run_to_end(server.create_session(), text)
    assert frames[0][2]["agent"] == {"name": "openai", "model": "fake-model"} and provider.requests_for(text)
    assert [agent["name"] for agent in server.api("GET", "/api/agents")[1]] == ["openai", "demo"]


@pytest.mark.parametrize("body, code", [
    ({"text": "x", "model": 5}, "unknown_model"),
    ({"text": "x", "model": ""}, "unknown_model"),
    ({"text": "x", "model": "m" * 201}, "unknown_model"),
    ({"text": "x", "agent": "demo", "model": "gpt-4o"}, "unknown_model"),
    ({"text": "x", "model": "bad\nname"}, "unknown_model"),
    ({"text": "x", "agent": ""}, "unknown_agent"),
    ({"text": "x", "agent": "nope", "model": "m"}, "unknown_agent"),
])
def test_a_bad_agent_or_model_is_a_400_and_starts_nothing(shared, body, code):
    server = shared
    session_id = server.create_session()
    status, answer_body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", body)
    assert status == 400 and answer_body["error"]["code"] == code
    assert server.api("GET", f"/api/sessions/{session_id}")[1]["messages"] == []


def test_system_prompt_and_temperature_are_per_session_settings(server_factory, providers):
    provider = providers()
    server = server_factory(env=env_for(provider, HERMES_WEB_DEFAULT_AGENT="openai"))
    session_id, other = server.create_session(), server.create_session()
    stream = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=10)
    try:
        status, meta, _ = server.api("PATCH", f"/api/sessions/{session_id}",
                                     {"system_prompt": "Answer like a pirate.", "temperature": 0.3})
        assert status == 200 and (meta["system_prompt"], meta["temperature"]) == ("Answer like a pirate.", 0.3)
        update = next(frame for frame in stream.frames() if frame.get("event") == "session.updated")
        assert json.loads(update["data"])["system_prompt"] == "Answer like a pirate."
    finally:
        stream.close()
    text = answer(provider)
    server.run_to_end(session_id, text)
    (request,) = provider.requests_for(text)
    assert request["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert request["temperature"] == 0.3
    untouched = answer(provider)
    server.run_to_end(other, untouched)
    assert provider.requests_for(untouched)[0]["messages"][0]["role"] == "user"
    assert "temperature" not in provider.requests_for(untouched)[0]

    assert server.api("PATCH", f"/api/sessions/{session_id}", {"system_prompt": None, "temperature": None})[0] == 200
    cleared = answer(provider)
    server.run_to_end(session_id, cleared)
    assert provider.requests_for(cleared)[0]["messages"][0]["role"] == "user"
    assert "temperature" not in provider.requests_for(cleared)[0]


@pytest.mark.parametrize("body, code", [
    ({"temperature": "hot"}, "invalid_temperature"),
    ({"temperature": -0.1}, "invalid_temperature"),
    ({"temperature": 2.5}, "invalid_temperature"),
    ({"temperature": True}, "invalid_temperature"),
    ({"system_prompt": 7}, "invalid_system_prompt"),
    ({"system_prompt": "x" * 20_001}, "invalid_system_prompt"),
    ({"agent": "nope"}, "unknown_agent"),
    ({"agent": "demo", "model": "gpt-4o"}, "unknown_model"),
    ({"model": 3}, "unknown_model"),
    ({"temprature": 1}, "unknown_field"),
    ({}, "nothing_to_change"),
    ({"title": ""}, "invalid_title"),
])
def test_bad_settings_are_a_400_and_change_nothing(shared, body, code):
    server = shared
    session_id = server.create_session()
    before = meta_of(server, session_id)
    status, answer_body, _ = server.api("PATCH", f"/api/sessions/{session_id}", body)
    assert status == 400 and answer_body["error"]["code"] == code
    assert meta_of(server, session_id) == before


def test_the_agent_and_model_picked_before_a_run_are_the_sessions(server_factory, providers):
    provider = providers(models=["fake-model", "big-model"])
    server = server_factory(env=env_for(provider))
    session_id = server.create_session()
    status, meta, _ = server.api("PATCH", f"/api/sessions/{session_id}", {"agent": "openai", "model": "big-model"})
    assert status == 200 and (meta["agent"], meta["model"]) == ("openai", "big-model")
    text = answer(provider)
    _, frames = server.run_to_end(session_id, text)
    assert frames[0][2]["agent"] == {"name": "openai", "model": "big-model"}
    status, meta, _ = server.api("PATCH", f"/api/sessions/{session_id}", {"agent": "demo"})
    assert (meta["agent"], meta["model"]) == ("demo", None)


def test_named_endpoints_from_the_agents_file_are_agents(server_factory, providers, tmp_path):
    local = providers(models=["llama3.2", "qwen2.5"])
    router = providers(api_key="router-secret-key-123")
    data_dir = tmp_path / "named" / "var"
    data_dir.mkdir(parents=True)
    (data_dir / "agents.toml").write_text(f"""
default_agent = "local"

[agents.local]
base_url = "{local.url}"
model = "llama3.2"
vision = false
system_prompt = "You run locally."

[agents.router]
base_url = "{router.url}"
model = "openai/gpt-4o-mini"
models = ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"]
api_key_env = "ROUTER_KEY"
tools = false
""")
    server = server_factory(env={"ROUTER_KEY": "router-secret-key-123"}, data_dir=data_dir)
    agents = {agent["name"]: agent for agent in server.api("GET", "/api/agents")[1]}
    assert list(agents) == ["local", "demo", "router"] and agents["local"]["default"]
    assert agents["local"]["models"] == ["llama3.2", "qwen2.5"] and agents["local"]["vision"] is False
    assert agents["router"]["models"] == ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"]
    assert router.models_requests == 0  # a configured list is not fetched

    session_id = server.create_session()
    to_local = answer(local)
    _, frames = server.run_to_end(session_id, to_local)
    (request,) = local.requests_for(to_local)
    assert frames[0][2]["agent"] == {"name": "local", "model": "llama3.2"}
    assert request["messages"][0] == {"role": "system", "content": "You run locally."}
    assert "Authorization" not in local.requests[-1]["headers"] and "tools" in request

    to_router = answer(router)
    _, frames = server.run_to_end(session_id, to_router, agent="router", model="anthropic/claude-3.5-haiku")
    assert frames[-1][1] == "run.completed"
    (request,) = router.requests_for(to_router)
    assert request["model"] == "anthropic/claude-3.5-haiku" and "tools" not in request
    headers = router.requests[-1]["headers"]
    assert headers["Authorization"] == "Bearer router-secret-key-123"
