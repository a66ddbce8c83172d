"""Connection limits for the HTTP server (PROTOCOL 2.5, Limits; docs/security.md).

Mixins for gevent's ``pywsgi.WSGIServer`` and ``WSGIHandler``: ``serve.py`` (the only module
that imports gevent) puts them in front of those classes and hands over ``gevent.Timeout``.
They hook where pywsgi reads a request line and headers and writes a response, so pywsgi
still speaks HTTP; what changes is how long anything may take and what a refusal says:

- request headers must arrive within a deadline (408), and stay under a size (431);
- an idle kept-alive connection is closed;
- a response write that makes no progress for the write deadline drops the client, and
  its stream generator is closed, so what it held (journal descriptor, buffers) returns;
- connections are capped per client address and in total, below the open-file limit;
- every error pywsgi itself would answer in plain text (400, 414, 500) is the JSON error.
"""

import dataclasses
import logging
import socket
import http.client
import time

from hermes_web.core.codec import encode_line
from hermes_web.core.metrics import metrics
from hermes_web.security.limits import Slots, client_key, max_connections

log = logging.getLogger("hermes_web.server")

# Writes go out in pieces this big, each with the whole write deadline: a slow phone
# downloading a large body keeps going as long as it keeps reading.
WRITE_CHUNK_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_LINE = 65536  # http.client's limits, which pywsgi's own parser applied
MAX_HEADER_LINES = 100
MAX_REQUEST_LINE = 8192  # pywsgi's own limit (a longer line gets the 414)
# Refusals in flight (each holds its socket for at most REFUSAL_LINGER_SECONDS); past this
# a flood's connections are closed without an answer.
MAX_REFUSALS_IN_FLIGHT = 256
REFUSAL_LINGER_SECONDS = 1.0
MAX_DRAIN_BYTES = 1024 * 1024
REFUSAL_LOG_SECONDS = 60.0
REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclasses.dataclass(frozen=True)
class ConnectionPolicy:
    """The deadlines and caps one server applies, from :class:`hermes_web.core.config.Config`."""

    header_timeout: float
    keepalive_timeout: float
    write_timeout: float
    max_connections: int
    max_connections_per_client: int

    @classmethod
    def from_config(cls, config) -> "ConnectionPolicy":
        return cls(config.header_timeout, config.keepalive_timeout, config.write_timeout,
                   max_connections(config), config.max_connections_per_client)


def error_bytes(status: int, code: str, message: str, extra_headers=()) -> bytes:
    """A complete HTTP/1.1 response carrying the JSON error body; the connection closes."""
    body = encode_line({"error": {"code": code, "message": message}})[:-1]
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close",
            *(f"{name}: {value}" for name, value in extra_headers)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Deadline(Exception):
    """A deadline for reading a request passed (raised into the handler's greenlet)."""

    def __init__(self, phase: str):
        super().__init__(phase)
        self.phase = phase


class HeadersTooLarge(ValueError):
    """The request's header block is over MAX_HEADER_BYTES."""


class _BoundedLines:
    """The reader pywsgi parses headers from, with a budget for the whole header block.

    ``http.client`` alone allows 100 lines of 64 KiB each: 6.4 MB held per slow connection.
    """

    def __init__(self, reader, budget: int):
        self._reader = reader
        self._budget = budget

    def readline(self, limit: int = -1) -> bytes:
        want = self._budget + 1 if limit is None or limit < 0 else min(limit, self._budget + 1)
        line = self._reader.readline(want)
        self._budget -= len(line)
        if self._budget < 0:
            raise HeadersTooLarge(f"request headers exceed {MAX_HEADER_BYTES} bytes")
        return line


class RequestHeaders(http.client.HTTPMessage):
    """The header message pywsgi reads (its ``OldMessage`` interface)."""

    status = ""

    def getheader(self, name, default=None):
        return self.get(name, default)

    @property
    def typeheader(self):
        return self.get("content-type")

    @property
    def headers(self):
        for name, value in self._headers:
            yield f"{name}: {value}\r\n"


def parse_headers(reader):
    """The request's header block as the message pywsgi expects, with http.client's limits
    (lines of 64 KiB, 100 headers; ``status`` says what was wrong, pywsgi answers 400).

    Parsed here rather than by ``http.client.parse_headers``, whose trip through the email
    package's feed parser cost a fifth of the server's time per small request.
    """
    message = RequestHeaders()
    headers = message._headers
    for _ in range(MAX_HEADER_LINES + 1):
        line = reader.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            message.status = "Line too long"
            return message
        if line in (b"\r\n", b"\n", b""):
            return message
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            if not headers:
                message.status = "Continuation line before any header"
                return message
            name, value = headers[-1]
            headers[-1] = (name, value + " " + text.strip())
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            message.status = "Invalid header line"
            return message
        headers.append((name, value.strip()))
    message.status = f"More than {MAX_HEADER_LINES} headers"
    return message


