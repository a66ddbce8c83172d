"""``hermes-web doctor``: checks a data dir, or the shared Redis store, against the on-disk
contract (PROTOCOL 1) and, with ``--fix``, repairs what is safe to repair while servers run.

``placement`` judges where runs are held against where their ids lead (pure); ``files`` and
``redis`` check each store; ``local`` checks what every store keeps in local files
(uploads, modes, free space); ``report`` is the output (one line per finding, the summary,
the exit code); ``command`` picks the store. docs/doctor.md lists the findings.

Imports the read side (the fold), ``hermes_web.store`` and ``hermes_web.core``; never the
web layer, compaction or the write side.
"""
