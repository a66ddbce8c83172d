"""``GET /healthz`` and ``GET /metrics``: what a supervisor and a Prometheus ask of a server
(docs/deploy.md#health-and-metrics).

``/healthz`` needs no credential: it says only whether the server can do its job, never what
it holds. ``/metrics`` needs one unless the server is bound to loopback.
"""

import os
import secrets
import shutil

from flask import Blueprint, current_app, jsonify

from hermes_web.core.fsutil import FILE_MODE, unlink_quietly, write_all
from hermes_web.core.metrics import COMPACTION_REPORT_NAME, compaction_report_collector, journal_bytes_collector, metrics
from hermes_web.core.services import service
from hermes_web.store.logstore import StoreUnavailable
from hermes_web.web.errors import ApiError

blueprint = Blueprint("health", __name__)
PROBE_PREFIX = ".healthz-"


def init_app(app, config, data_dir) -> None:
    """Switch the process's metrics on (unless configured off) and watch the data dir."""
    metrics.enabled = config.metrics
    if config.metrics:
        metrics.watch("compaction", compaction_report_collector(data_dir.root / COMPACTION_REPORT_NAME))
        if not config.store_url:
            metrics.watch("journals", journal_bytes_collector(data_dir.journals_root))
    app.register_blueprint(blueprint)


@blueprint.route("/healthz", methods=["GET", "HEAD"])
def healthz():
    """200 when the store answers and the data dir takes a durable write; 503 naming what fails."""
    config = service("config")
    data_dir = service("data_dir")
    checks = {"store": "redis" if config.store_url else "files"}
    try:
        for _ in service("logs").unfinished():
            break
    except StoreUnavailable as error:
        return _unhealthy(f"the store does not answer: {error}", checks)
    except OSError as error:
        return _unhealthy(f"the store cannot be read: {error.strerror or error}", checks)
    try:
        _probe_write(data_dir.root)
    except OSError as error:
        return _unhealthy(f"the data dir is not writable: {error.strerror or error}", checks)
    try:
        checks["free_bytes"] = shutil.disk_usage(data_dir.root).free
    except OSError:
        pass
    response = jsonify({"status": "ok", **checks})
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/metrics", endpoint="metrics")
def metrics_page():
    if not metrics.enabled:
        raise ApiError(404, "not_found", "metrics are off (HERMES_WEB_METRICS=off)")
    body, content_type = metrics.exposition()
    response = current_app.response_class(body, status=200, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def _unhealthy(reason: str, checks: dict):
    """503 with the one error format, and ``status`` beside it as in the 200 answer."""
    metrics.refused("unhealthy")
    response = jsonify({"status": "unavailable", "error": {"code": "unhealthy", "message": reason}, **checks})
    response.status_code = 503
    response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = "5"
    return response


def _probe_write(root) -> None:
    """Write, fsync and remove a small file: what every append and metadata change needs."""
    path = os.path.join(root, f"{PROBE_PREFIX}{secrets.token_hex(4)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        write_all(fd, b"ok\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        unlink_quietly(path)
