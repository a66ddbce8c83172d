"""hermes_web: a chat UI for LLM agents whose live output is journaled and never lost.

The package import is deliberately light (no Flask, no gevent): the serve entry point
must be able to monkey-patch before anything networked is imported.
"""

__version__ = "0.1.0"
