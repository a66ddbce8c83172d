"""The sdist and the wheel carry the whole UI; the installed command serves it from anywhere.

These tests build the sdist and the wheel from it once per session (``python -m build``,
with no npm on PATH) and install the wheel into a fresh venv outside the checkout.
"""

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from hermes_web.web.assets import VENDOR_FILES
from tests.packaging import clean_env, declared_version
from tests.support import ROOT, SseClient, request

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]

VENDOR_SOURCES = {name: ROOT / "node_modules" / package / relative for name, (package, relative) in VENDOR_FILES.items()}
VENDOR_PACKAGES = {package for package, _ in VENDOR_FILES.values()}
STATIC_FILES = sorted(path.relative_to(ROOT / "static").as_posix() for path in (ROOT / "static").rglob("*") if path.is_file())


def test_the_vendor_list_is_what_the_ui_references_and_what_npm_installs():
    referenced = set()
    for path in (ROOT / "static").rglob("*"):
        if path.is_file():
            referenced |= set(re.findall(r"/vendor/([A-Za-z0-9._-]+)", path.read_text()))
    assert referenced == set(VENDOR_FILES)
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    declared = json.loads((ROOT / "package.json").read_text())["dependencies"]
    for package in VENDOR_PACKAGES:
        assert package in declared and f"node_modules/{package}" in locked
    assert all(path.is_file() for path in VENDOR_SOURCES.values())


def test_the_sdist_carries_static_the_vendored_files_and_their_licences(installation):
    with tarfile.open(installation.sdist) as archive:
        prefix = archive.getnames()[0].split("/", 1)[0]
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        members = {name: archive.extractfile(f"{prefix}/{name}") for name in names
                   if archive.getmember(f"{prefix}/{name}").isfile()}
        for name in STATIC_FILES:
            assert members[f"static/{name}"].read() == (ROOT / "static" / name).read_bytes()
        for path in VENDOR_SOURCES.values():
            assert members[path.relative_to(ROOT).as_posix()].read() == path.read_bytes()
    node_files = {name for name in members if name.startswith("node_modules/")}
    vendored = {path.relative_to(ROOT).as_posix() for path in VENDOR_SOURCES.values()}
    licences = node_files - vendored
    # Nothing of node_modules beyond the served files and one or more licence files per package.
    assert {name[len("node_modules/"):].rsplit("/", 1)[0] for name in licences} == VENDOR_PACKAGES
    assert all(Path(name).name.upper().startswith(("LICENSE", "LICENCE", "COPYING")) for name in licences)
    assert {"package.json", "package-lock.json", "setup.py", "setup.cfg", "pyproject.toml"} <= names


def test_the_wheel_carries_static_and_the_vendored_libraries_under_their_served_names(installation):
    with zipfile.ZipFile(installation.wheel) as wheel:
        names = set(wheel.namelist())
        for name in STATIC_FILES:
            assert wheel.read(f"hermes_web/ui_assets/static/{name}") == (ROOT / "static" / name).read_bytes()
        for served, path in VENDOR_SOURCES.items():
            assert wheel.read(f"hermes_web/ui_assets/vendor/{served}") == path.read_bytes()
        licence_root = "hermes_web/ui_assets/vendor-licenses/"
        licences = {name[len(licence_root):] for name in names if name.startswith(licence_root)}
        for name in licences:
            assert wheel.read(licence_root + name) == (ROOT / "node_modules" / name).read_bytes()
        assert {name.rsplit("/", 1)[0] for name in licences} == VENDOR_PACKAGES
        metadata = wheel.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {declared_version()}\n" in metadata
    # Only the package: no node_modules, no tests, no checkout paths.
    assert {name.split("/", 1)[0] for name in names} == {"hermes_web", f"hermes_web-{declared_version()}.dist-info"}


def test_the_installed_package_finds_its_own_copy_of_the_ui(installation, tmp_path):
    result = subprocess.run(
        [installation.python, "-c", "from hermes_web.web import assets; files = assets.locate().check(); "
         "print(files.origin); print(files.static_dir)"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    origin, static_dir = result.stdout.split()
    assert origin == "package"
    assert Path(static_dir).is_relative_to(installation.venv)


def test_the_installed_command_reports_the_version_of_setup_cfg(installation, tmp_path):
    result = subprocess.run([installation.command, "--version"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"hermes-web {declared_version()}\n", "")


def test_the_installed_server_serves_the_whole_ui_and_streams_a_run(installed_server):
    server = installed_server()
    assert not (server.cwd / "var").exists() and server.data_dir.is_dir()
    status, page, headers = request(server.url, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert page == (ROOT / "static" / "index.html").read_bytes()
    for name in STATIC_FILES:
        status, body, _ = request(server.url, "GET", f"/static/{name}")
        assert (status, body) == (200, (ROOT / "static" / name).read_bytes()), name
    for served, path in VENDOR_SOURCES.items():
        status, body, headers = request(server.url, "GET", f"/vendor/{served}")
        assert (status, body) == (200, path.read_bytes()), served
        expected_type = {".js": "text/javascript", ".css": "text/css"}[Path(served).suffix]
        assert headers["Content-Type"].startswith(expected_type), served
    assert request(server.url, "GET", "/vendor/LICENSE")[0] == 404
    assert request(server.url, "GET", "/static/../setup.py")[0] == 404

    session_id = server.create_session()
    run_id = server.start_run(session_id, "hello from an installed wheel")["run_id"]
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=30)
    try:
        events = [event for _, event, _ in client.records()]
    finally:
        client.close()
    assert events[0] == "run.started" and events[-1] == "run.completed"
    assert server.wait_run_finished(run_id)["status"] == "completed"


def test_the_installed_server_refuses_a_used_port_in_one_line(installation, installed_server, tmp_path):
    server = installed_server()
    result = subprocess.run(
        [installation.command, "serve", "--port", str(server.port), "--data-dir", str(tmp_path / "second")],
        cwd=tmp_path, env=clean_env(),
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "already in use" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert server.api("GET", "/api/sessions")[0] == 200


@pytest.mark.parametrize("target", ["--sdist", "--wheel"])
def test_a_checkout_without_the_vendored_files_builds_no_release(tmp_path, target):
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "tests", "bench", "docs"))
    result = subprocess.run([sys.executable, "-m", "build", target, "--outdir", str(tmp_path / "dist"), str(checkout)],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    package, relative = next(iter(VENDOR_FILES.values()))
    assert result.returncode != 0
    assert f"node_modules/{package}/{relative} is missing: run `npm ci`" in result.stdout + result.stderr
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())
