"""The trust boundary (PROTOCOL 2.5): passwords, tokens and login cookies (the login state's
interface and its file implementation), which Host and Origin values name this server, and
the limits on what each client may hold.

Imports ``hermes_web.core`` only.
"""
