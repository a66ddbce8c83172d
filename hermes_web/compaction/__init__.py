"""Compaction and retention (PROTOCOL 1.3): fold finished runs into durable transcripts,
then prune. ``plan`` decides (pure), ``files`` and ``redis`` carry it out in each store.

Imports the read side (the fold), ``hermes_web.store`` and ``hermes_web.core``.
"""
