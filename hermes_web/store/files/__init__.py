"""The file store: one JSONL journal per run under ``journals/<session_id>/`` (PROTOCOL 1),
written with fsync, read from byte offsets, recovered after a crash.

Imports ``hermes_web.core`` and the shared modules of ``hermes_web.store``; never
``hermes_web.store.redis``.
"""