class DirectWriter:
    """Writes a streamed response's bytes straight to its connection, past the WSGI write
    path, for the run's sender of live frames (``hermes_web/read/fanout.py``).

    ``try_send`` never waits: it sends bytes already framed as the response's transfer
    encoding needs (``chunked``) and returns what the socket did not take, which the viewer then writes itself
    (``send_rest``, under the write deadline) before anything else.
    """

    __slots__ = ("_handler", "_send")

    def __init__(self, handler):
        self._handler = handler
        # gevent's socket wraps a non-blocking OS socket; sending on that one directly saves
        # a Python-level call per viewer and batch (the wrapper would only add the wait a
        # timeout of 0 never does).
        self._send = getattr(handler.socket, "_sock", handler.socket).send

    def ready(self) -> bool:
        """True once the response's headers are out (the first frame went the usual way)."""
        return bool(self._handler.headers_sent)

    @property
    def chunked(self) -> bool:
        """True when the response's bytes go out in chunked transfer encoding."""
        return bool(self._handler.response_use_chunked)

    def try_send(self, data: bytes) -> bytes:
        """Send ``data`` (already framed as ``chunked`` says) without waiting; the rest."""
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        self._handler.response_length += sent
        return data[sent:]

    def send_rest(self, rest: bytes) -> None:
        self._handler._sendall(rest)  # noqa: SLF001 - the handler's own deadline-bounded write


class LimitedHandler:
    """Mixin for ``pywsgi.WSGIHandler``; ``Timeout`` is set to ``gevent.Timeout`` by serve.py."""

    Timeout = None
    _deadline = None
    _requests_read = 0

    @property
    def policy(self) -> ConnectionPolicy:
        return self.server.connection_policy

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.Timeout(seconds, _Deadline(phase))
        self._deadline.start()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def read_requestline(self):
        # Between requests the connection is idle: the keep-alive timeout. A new connection
        # must start its request within the header deadline, and finish its headers within
        # another once the first byte came.
        self.socket.settimeout(None)  # the deadlines govern until the headers are in
        first = self._requests_read == 0
        self._arm(self.policy.header_timeout if first else self.policy.keepalive_timeout, "idle")
        if not self.rfile.peek(1):
            return ""  # the client closed the connection
        self._arm(self.policy.header_timeout, "headers")
        self._requests_read += 1
        line = super().read_requestline()
        if not line.endswith("\n") and len(line) < MAX_REQUEST_LINE:
            return ""  # the client went away in the middle of its request line: nothing to answer
        return line

    def get_environ(self):
        environ = super().get_environ()
        if not self.server.ssl_enabled:  # a TLS socket's partial writes are not this simple
            environ["hermes_web.direct_writer"] = DirectWriter(self)
        return environ

    def MessageClass(self, reader, *args):  # noqa: N802 (pywsgi's name)
        return parse_headers(_BoundedLines(reader, MAX_HEADER_BYTES))

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self._disarm()
            # From here on each read of the body and each write of the response must make
            # progress within the write deadline.
            self.socket.settimeout(self.policy.write_timeout)

    def handle_one_request(self):
        try:
            result = super().handle_one_request()
        except _Deadline as expired:
            result = self._deadline_result(expired)
        finally:
            self._disarm()
        if isinstance(result, tuple):  # the request was refused before the app saw it
            status, body = result
            if status == "414":
                body = error_bytes(414, "request_line_too_long", "the request line is over 8 KiB")
            return self._refuse_request(status, body)
        return result

    def _refuse_request(self, status: str, body: bytes) -> None:
        """Answer ``body`` and close, reading (a bounded amount of) what the client still sends.

        Closing with unread input resets the connection, and a reset can destroy the
        answer before the client reads it.
        """
        self.status = self._orig_status = status
        try:
            self.socket.settimeout(REFUSAL_LINGER_SECONDS)
            self.socket.sendall(body)
            self.response_length = len(body)
            self.socket.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + REFUSAL_LINGER_SECONDS
            drained = 0
            while drained < MAX_DRAIN_BYTES and (left := deadline - time.monotonic()) > 0:
                self.socket.settimeout(left)
                chunk = self.socket.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        self.time_finish = time.time()
        self.log_request()
        return None

    def _deadline_result(self, expired: _Deadline):
        if expired.phase == "idle":
            return None  # close quietly: nothing was asked
        log.info("%s: request headers took over %.0f s; closing", self.client_address[0], self.policy.header_timeout)
        return "408", error_bytes(408, "header_timeout",
                                  f"the request headers did not arrive within {self.policy.header_timeout:g} s")

    def _handle_client_error(self, error):
        # pywsgi prints a traceback for anything not a ValueError and answers an empty
        # plain-text 400; a client's malformed request deserves one log line and JSON.
        if isinstance(error, _Deadline):
            return self._deadline_result(error)
        if isinstance(error, HeadersTooLarge):
            self.log_error("(from %s) %s", self.client_address[0], error)
            return "431", error_bytes(431, "headers_too_large", str(error))
        self.log_error("(from %s) malformed request: %s", self.client_address[0],
                       getattr(error, "formatted_message", None) or str(error) or type(error).__name__)
        return "400", error_bytes(400, "malformed_request", "the request is not valid HTTP/1.1")

    def _sendall(self, data):
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK_BYTES):
            super()._sendall(view[start:start + WRITE_CHUNK_BYTES])

    def handle_error(self, kind, error, traceback):
        if isinstance(error, (TimeoutError, socket.timeout)):
            # The client stopped reading: its socket buffer stayed full for the whole write
            # deadline. run_application has closed the response (and its stream) already.
            log.info("%s: stopped reading for %.0f s; dropped", self.client_address[0], self.policy.write_timeout)
            self.close_connection = True
            return
        log.error("unexpected error serving %s", self.requestline, exc_info=(kind, error, traceback))
        self._send_error_response_if_possible(500)

    def _send_error_response_if_possible(self, status):
        if self.response_length or self.headers_sent:
            self.close_connection = True
            return
        if status == 500:
            body = error_bytes(500, "internal_error", "internal server error")
        else:
            body = error_bytes(400, "malformed_request", "the request body is not valid HTTP/1.1")
        self.close_connection = True
        try:
            self.status = f"{status} {REASONS[status]}".encode("latin-1")
            self._orig_status = self.status.decode("latin-1")
            self.socket.sendall(body)
            self.headers_sent = True
            self.response_length = len(body)
        except OSError:
            pass


