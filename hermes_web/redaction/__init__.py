"""Redaction (PROTOCOL 2.4): the one redactor, its pattern table, and where it meets
journal records.

Imports only ``hermes_web.core``. The application hands the redactor to the stores and the
log; nothing here knows where its output goes.
"""
