"""Logging in and out: the login page, ``POST /api/login``, ``POST /api/logout``, ``GET /api/auth``."""

import logging
import math
import threading

from flask import Blueprint, current_app, g, jsonify, redirect, request, send_from_directory

from hermes_web.core.metrics import metrics
from hermes_web.core.services import register, service
from hermes_web.security.limits import client_key
from hermes_web.web.errors import ApiError, error_response
from hermes_web.web.guard import LOGIN_COOKIE, guard
from hermes_web.web.inputs import json_body

blueprint = Blueprint("login", __name__)
log = logging.getLogger(__name__)

# scrypt holds 32 MiB for about 0.1 s: a few at a time keep a login flood from eating memory.
CONCURRENT_CHECKS = 2


class Logins:
    """Failed-login windows per client, and where the slow password check runs."""

    def __init__(self, failures, offload=None):
        self.failures = failures
        self._offload = offload
        self._checks = threading.BoundedSemaphore(CONCURRENT_CHECKS)

    def check_password(self, credentials, password: str) -> bool:
        with self._checks:
            return credentials.check_password(password, self._offload)


def init_app(app, failures, offload=None) -> None:
    """``failures`` counts failed logins: this process's own window, or the shared store's."""
    register(app, "logins", Logins(failures, offload))
    app.register_blueprint(blueprint)


def logins() -> Logins:
    return service("logins")


@blueprint.get("/login")
def page():
    if not guard().credentials.required:
        return redirect("/", code=303)
    # Where the UI's files are (a checkout or the installed package), as ui.py found them.
    response = send_from_directory(current_app.extensions["ui_files"].static_dir, "login.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.post("/api/login")
def login():
    """Exchange the password for a login cookie; failures are limited per client address."""
    credentials = guard().credentials
    if not credentials.required:
        raise ApiError(409, "login_not_required", "this server has no password set; no login is needed")
    client = client_key(request.remote_addr)
    wait = logins().failures.retry_after(client)
    if wait > 0:
        return _too_many(wait)
    password = json_body().get("password")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "invalid_password", "password must be a non-empty string")
    if not logins().check_password(credentials, password):
        logins().failures.record_failure(client)
        metrics.login_failed()
        log.warning("failed login from %s", request.remote_addr)
        raise ApiError(401, "wrong_password", "that is not the password")
    logins().failures.forget(client)
    response = jsonify({"login": "cookie", "expires_in": int(credentials.max_age)})
    response.set_cookie(LOGIN_COOKIE, credentials.issue_cookie(), max_age=int(credentials.max_age), path="/",
                        secure=_came_over_tls(), httponly=True, samesite="Lax")
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/api/logout")
def logout():
    """End this browser's login for good (the cookie stops working on every server), or with
    ``{"everywhere": true}`` every login of every browser."""
    everywhere = json_body(required=False).get("everywhere", False)
    if not isinstance(everywhere, bool):
        raise ApiError(400, "invalid_everywhere", "everywhere must be true or false")
    credential = g.get("credential")
    if everywhere:
        guard().credentials.end_every_login()
    elif credential is not None and credential[0] == "cookie":
        login_id, issued_at = credential[1]
        guard().credentials.end_login(login_id, issued_at)
    response = current_app.response_class(status=204)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=_came_over_tls(), httponly=True, samesite="Lax")
    return response


@blueprint.get("/api/auth")
def status():
    """What the UI needs to know: is a login in force, and did this request use one."""
    credentials = guard().credentials
    credential = g.get("credential")
    return jsonify({
        "password_required": g.password_required,  # as the guard read it for this request
        "auth_by_proxy": credentials.by_proxy,
        "credential": credential[0] if credential else None,
    })


def _too_many(wait: float):
    seconds = max(1, math.ceil(wait))
    response = error_response(429, "too_many_attempts", f"too many failed logins; try again in {seconds} s",
                              retry_after=seconds)
    response.headers["Retry-After"] = str(seconds)
    return response


def _came_over_tls() -> bool:
    # Behind a TLS-terminating proxy on this machine the request arrives over plain HTTP;
    # the proxy says so, and only a local peer can be that proxy.
    if request.scheme == "https":
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").lower()
    return forwarded == "https" and request.remote_addr in ("127.0.0.1", "::1")
