"""The shared vocabulary: ids, record kinds, the line codec, cursors, configuration and
small pure helpers (durable file writes, safe paths, content sniffing, the service registry).

Every other package may import it; it imports nothing else from hermes_web.
"""
