"""The web layer: Flask blueprints over the services registered in ``hermes_web.app``."""
