"""The checks every request passes before a view runs (PROTOCOL 2.5), in this order:

1. ``Host`` names this server (DNS rebinding);
2. a state-changing request comes from this server's own pages (cross-site forgery);
3. a credential, when a password is configured (who may use the server at all);
4. a body is JSON, except on upload routes (forms and ``text/plain`` never reach a view).

Each refusal is a 4xx with the JSON error body. No route grants CORS.
"""

import urllib.parse

from flask import current_app, g, redirect, request

from hermes_web.core.services import register, service
from hermes_web.security.credentials import Credentials
from hermes_web.security.hosts import HostPolicy, same_origin
from hermes_web.web.errors import ApiError, error_response

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPE = "application/json"
LOGIN_COOKIE = "hermes_web_login"
# Reachable without a credential: the login page, what it loads, and the login itself.
PUBLIC_ENDPOINTS = frozenset({("GET", "login.page"), ("HEAD", "login.page"), ("POST", "login.login"),
                              ("GET", "health.healthz"), ("HEAD", "health.healthz")})
# Public only on a server bound to loopback: whoever can reach it is on this machine.
LOOPBACK_ENDPOINTS = frozenset({("GET", "health.metrics")})
# Views whose Location is absolute by their protocol (Durable Streams' 201), built from
# the Host header that check_host allowed.
ABSOLUTE_LOCATION_ENDPOINTS = frozenset({"durable_streams.stream"})
LOGIN_ASSETS = frozenset({"app.css", "login.js"})
PAGE_ENDPOINTS = frozenset({"ui.index", "ui.session_page"})
# Sec-Fetch-Site values of requests a page of this server (or the user, typing a URL) made.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def multipart(view):
    """Mark a view that takes ``multipart/form-data`` (uploads) instead of JSON."""
    view.checks_own_media_type = True
    return view


def any_body(view):
    """Mark a view that takes bodies of any media type and checks them itself (Durable
    Streams: a stream holds the type it was created with)."""
    view.checks_own_media_type = True
    return view


class Guard:
    """What the checks need: the host policy and the credentials."""

    def __init__(self, config, credentials):
        self.hosts = HostPolicy(config.host, config.allowed_hosts)
        self.credentials = credentials


def guard() -> Guard:
    return service("guard")


def init_app(app, config, auth_state) -> None:
    """Run the checks before every request and tidy every response; credentials are those
    of ``auth_state`` (the data dir's files, or the shared store's)."""
    register(app, "guard", Guard(config, Credentials(config, auth_state)))
    # Registered first so they run before any other blueprint's or app's own hooks.
    app.before_request_funcs.setdefault(None, []).insert(0, _check_request)
    app.after_request(_tidy_response)
    app.register_error_handler(TimeoutError, _body_timeout)


def _body_timeout(error):
    # A client that stops sending its request body for the write deadline (the socket's
    # timeout, see hermes_web/security/connections.py): answer, and let the connection go.
    response = error_response(408, "body_timeout", "the request body stopped arriving")
    response.headers["Connection"] = "close"
    return response


def _check_request():
    check_host()
    check_origin()
    response = check_credential()
    if response is not None:
        return response
    check_media_type()
    return None


def check_host() -> None:
    """Refuse a ``Host`` that does not name this server.

    Stops DNS rebinding: a web page whose own name was re-pointed at 127.0.0.1 (or at this
    machine's LAN address) is same-origin with itself in the browser, so only the ``Host``
    header it sends tells its requests from the user's own. Refused before anything is
    read, so such a page never gets a byte of data.
    """
    if not guard().hosts.allows(request.headers.get("Host", "")):
        raise ApiError(400, "host_not_allowed",
                       "this server does not answer to that host name; add it to HERMES_WEB_ALLOWED_HOSTS")


