"""The UI's files: one list of vendored libraries, served from the checkout or the package."""

import json
import shutil

import pytest

from hermes_web.web import assets
from tests.support import ROOT, request


def test_the_checkout_serves_each_vendored_file_under_its_name_with_a_script_type(server):
    for name, (package, relative) in assets.VENDOR_FILES.items():
        status, body, headers = request(server.url, "GET", f"/vendor/{name}")
        assert status == 200
        assert body == (ROOT / "node_modules" / package / relative).read_bytes()
        assert headers["Content-Type"].split(";")[0] == {".js": "text/javascript", ".css": "text/css"}[name[name.rindex("."):]]


def test_nothing_else_of_node_modules_is_served(server):
    for name in ["LICENSE", "marked", "package.json", "..%2Fpackage.json", "marked.esm.js", "marked.js%00"]:
        status, body, _ = request(server.url, "GET", f"/vendor/{name}")
        assert (status, json.loads(body)["error"]["code"]) == (404, "not_found"), name


def test_the_build_manifest_covers_static_the_vendored_files_and_licences():
    pairs = assets.build_manifest(ROOT)
    targets = {target.as_posix(): source for source, target in pairs}
    for path in (ROOT / "static").rglob("*"):
        if path.is_file():
            assert targets["static/" + path.relative_to(ROOT / "static").as_posix()] == path.relative_to(ROOT)
    for name, (package, relative) in assets.VENDOR_FILES.items():
        assert targets[f"vendor/{name}"].as_posix() == f"node_modules/{package}/{relative}"
    for package in {package for package, _ in assets.VENDOR_FILES.values()}:
        assert any(target.startswith(f"vendor-licenses/{package}/") for target in targets)
    assert all(not source.is_absolute() for source in targets.values())


def test_a_build_without_npm_ci_names_the_missing_file_and_the_fix(tmp_path):
    shutil.copytree(ROOT / "static", tmp_path / "static")
    with pytest.raises(assets.AssetsMissing, match=r"node_modules/.*is missing: run `npm ci`"):
        assets.build_manifest(tmp_path)


def test_highlighting_ships_its_common_languages_in_one_file(server):
    status, body, _ = request(server.url, "GET", "/vendor/highlight.js")
    assert status == 200
    for language in (b"python", b"javascript", b"typescript", b"bash", b"json", b"rust", b"go", b"sql", b"yaml"):
        assert b"grmr_" + language + b":" in body, language


def test_the_test_only_accessibility_engine_is_not_served(server):
    for name in ("axe.min.js", "axe-core", "axe.js"):
        status, body, _ = request(server.url, "GET", f"/vendor/{name}")
        assert (status, json.loads(body)["error"]["code"]) == (404, "not_found"), name
