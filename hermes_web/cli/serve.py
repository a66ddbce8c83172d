"""The serve entry point: the only module that imports gevent, and it patches first."""

import logging
import os
import resource
import signal
import socket
import sys

from hermes_web.core.config import ConfigError
from hermes_web.core.startup import StartupError, listen_failure

# Every viewer reconnects at once after a restart; gevent's default backlog (128) drops the
# SYNs beyond it and each dropped client waits a full second before retrying.
LISTEN_BACKLOG = 2048


def serve(config) -> int:
    """Serve the UI and API on one gevent process until SIGINT/SIGTERM."""
    from gevent import monkey

    monkey.patch_all()

    import gevent
    import gevent.event
    import ssl
    from gevent.pywsgi import WSGIHandler, WSGIServer

    from hermes_web.cli import logs
    from hermes_web.app import create_app, shutdown
    from hermes_web.security.connections import ConnectionPolicy, LimitedHandler, LimitedServer
    from hermes_web.redaction.redactor import Redactor
    from hermes_web.core.services import find_service

    redactor = Redactor(config.known_secrets)
    logs.configure(redactor)
    # httpx logs every provider request with its URL, which may carry credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.umask(0o077)  # files 0600, directories 0700, whatever creates them
    _raise_open_file_limit()
    hub = gevent.get_hub()
    # Tracebacks the event loop prints itself bypass logging: redact them too.
    hub.exception_stream = logs.RedactingStream(sys.stderr, redactor)

    tls = {}
    if config.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(config.certfile, config.keyfile)
        except (OSError, ssl.SSLError) as error:
            raise StartupError(f"cannot use the TLS certificate {config.certfile} with the key {config.keyfile}: "
                               f"{error.strerror or error} (--certfile, --keyfile)") from None
        tls = {"ssl_context": context}

    def offload(function, *args):
        # fsync in a native thread: the greenlet waits, the event loop does not.
        return hub.threadpool.apply(function, args)

    # The port first: a server that cannot listen says so before it touches the data dir.
    try:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        listener = WSGIServer.get_listener((config.host, config.port), backlog=LISTEN_BACKLOG, family=family)
    except OSError as error:
        raise listen_failure(config.host, config.port, error) from None
    refusal = refusal_to_start(config)
    if refusal is not None:
        listener.close()
        raise ConfigError(refusal)
    app = create_app(config, offload=offload)

    class Handler(LimitedHandler, WSGIHandler):
        Timeout = gevent.Timeout

    class Server(LimitedServer, WSGIServer):
        handler_class = Handler

    server = Server(listener, app,
                    log=logging.getLogger("hermes_web.access"), error_log=logging.getLogger("hermes_web.server"),
                    **tls)
    server.connection_policy = ConnectionPolicy.from_config(config)
    stopping = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopping.set)
    server.start()
    scheme = "https" if tls else "http"
    print(f"hermes_web serving {scheme}://{_display_host(config.host)}:{server.server_port}/ "
          f"(data dir {os.path.abspath(config.data_dir)}, {find_service(app, 'logs').watcher.mode} watcher)", flush=True)
    if config.auth_by_proxy:
        logging.getLogger("hermes_web.server").warning(
            "AUTHENTICATION IS OFF (HERMES_WEB_AUTH_BY_PROXY): the proxy in front must decide who gets in; "
            "anyone who reaches %s:%s directly can read every chat", config.host, server.server_port)
    stopping.wait()
    print("hermes_web shutting down: ending active runs", file=sys.stderr, flush=True)
    shutdown(app)
    server.stop(timeout=1)
    return 0


def refusal_to_start(config):
    """Why the server must not start as configured (one line), or None.

    Bound beyond loopback, everyone on the network can reach it: it needs a password
    unless an authenticating proxy in front decides who gets in.
    """
    from hermes_web.app import open_auth_state
    from hermes_web.security.auth import AuthError
    from hermes_web.security.hosts import is_loopback
    from hermes_web.store.logstore import StoreUnavailable

    if config.auth_by_proxy or is_loopback(config.host) or config.password:
        return None
    try:
        if open_auth_state(config).password_hash():
            return None
    except AuthError as error:
        return str(error)
    except StoreUnavailable as error:
        # Whether a password is set is not known: starting could serve everyone.
        return (f"refusing to serve on {config.host}: {error}, so whether a password is set is not known. "
                "Start it once Redis answers, or set HERMES_WEB_PASSWORD")
    return (f"refusing to serve on {config.host} without a password: anyone who can reach it could read every chat. "
            "Run `hermes-web set-password` (or set HERMES_WEB_PASSWORD), or bind 127.0.0.1")


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _raise_open_file_limit() -> None:
    # Every SSE viewer holds a socket: allow as many as the hard limit permits.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
