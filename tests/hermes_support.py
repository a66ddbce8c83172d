"""Running the real Hermes Agent in tests: its interpreter (``.venv-hermes``, made by
``make hermes-deps``), a Hermes configuration of its own, and the server's environment."""

import os
import subprocess

import pytest

from tests import provider_streams as streams
from tests.fake_openai import Stream
from tests.support import ROOT

HERMES_PYTHON = os.environ.get("HERMES_WEB_TEST_HERMES_PYTHON") or str(ROOT / ".venv-hermes" / "bin" / "python")


def _hermes_importable() -> bool:
    try:
        return subprocess.run([HERMES_PYTHON, "-I", "-c", "import run_agent"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_hermes = pytest.mark.skipif(not _hermes_importable(),
                                  reason=f"Hermes Agent is not installed for {HERMES_PYTHON}: run `make hermes-deps`")


def make_hermes_home(directory, approvals="manual"):
    """A Hermes configuration of its own, as a user's ``~/.hermes`` would be. Approvals are
    manual unless asked otherwise: Hermes's default ("smart", ``approvals=None``: a new
    user's empty configuration) lets its auxiliary model judge a flagged command first."""
    if approvals is not None:
        (directory / "config.yaml").write_text(f"approvals:\n  mode: {approvals}\n")
    return directory


def hermes_env(provider, hermes_home, **env) -> dict:
    """The server's environment for a ``hermes`` agent on the fake ``provider``."""
    return {
        "HERMES_WEB_HERMES_PYTHON": HERMES_PYTHON, "HERMES_HOME": str(hermes_home),
        "HERMES_WEB_HERMES_BASE_URL": provider.url, "HERMES_WEB_HERMES_MODEL": "fake-model",
        "HERMES_WEB_HERMES_API_KEY": "sk-hermes-test-key-0123456789abcdef",
        "HERMES_WEB_HERMES_TOOLSETS": "terminal,clarify", "HERMES_WEB_DEFAULT_AGENT": "hermes",
        # The server's own secrets, which a worker must never see.
        "OPENAI_API_KEY": "sk-server-only-secret-0123456789abcdef", **env,
    }


def terminal_call(call_id, command):
    """The model's answer that calls Hermes's ``terminal`` tool with ``command``."""
    return Stream(streams.openai_tool_calls([(call_id, "terminal", {"command": command})]))


def answer(text):
    """The model's answer in plain text."""
    return Stream(streams.openai_text([text]))
