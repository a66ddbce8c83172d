"""A real ``redis-server`` for the tests: started on a free port in a temp dir, killed at
teardown. Debian's package (``make test`` installs it); tests skip only when it is missing."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/sbin/redis-server"


def require_redis_server() -> str:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed: `make test` installs Debian's redis-server with apt")
    return REDIS_SERVER


class RedisServer:
    """One redis-server process with an append-only file in ``directory``."""

    def __init__(self, directory: Path, port: int = None, appendfsync: str = "everysec"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self, timeout: float = 10.0) -> "RedisServer":
        binary = require_redis_server()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
             "--logfile", str(self.directory / "redis.log"), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer in {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args) -> bytes:
        """One command over a fresh connection (RESP), for fixtures: the raw reply."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(str(arg).encode())}\r\n".encode() + str(arg).encode() + b"\r\n" for arg in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload)
            return sock.recv(65536)

    def flush(self) -> None:
        assert self.command("FLUSHALL").startswith(b"+OK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the test session; tests flush it before use."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()
