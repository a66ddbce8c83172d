"""The browser UI: the single page, its assets, and the vendored npm libraries."""

from pathlib import Path

from flask import Blueprint, send_from_directory

from hermes_web.web.errors import ApiError

blueprint = Blueprint("ui", __name__)

ROOT = Path(__file__).resolve().parent.parent.parent
STATIC_DIR = ROOT / "static"
NODE_MODULES = ROOT / "node_modules"
# The browser libraries the UI imports, each mapped to one file of its npm package.
VENDOR_FILES = {
    "marked.js": ("marked", "lib/marked.esm.js"),
    "purify.js": ("dompurify", "dist/purify.es.mjs"),
}


def _page():
    response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
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
    # send_from_directory refuses paths that escape STATIC_DIR (werkzeug.security.safe_join).
    return send_from_directory(STATIC_DIR, filename, max_age=0)


@blueprint.get("/vendor/<name>")
def vendor_file(name):
    entry = VENDOR_FILES.get(name)
    if entry is None:
        raise ApiError(404, "not_found", "no such vendor file")
    package, relative = entry
    return send_from_directory(NODE_MODULES / package, relative, mimetype="text/javascript", max_age=3600)


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


