import pytest

from tests.packaging import UNSET_FOR_ISOLATION, build_and_install
from tests.redis_server import redis_server  # noqa: F401 - a fixture
from tests.support import ServerProcess


@pytest.fixture
def server_factory(tmp_path):
    """Start real servers (``factory(env={...}, data_dir=..., args=[...])``); all are stopped at teardown."""
    started = []

    def start(env=None, data_dir=None, port=None, **options):
        server = ServerProcess(data_dir or tmp_path / "var", env=env, port=port, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory):
    """One real server with a fast demo agent (5 ms between deltas)."""
    return server_factory()


@pytest.fixture(scope="session")
def installation(tmp_path_factory):
    """The sdist and wheel, built once per session, the wheel installed into a fresh venv."""
    return build_and_install(tmp_path_factory.mktemp("release"))


@pytest.fixture
def installed_server(installation, tmp_path):
    """``start(env=None)``: the installed ``hermes-web serve``, run from a directory of its own."""
    started = []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def start(env=None):
        server = ServerProcess(tmp_path / "installed-data", env={**UNSET_FOR_ISOLATION, **(env or {})},
                               command=[installation.command], cwd=elsewhere).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
