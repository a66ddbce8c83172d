import pytest

from tests.support import ServerProcess


@pytest.fixture
def server_factory(tmp_path):
    """Start real servers (``factory(env={...}, data_dir=...)``); all are stopped at teardown."""
    started = []

    def start(env=None, data_dir=None, port=None):
        server = ServerProcess(data_dir or tmp_path / "var", env=env, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory):
    """One real server with a fast demo agent (5 ms between deltas)."""
    return server_factory()
