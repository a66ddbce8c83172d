"""The write side: runs (start, execute, cancel, end), the agents and tools that produce
their events, the decisions a person makes while a run waits, and sessions' lifecycle.

Imports ``hermes_web.store`` and ``hermes_web.core``; never the web layer or the read side.
"""
