"""The web layer: Flask blueprints over the services in ``hermes_web.app.Hermes``."""
