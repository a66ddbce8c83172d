"""The server's metrics, in the Prometheus text format (``GET /metrics``, docs/deploy.md).

One registry per process, filled by the layers that see each event: the run manager (runs
started, ended, active), the stores (append and fsync latency), the streams (frames and
bytes sent, open streams), the login and the error responses. ``hermes-web serve`` is one
process, so no multiprocess mode is needed; compaction, a separate process, leaves its last
report in the data dir, which :func:`compaction_report_collector` reads at each scrape.

With ``HERMES_WEB_METRICS=off`` every recording call returns at once and ``/metrics``
answers 404.
"""

import json
import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

# A `_created` series beside every counter only doubles a scrape.
disable_created_metrics()

# Appends are microseconds on a page cache, fsyncs milliseconds on a disk: buckets that
# tell a healthy disk from a failing one.
APPEND_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# The text format every Prometheus version reads (generate_latest writes it); newer clients
# label the same bytes version=1.0.0, which Prometheus before 3.0 does not know.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
COMPACTION_REPORT_NAME = "compaction-report.json"
# The frames of an SSE chunk end with a blank line; a data line never holds a raw newline.
FRAME_END = b"\n\n"


class Metrics:
    """Every metric of one server; ``enabled=False`` makes each recording call a no-op."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._watched = {}
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.runs_started = Counter(
            "hermes_web_runs_started", "Runs started, by agent.", ["agent"], registry=registry)
        self.runs_finished = Counter(
            "hermes_web_runs_finished", "Runs ended, by agent and terminal status "
            "(completed, failed, cancelled, interrupted).", ["agent", "status"], registry=registry)
        self.active_runs = Gauge(
            "hermes_web_active_runs", "Runs this server is writing now.", registry=registry)
        self.open_streams = Gauge(
            "hermes_web_open_streams", "SSE streams open now, by kind (run, session).", ["kind"], registry=registry)
        self.sse_frames = Counter(
            "hermes_web_sse_frames_sent", "SSE frames written to viewers (records, heartbeats, control).",
            registry=registry)
        self.sse_bytes = Counter(
            "hermes_web_sse_bytes_sent", "SSE bytes written to viewers.", registry=registry)
        self.append_seconds = Histogram(
            "hermes_web_append_seconds", "Time to append one record to a run's log.",
            buckets=APPEND_BUCKETS, registry=registry)
        self.fsync_seconds = Histogram(
            "hermes_web_fsync_seconds", "Time of one fsync (or store sync) of a run's log.",
            buckets=FSYNC_BUCKETS, registry=registry)
        self.login_failures = Counter(
            "hermes_web_login_failures", "Failed logins (wrong password or rate-limited).", registry=registry)
        self.refused_requests = Counter(
            "hermes_web_refused_requests", "Requests answered with an error, by its code "
            "(host_not_allowed, cross_origin, unauthorized, too_many_streams, ...).", ["reason"], registry=registry)

    # ------------------------------------------------------------ recording

    def run_started(self, agent: str) -> None:
        if self.enabled:
            self.runs_started.labels(agent).inc()
            self.active_runs.inc()

    def run_finished(self, agent: str, terminal_type: str) -> None:
        if self.enabled:
            self.runs_finished.labels(agent, terminal_type.rpartition(".")[2]).inc()
            self.active_runs.dec()

    def appended(self, seconds: float) -> None:
        if self.enabled:
            self.append_seconds.observe(seconds)

    def synced(self, seconds: float) -> None:
        if self.enabled:
            self.fsync_seconds.observe(seconds)

    def sent(self, data: bytes, viewers: int = 1) -> None:
        """``data`` (whole SSE frames) went out to ``viewers`` viewers."""
        if self.enabled and data:
            self.sse_frames.inc(data.count(FRAME_END) * viewers)
            self.sse_bytes.inc(len(data) * viewers)

    def login_failed(self) -> None:
        if self.enabled:
            self.login_failures.inc()

    def refused(self, reason: str) -> None:
        if self.enabled:
            self.refused_requests.labels(reason).inc()

    def count_open_streams(self, kind: str):
        """A context manager around one open stream (a no-op when disabled)."""
        return self.open_streams.labels(kind).track_inprogress() if self.enabled else _NOTHING

    def watch(self, name: str, collector) -> None:
        """Read ``collector`` at each scrape (journal bytes, the compaction report); a later
        app of the same process replaces the one of that name."""
        previous = self._watched.pop(name, None)
        if previous is not None:
            self.registry.unregister(previous)
        self.registry.register(collector)
        self._watched[name] = collector

    def exposition(self) -> tuple:
        """``(body, content type)`` of a scrape."""
        return generate_latest(self.registry), TEXT_FORMAT


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


_NOTHING = _Nothing()
# The process's metrics; ``create_app`` switches them on unless HERMES_WEB_METRICS=off.
metrics = Metrics(enabled=False)


class CallbackCollector:
    """A custom collector: ``collect_families()`` returns metric families at each scrape."""

    def __init__(self, collect_families):
        self._collect = collect_families

    def collect(self):
        return self._collect()

    def describe(self):
        return []


def journal_bytes_collector(journals_dir) -> CallbackCollector:
    """``hermes_web_journal_bytes``: the size of every journal (and torn tail) not yet compacted."""

    def families():
        total = 0
        files = 0
        try:
            sessions = list(os.scandir(journals_dir))
        except OSError:
            sessions = []
        for session in sessions:
            try:
                entries = list(os.scandir(session.path)) if session.is_dir(follow_symlinks=False) else []
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                        files += 1
                except OSError:
                    continue
        size = GaugeMetricFamily("hermes_web_journal_bytes", "Bytes of run journals on disk (not yet compacted).")
        size.add_metric([], total)
        count = GaugeMetricFamily("hermes_web_journal_files", "Run journal files on disk (not yet compacted).")
        count.add_metric([], files)
        return [size, count]

    return CallbackCollector(families)


def compaction_report_collector(report_path) -> CallbackCollector:
    """The last compaction's report, as ``hermes_web_compaction_last_*`` gauges."""

    def families():
        try:
            with open(report_path, "rb") as file:
                report = json.loads(file.read(64 * 1024))
        except (OSError, ValueError):
            return []
        if not isinstance(report, dict):
            return []
        out = []
        for key, help_text in COMPACTION_FIELDS.items():
            value = report.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                family = GaugeMetricFamily(f"hermes_web_compaction_last_{key}", help_text)
                family.add_metric([], value)
                out.append(family)
        return out

    return CallbackCollector(families)


# What a compaction pass reports (``compaction/plan.py::Report``), and the time it ended.
COMPACTION_FIELDS = {
    "finished_at": "When the last compaction pass ended (Unix time).",
    "exit_code": "Exit code of the last compaction pass (0 ok or busy, 1 failure).",
    "compacted": "Runs the last compaction pass folded into transcripts.",
    "finished": "Dead runs the last compaction pass finished.",
    "skipped": "Runs the last compaction pass left alone (live, damaged, too young).",
    "damaged": "Runs with damaged lines the last compaction pass did not fold.",
    "errors": "Errors of the last compaction pass.",
    "bytes_freed": "Bytes the last compaction pass freed.",
    "archives_pruned": "Archives the last compaction pass pruned.",
}
