"""The services of one app, registered by their ``init_app`` and found by name.

``create_app`` builds each service from the configuration and the services it needs, and
each registers itself; blueprints ask for what they use with :func:`service`.
"""

from flask import current_app

EXTENSION = "hermes_web"


def register(app, name: str, instance) -> None:
    """Make ``instance`` the app's service called ``name``."""
    app.extensions.setdefault(EXTENSION, {})[name] = instance


def service(name: str):
    """The current app's service called ``name`` (``runs``, ``sessions``, ``views``...)."""
    return current_app.extensions[EXTENSION][name]


def find_service(app, name: str):
    """The service called ``name`` of ``app``, or None (before it is registered)."""
    return app.extensions.get(EXTENSION, {}).get(name)
