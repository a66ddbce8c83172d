"""Upload and attachment routes (PROTOCOL 2, 2.3)."""

from flask import Blueprint

blueprint = Blueprint("uploads", __name__, url_prefix="/api")
