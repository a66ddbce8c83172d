"""Caps on concurrent streams, per client address and in total (PROTOCOL 2.5, Limits).

A stream holds a connection for as long as the viewer watches; a request holds one for a
moment. Counting streams apart keeps one client from holding every stream slot, and keeps
room for API requests (sending a message, cancelling) however many viewers there are.

A slot is taken before the view runs, so a refused stream never opens its journal, and it
is returned when the stream's response is closed (or at once, when the view answered
something else: a 204, an error).
"""

import threading

from flask import g, request
from werkzeug.wsgi import ClosingIterator

from hermes_web.core.services import register
from hermes_web.security.limits import Slots, client_key, max_streams
from hermes_web.web.errors import error_response

STREAM_TYPE = "text/event-stream"
RETRY_AFTER_SECONDS = 5


def counted(view):
    """Mark a view whose answer is a stream: it needs a stream slot."""
    view.holds_a_stream = True
    return view


def init_app(app, config) -> None:
    slots = Slots(config.max_streams_per_client, max_streams(config))
    register(app, "stream_slots", slots)

    @app.before_request
    def take_slot():
        view = app.view_functions.get(request.endpoint)
        if request.method != "GET" or not getattr(view, "holds_a_stream", False):
            return None
        key = client_key(request.remote_addr)
        refusal = slots.acquire(key)
        if refusal is None:
            g.stream_slot = _once(slots.release, key)
            return None
        if refusal == "client":
            refused = error_response(429, "too_many_streams",
                                     f"this address already has {slots.per_client} open streams; close some tabs")
        else:
            refused = error_response(503, "server_busy", "the server holds as many streams as it can; try again soon")
        refused.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return refused

    @app.after_request
    def hand_over_slot(response):
        release = g.pop("stream_slot", None)
        if release is not None:
            if response.status_code == 200 and response.mimetype == STREAM_TYPE:
                response.response = ClosingIterator(response.response, release)
            else:
                release()
        return response

    @app.teardown_request
    def return_slot(error=None):
        release = g.pop("stream_slot", None)  # left only when no response was made
        if release is not None:
            release()


def _once(function, *args):
    """``function(*args)`` on the first call only: a stream's slot is returned exactly once."""
    done = threading.Event()

    def call():
        if not done.is_set():
            done.set()
            function(*args)

    return call
