"""The layering of docs/architecture.md holds: import-linter checks the contracts of
setup.cfg, and every package says what it is for and what it may import."""

import ast
import subprocess
import sys
from pathlib import Path

import hermes_web

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(hermes_web.__file__).resolve().parent


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "setup.cfg"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_package_states_its_job_and_what_it_may_import():
    packages = sorted(path.parent for path in PACKAGE.rglob("__init__.py") if "ui_assets" not in path.parts)
    assert len(packages) > 10
    for package in packages:
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring, f"{package.relative_to(PACKAGE.parent)} has no docstring"
        if package.parent == PACKAGE:
            assert "import" in docstring.lower(), f"{package.name}'s docstring does not say what it may import"
