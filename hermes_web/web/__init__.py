"""The web layer: Flask blueprints over the services registered in ``hermes_web.app``: the
JSON API, SSE endpoints, login, uploads and the guard (Host, Origin, credentials, limits).

It may import every layer below it (runs, read, store, security, redaction, core); only the
app imports it.
"""
