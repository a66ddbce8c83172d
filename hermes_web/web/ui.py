"""The browser UI: the single page, its assets, and the vendored npm libraries."""

from pathlib import PurePath

from flask import Blueprint, current_app, send_file, send_from_directory

from hermes_web.core.startup import StartupError
from hermes_web.web import assets
from hermes_web.web.errors import ApiError

blueprint = Blueprint("ui", __name__)

# Explicit types for what /vendor/ serves: the system's MIME table may lack .mjs or map .js
# to a legacy type, and a module script of the wrong type does not run.
VENDOR_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


@blueprint.record_once
def _locate_files(state):
    try:
        state.app.extensions["ui_files"] = assets.locate().check()
    except assets.AssetsMissing as error:
        raise StartupError(str(error)) from None


def _files() -> assets.UiFiles:
    return current_app.extensions["ui_files"]


def _page():
    response = send_from_directory(_files().static_dir, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/")
def index():
    return _page()


@blueprint.get("/s/<session_id>")
def session_page(session_id):
    return _page()


@blueprint.get("/static/<path:filename>")
def static_file(filename):
    # send_from_directory refuses paths that escape the static dir (werkzeug.security.safe_join).
    return send_from_directory(_files().static_dir, filename, max_age=0)


@blueprint.get("/vendor/<name>")
def vendor_file(name):
    # Only the listed names: nothing else of node_modules (or the package) is reachable.
    path = _files().vendor_paths.get(name)
    if path is None:
        raise ApiError(404, "not_found", "no such vendor file")
    mimetype = VENDOR_TYPES.get(PurePath(name).suffix, "application/octet-stream")
    return send_file(path, mimetype=mimetype, download_name=name, max_age=3600)


@blueprint.after_app_request
def security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            # Scripts and styles only from this origin: markdown from the model can never run
            # code or restyle the page, even if the sanitizer missed something.
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        )
    return response


