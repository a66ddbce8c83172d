"""Where data lives: the log-store interface and its two implementations, the data dir's
layout, session metadata, transcripts, uploads and wake-ups for tailers.

``files/`` keeps everything in the data dir (PROTOCOL 1); ``redis/`` keeps run logs,
metadata and transcripts in a shared Redis. The modules at this level are the contract and
the formats both share. Imports ``hermes_web.core`` only; ``files`` and ``redis`` never
import each other.
"""