def check_origin() -> None:
    """Refuse a state-changing request that a page of another origin made.

    Stops cross-site request forgery, including from another port of this machine, which
    is the same *site* (so even ``SameSite`` cookies are sent). Browsers send ``Origin``
    with every POST, PUT, PATCH and DELETE; without one, ``Sec-Fetch-Site`` must say the
    request came from this origin or from the user. Clients that send neither (curl,
    scripts) are not browsers and pass on to the credential check.
    """
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("Origin")
    if origin is not None:
        if same_origin(origin, request.headers.get("Host", ""), request.scheme):
            return
    else:
        site = request.headers.get("Sec-Fetch-Site")
        if site is None or site.lower() in OWN_FETCH_SITES:
            return
    raise ApiError(403, "cross_origin", "requests that change something must come from this server's own pages")


def check_credential():
    """With a password configured, every route but the login needs a credential.

    Stops everyone who can reach the port (the Wi-Fi, the tailnet) from reading chats or
    spending the owner's API key. API and stream requests get 401; pages redirect to
    ``/login``.
    """
    g.credential = None
    if _is_public():
        return None  # answered without the login state, also while a shared store is down
    authorization = request.headers.get("Authorization", "")
    token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
    identity = guard().credentials.identify(token, request.cookies.get(LOGIN_COOKIE))
    g.credential = identity.credential
    g.password_required = identity.required
    if g.credential is not None or not identity.required:
        return None
    if request.method in ("GET", "HEAD") and _wants_page():
        return redirect("/login?" + urllib.parse.urlencode({"next": request.full_path.rstrip("?")}), code=303)
    response = error_response(401, "unauthorized", "log in, or send Authorization: Bearer <token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="hermes_web"'
    return response


def _is_public() -> bool:
    if (request.method, request.endpoint) in PUBLIC_ENDPOINTS:
        return True
    if (request.method, request.endpoint) in LOOPBACK_ENDPOINTS and not guard().hosts.beyond_loopback:
        return True
    return (request.method in ("GET", "HEAD") and request.endpoint == "ui.static_file"
            and (request.view_args or {}).get("filename") in LOGIN_ASSETS)


def _wants_page() -> bool:
    if request.path.startswith("/api/"):
        return False
    return request.endpoint in PAGE_ENDPOINTS or request.accept_mimetypes.accept_html


def check_media_type() -> None:
    """Refuse a state-changing request whose body is not JSON (uploads: multipart).

    Stops "simple" cross-site requests: an HTML form can only send form encodings or
    ``text/plain``, and ``fetch``/``sendBeacon`` without a CORS preflight only those too,
    so no such request can start a run even where ``Origin`` is missing or spoofed.
    """
    if request.method not in STATE_CHANGING or request.routing_exception is not None:
        return  # no such route or method: its 404 or 405 says more than a 415
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "checks_own_media_type", False):
        return  # the view insists on its own media types (multipart/form-data, a stream's)
    content_type = request.headers.get("Content-Type")
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if content_type is None and not has_body:
        return
    if request.mimetype != JSON_TYPE:
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json")


def _tidy_response(response):
    # No route grants CORS: nothing here may ever let another origin read a response.
    for name in [name for name in response.headers.keys() if name.lower().startswith("access-control-")]:
        del response.headers[name]
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)  # no body, no type
    location = response.headers.get("Location")
    if location:
        # Werkzeug builds redirects (merged slashes) from the Host header: keep only the
        # path, so a response never points at a host the request named.
        parts = urllib.parse.urlsplit(location)
        if (parts.scheme or parts.netloc) and request.endpoint not in ABSOLUTE_LOCATION_ENDPOINTS:
            # One leading slash: "//name" would be read as another host again.
            path = "/" + parts.path.lstrip("/\\")
            response.headers["Location"] = path + ("?" + parts.query if parts.query else "")
    if request.cookies.get(LOGIN_COOKIE) is not None or response.headers.get("Set-Cookie"):
        response.vary.add("Cookie")
    return response
