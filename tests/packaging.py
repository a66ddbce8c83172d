"""The release path, for tests: the sdist, the wheel built from it, a fresh venv with the wheel."""

import configparser
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

BUILD_TIMEOUT = 300


@dataclasses.dataclass(frozen=True)
class Installation:
    sdist: Path
    wheel: Path
    venv: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "hermes-web"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def declared_version() -> str:
    """The version as setup.cfg states it."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["metadata"]["version"]


# Variables that would make Python import the checkout, or another venv, instead.
UNSET_FOR_ISOLATION = {"PYTHONPATH": None, "PYTHONHOME": None, "VIRTUAL_ENV": None}


def clean_env(**extra) -> dict:
    """The test process's environment without :data:`UNSET_FOR_ISOLATION`, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if name not in UNSET_FOR_ISOLATION}
    return {**env, **extra}


def build_and_install(work: Path) -> Installation:
    """``python -m build`` (the sdist, then the wheel from the unpacked sdist), then a venv.

    The build runs with no npm or node on PATH: the sdist must carry the vendored files. pip's
    cache and index are the user's, so a second session downloads nothing.
    """
    dist = work / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], work,
         env=clean_env(PATH=str(Path(sys.executable).parent)))
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    venv = work / "venv"
    # --without-pip and the test environment's pip: creating a venv with its own pip costs seconds.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", str(wheel)], work)
    return Installation(sdist, wheel, venv)


def _run(command: list, cwd: Path, env: dict = None) -> None:
    result = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