class LimitedServer:
    """Mixin for ``pywsgi.WSGIServer``: per-client and total connection caps, TLS deadline.

    Set ``connection_policy`` before starting.
    """

    connection_policy: ConnectionPolicy = None
    _slots = None
    _refusals = 0

    @property
    def slots(self) -> Slots:
        if self._slots is None:
            policy = self.connection_policy
            self._slots = Slots(policy.max_connections_per_client, policy.max_connections)
        return self._slots

    def do_handle(self, sock, address):
        refusal = self.slots.acquire(client_key(address[0]))
        if refusal is not None:
            self._refuse(sock, address, refusal)
            return
        # pywsgi writes the headers and the body in two sends: with Nagle's algorithm the
        # body waits for the client's delayed ACK of the headers, 40 ms on Linux, on
        # every small response over a kept-alive connection.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().do_handle(sock, address)  # do_close returns the slot, whatever happens

    def do_close(self, sock, address):
        try:
            super().do_close(sock, address)
        finally:
            self.slots.release(client_key(address[0]))

    def wrap_socket_and_handle(self, client_socket, address):
        # The TLS handshake is part of reading the request: same deadline, and a failed
        # one (a scanner, plain HTTP on the TLS port) is one log line, not a traceback.
        client_socket.settimeout(self.connection_policy.header_timeout)
        try:
            tls_socket = self.wrap_socket(client_socket, **self.ssl_args)
        except (OSError, ValueError) as error:
            log.info("%s: TLS handshake failed: %s", address[0], error)
            return None
        with tls_socket:
            return self.handle(tls_socket, address)

    def _refuse(self, sock, address, refusal: str) -> None:
        self._note_refusal(address[0], refusal)
        metrics.refused("too_many_connections")
        if self.ssl_enabled or self._refusals >= MAX_REFUSALS_IN_FLIGHT:
            sock.close()
            return
        if refusal == "client":
            response = error_bytes(429, "too_many_connections",
                                   f"this address already holds {self.connection_policy.max_connections_per_client} "
                                   "connections", [("Retry-After", "5")])
        else:
            response = error_bytes(503, "too_many_connections", "the server is at its connection limit; try again soon",
                                   [("Retry-After", "5")])
        self._refusals += 1
        self._spawn(self._answer_and_close, sock, response)  # the server's own greenlet spawn

    def _note_refusal(self, host: str, refusal: str) -> None:
        # A flood is refused thousands of times a second: one line per client a minute.
        key = client_key(host)
        now = time.monotonic()
        counts = self.__dict__.setdefault("_refusal_counts", {})
        first, count = counts.get(key, (now, 0))
        if count == 0 or now - first >= REFUSAL_LOG_SECONDS:
            log.warning("%s: refused %d connection(s) in %.0f s (%s)", host, count + 1, now - first,
                        "this address holds its share" if refusal == "client" else "the server is full")
            first, count = now, 0
            if len(counts) > 10_000:
                counts.clear()
        counts[key] = (first, count + 1)

    def _answer_and_close(self, sock, response: bytes) -> None:
        deadline = time.monotonic() + REFUSAL_LINGER_SECONDS
        try:
            sock.settimeout(REFUSAL_LINGER_SECONDS)
            sock.sendall(response)
            sock.shutdown(socket.SHUT_WR)
            # Wait (briefly) for the client to close: closing with its request unread would
            # reset the connection and could discard the answer before it is read.
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(65536):
                    break
        except OSError:
            pass
        finally:
            sock.close()
            self._refusals -= 1
