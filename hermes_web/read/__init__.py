"""The read side: the fold of journal records into messages, branches, session views,
search, export, and the SSE streams that replay and tail a run from a cursor.

Imports ``hermes_web.store`` and ``hermes_web.core``; never the web layer or the write side.
"""
