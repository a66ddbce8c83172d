"""Build hook: the wheel carries the browser UI, so an installed hermes-web serves it anywhere.

``static/`` and the vendored files of ``node_modules/`` stay where they are in the checkout;
the build copies them under ``hermes_web/ui_assets/`` (the list of files is
``hermes_web/web/assets.py``, which the server reads too). The sdist carries the same source
files, so a wheel builds from it without npm. Everything else is in ``setup.cfg``.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
# Loaded by path: the build environment has setuptools, not the package's dependencies.
ASSETS = runpy.run_path(str(HERE / "hermes_web" / "web" / "assets.py"))
INSTALLED_DIR = Path("hermes_web") / "ui_assets"


def ui_manifest() -> list:
    try:
        return ASSETS["build_manifest"](HERE)
    except ASSETS["AssetsMissing"] as error:
        raise SystemExit(f"cannot build hermes-web: {error}") from None


class BuildPyWithUi(build_py):
    """``build_py`` that also copies the UI's files into the package."""

    def run(self):
        super().run()
        # An editable install imports the checkout itself, which finds the files in place.
        if self.editable_mode:
            return
        target_root = Path(self.build_lib) / INSTALLED_DIR
        # A build directory left from an earlier build must not ship files since removed.
        shutil.rmtree(target_root, ignore_errors=True)
        for source, target in ui_manifest():
            destination = target_root / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(HERE / source), str(destination))

    def get_source_files(self):
        # What the sdist carries (setuptools' sdist asks build_py for its sources). egg_info
        # asks too, for an editable install that may come before `npm ci`: SdistWithUi is
        # the strict one.
        try:
            ui_sources = [source.as_posix() for source, _ in ASSETS["build_manifest"](HERE)]
        except ASSETS["AssetsMissing"]:
            ui_sources = []
        return [*super().get_source_files(), *ui_sources]

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return [*outputs, *(str(Path(self.build_lib) / INSTALLED_DIR / target) for _, target in ui_manifest())]


class SdistWithUi(sdist):
    """``sdist`` that refuses to make an archive lacking the UI's files."""

    def run(self):
        ui_manifest()
        super().run()


setup(cmdclass={"build_py": BuildPyWithUi, "sdist": SdistWithUi})
