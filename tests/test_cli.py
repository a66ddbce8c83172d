"""The command line: ``--version``, and every start-up failure as one line and a non-zero exit."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from hermes_web.core.config import Config, ConfigError
from tests.packaging import declared_version
from tests.support import ROOT, free_port

# Without CAP_DAC_OVERRIDE root obeys file modes like any user, so the unreadable-directory
# cases mean the same thing for root and for anyone else.
AS_ORDINARY_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def hermes_web(*args, env=None, cwd=ROOT, prefix=(), timeout=30):
    """Run ``python -m hermes_web ARGS`` to completion: ``(returncode, stdout, stderr)``."""
    if prefix and not shutil.which(prefix[0]):
        pytest.skip(f"{prefix[0]} is needed to drop root's override of file modes")
    result = subprocess.run([*prefix, sys.executable, "-m", "hermes_web", *args], cwd=cwd,
                            env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def assert_one_line_failure(outcome, code, *mentions):
    returncode, stdout, stderr = outcome
    assert "Traceback" not in stdout + stderr
    assert returncode == code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hermes-web")
    for mention in mentions:
        assert mention in lines[0]
    assert stdout == ""


def test_version_is_the_one_in_setup_cfg():
    assert hermes_web("--version") == (0, f"hermes-web {declared_version()}\n", "")


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        outcome = hermes_web("serve", "--port", str(port), "--data-dir", str(tmp_path / "var"))
    assert_one_line_failure(outcome, 1, f"127.0.0.1:{port}", "already in use", "--port")


def test_an_address_of_another_machine_is_one_line(tmp_path):
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine.
    outcome = hermes_web("serve", "--host", "192.0.2.7", "--port", str(free_port()), "--data-dir", str(tmp_path / "var"))
    assert_one_line_failure(outcome, 1, "192.0.2.7", "not an address of this machine", "--host")


@pytest.mark.parametrize("env, mentions", [
    ({"HERMES_WEB_OPENAI_BASE_URL": "localhost:8000/v1"}, ["HERMES_WEB_OPENAI_BASE_URL", "http://"]),
    ({"HERMES_WEB_OPENAI_BASE_URL": "ftp://models.example/v1"}, ["HERMES_WEB_OPENAI_BASE_URL"]),
    ({"HERMES_WEB_PORT": "eighty"}, ["HERMES_WEB_PORT", "not an integer"]),
    ({"HERMES_WEB_PORT": "70000"}, ["70000", "HERMES_WEB_PORT"]),
    ({"HERMES_WEB_FSYNC": "sometimes"}, ["HERMES_WEB_FSYNC", "interval"]),
    ({"HERMES_WEB_HEARTBEAT_S": "often"}, ["HERMES_WEB_HEARTBEAT_S", "not a number"]),
], ids=["url-without-scheme", "url-not-http", "port-not-numeric", "port-out-of-range", "fsync-policy", "heartbeat"])
def test_a_bad_configuration_value_is_one_line(tmp_path, env, mentions):
    outcome = hermes_web("serve", "--data-dir", str(tmp_path / "var"), env=env)
    assert_one_line_failure(outcome, 2, "configuration error", *mentions)
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("args, mentions", [
    (["serve", "--port", "abc"], ["--port", "abc", "--help"]),
    (["serve", "--port", "99999"], ["99999", "--port"]),
    (["launch"], ["launch", "--help"]),
], ids=["port-not-numeric", "port-out-of-range", "unknown-command"])
def test_a_bad_flag_is_one_line(tmp_path, args, mentions):
    assert_one_line_failure(hermes_web(*args, cwd=tmp_path), 2, *mentions)


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    outcome = hermes_web("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "taken" / "var"))
    assert_one_line_failure(outcome, 1, str(tmp_path / "taken"), "is not a directory", "--data-dir")


def test_an_uncreatable_data_dir_is_one_line(tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir(mode=0o500)
    outcome = hermes_web("serve", "--port", str(free_port()), "--data-dir", str(parent / "var"), prefix=AS_ORDINARY_USER)
    assert_one_line_failure(outcome, 1, str(parent / "var"), "permission denied", "--data-dir")
    assert not (parent / "var").exists()


@pytest.mark.parametrize("unreadable", [".", "journals"], ids=["the-root", "a-subdirectory"])
def test_an_unreadable_data_dir_is_one_line(tmp_path, unreadable):
    data_dir = tmp_path / "var"
    (data_dir / "journals").mkdir(parents=True, mode=0o700)
    (data_dir / unreadable).chmod(0)
    try:
        outcome = hermes_web("serve", "--port", str(free_port()), "--data-dir", str(data_dir), prefix=AS_ORDINARY_USER)
    finally:
        (data_dir / unreadable).chmod(0o700)
    culprit = data_dir if unreadable == "." else data_dir / unreadable
    assert_one_line_failure(outcome, 1, f"{culprit} is not readable and writable", "--data-dir")


def test_missing_ui_files_are_one_line(tmp_path):
    # A copy of the package with no static/ or node_modules/ beside it, and no installed copy.
    shutil.copytree(ROOT / "hermes_web", tmp_path / "hermes_web", ignore=shutil.ignore_patterns("__pycache__", "ui_assets"))
    outcome = hermes_web("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "var"), cwd=tmp_path)
    assert_one_line_failure(outcome, 1, str(tmp_path / "static" / "index.html"), "missing")


@pytest.mark.parametrize("name, raw", [
    ("HERMES_WEB_PORT", "8o8o"),
    ("HERMES_WEB_FSYNC_INTERVAL_MS", "fast"),
    ("HERMES_WEB_DEMO_DELAY_MS", "1.5"),
    ("HERMES_WEB_MAX_UPLOAD_MB", "lots"),
    ("HERMES_WEB_HEARTBEAT_S", "nan"),
    ("HERMES_WEB_REDACT_AT_REST", "maybe"),
    ("HERMES_WEB_FSYNC", "never"),
    ("HERMES_WEB_FSYNC_INTERVAL_MS", "5000"),
    ("HERMES_WEB_OPENAI_BASE_URL", "http://:8000/v1"),
    ("HERMES_WEB_OPENAI_BASE_URL", "https://host:port/v1"),
])
def test_every_malformed_variable_is_a_config_error_naming_it(name, raw):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: raw})


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://127.0.0.1:8000/v1", "http://[::1]:11434/v1"])
def test_http_base_urls_are_accepted(url):
    assert Config.from_env({"HERMES_WEB_OPENAI_BASE_URL": url}).openai_base_url == url
