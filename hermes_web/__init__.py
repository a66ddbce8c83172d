"""hermes_web: a chat UI for LLM agents whose live output is journaled and never lost.

The package import is deliberately light (no Flask, no gevent): the serve entry point
must be able to monkey-patch before anything networked is imported.
"""

DISTRIBUTION = "hermes-web"


def installed_version() -> str:
    """The version in the installed package's metadata (its one source is ``setup.cfg``)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def __getattr__(name):
    if name == "__version__":
        return installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
