"""The files the browser UI needs, and where they are: installed package data or a checkout.

This module is also read by the build (``setup.py``) to copy those files into the wheel, so it
imports the standard library only.

In a checkout the UI is ``static/`` and the vendored libraries are files of ``node_modules/``
(installed by ``npm ci`` from ``package-lock.json``). The build copies both into the package,
under ``hermes_web/ui_assets/``: ``static/`` as it is, each vendored file renamed to the name
it is served under, and each vendored package's licence files beside them.
"""

import dataclasses
from pathlib import Path

# The browser libraries the UI imports, served as /vendor/<name>: name -> (npm package, file
# inside it). Adding a library is one line here (and `npm install --save` of the package).
VENDOR_FILES = {
    "marked.js": ("marked", "lib/marked.esm.js"),
    "purify.js": ("dompurify", "dist/purify.es.mjs"),
    # highlight.js's own ES module build with its common languages bundled: one file.
    "highlight.js": ("@highlightjs/cdn-assets", "es/highlight.min.js"),
}

PACKAGE_DIR = Path(__file__).resolve().parent.parent
INSTALLED_ROOT = PACKAGE_DIR / "ui_assets"
CHECKOUT_ROOT = PACKAGE_DIR.parent
LICENSE_PATTERNS = ("LICENSE*", "LICENCE*", "COPYING*")


class AssetsMissing(Exception):
    """The UI's files are not where the server or the build looks for them."""


@dataclasses.dataclass(frozen=True)
class UiFiles:
    """Where one installation keeps the page, its modules and the vendored libraries."""

    static_dir: Path
    vendor_paths: dict  # served name -> file
    origin: str  # "package" or "checkout", for messages

    def check(self) -> "UiFiles":
        """Raise :class:`AssetsMissing` naming the first missing file and how to get it."""
        for path in (self.static_dir / "index.html", *self.vendor_paths.values()):
            if path.is_file():
                continue
            if self.origin == "package":
                fix = "reinstall hermes-web from a complete wheel or sdist"
            elif path.is_relative_to(self.static_dir):
                fix = "the checkout is incomplete"
            else:
                fix = "run `npm ci` in the checkout"
            raise AssetsMissing(f"the UI file {path} is missing: {fix}")
        return self


def locate() -> UiFiles:
    """The installed package's copy of the UI if there is one, else the checkout's files."""
    if INSTALLED_ROOT.is_dir():
        return UiFiles(
            INSTALLED_ROOT / "static",
            {name: INSTALLED_ROOT / "vendor" / name for name in VENDOR_FILES},
            "package",
        )
    return UiFiles(CHECKOUT_ROOT / "static", checkout_vendor_paths(CHECKOUT_ROOT), "checkout")


def checkout_vendor_paths(root: Path) -> dict:
    return {name: Path(root) / "node_modules" / package / relative for name, (package, relative) in VENDOR_FILES.items()}


def build_manifest(root: Path) -> list:
    """``(source, target)`` pairs the build copies: checkout files -> paths under ``ui_assets/``.

    Sources are relative to the checkout ``root``; so is every file the sdist must carry to
    build the wheel without npm. Raises :class:`AssetsMissing` if a source is missing.
    """
    root = Path(root)
    files = UiFiles(root / "static", checkout_vendor_paths(root), "checkout").check()
    pairs = [
        (path.relative_to(root), Path("static") / path.relative_to(files.static_dir))
        for path in sorted(files.static_dir.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    pairs += [(path.relative_to(root), Path("vendor") / name) for name, path in files.vendor_paths.items()]
    for package in sorted({package for package, _ in VENDOR_FILES.values()}):
        package_dir = root / "node_modules" / package
        licenses = sorted({path for pattern in LICENSE_PATTERNS for path in package_dir.glob(pattern) if path.is_file()})
        if not licenses:
            raise AssetsMissing(f"{package_dir} has no licence file to ship with it")
        pairs += [(path.relative_to(root), Path("vendor-licenses") / package / path.name) for path in licenses]
    return pairs
