"""``GET /healthz`` and ``GET /metrics`` of real servers: health answers without a login and
names what fails (a read-only data dir, a Redis that went away); the metrics, in the
Prometheus text format, count what the server did, and ask for a credential beyond loopback."""

import json
import os
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import RedisServer, require_redis_server
from tests.test_full_disk import fill
from tests.support import ServerProcess, SseClient, request

PASSWORD = "correct horse battery staple"


def scrape(server, headers=None) -> dict:
    """``{(sample name, labels as a sorted tuple): value}`` of one scrape."""
    status, data, response_headers = request(server.url, "GET", "/metrics", headers=headers)
    assert status == 200, data
    assert response_headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(data.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "var", env={"HERMES_WEB_DEMO_DELAY_MS": "0"}).start()
    yield server
    server.stop()


def test_metrics_count_runs_appends_fsyncs_frames_and_journal_bytes(server):
    before = scrape(server)
    session_id = server.create_session()
    run_id, frames = server.run_to_end(session_id, "count me")
    # A second viewer replays the finished run: its frames count too.
    replay = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=30)
    try:
        replayed = list(replay.records())
    finally:
        replay.close()
    after = scrape(server)

    assert value(after, "hermes_web_runs_started_total", agent="demo") - value(
        before, "hermes_web_runs_started_total", agent="demo") == 1
    assert value(after, "hermes_web_runs_finished_total", agent="demo", status="completed") - value(
        before, "hermes_web_runs_finished_total", agent="demo", status="completed") == 1
    assert value(after, "hermes_web_active_runs") == 0
    records = len(server.journal_path(session_id, run_id).read_bytes().splitlines())
    # Every record after run.started went through an append (run.started is the log's creation).
    appends = value(after, "hermes_web_append_seconds_count") - value(before, "hermes_web_append_seconds_count")
    assert appends == records - 1
    assert value(after, "hermes_web_fsync_seconds_count") > value(before, "hermes_web_fsync_seconds_count")
    sent = value(after, "hermes_web_sse_frames_sent_total") - value(before, "hermes_web_sse_frames_sent_total")
    assert sent >= len(frames) + len(replayed)
    assert value(after, "hermes_web_sse_bytes_sent_total") > value(before, "hermes_web_sse_bytes_sent_total")
    assert value(after, "hermes_web_journal_bytes") == server.journal_path(session_id, run_id).stat().st_size
    assert value(after, "hermes_web_journal_files") == 1
    assert value(after, "hermes_web_open_streams", kind="run") == 0
    assert value(after, "process_cpu_seconds_total") > 0


def test_an_open_stream_and_a_refused_request_are_counted(server):
    session_id = server.create_session()
    stream = SseClient(server.url, f"/api/sessions/{session_id}/events", timeout=30)
    try:
        next(stream.frames())  # the stream is open once its first frame arrives
        assert value(scrape(server), "hermes_web_open_streams", kind="session") == 1
    finally:
        stream.close()
    status, _, _ = request(server.url, "GET", "/api/sessions", headers={"Host": "rebound.example"})
    assert status == 400
    assert value(scrape(server), "hermes_web_refused_requests_total", reason="host_not_allowed") == 1


def test_compaction_leaves_its_report_for_the_metrics(server):
    session_id = server.create_session()
    server.run_to_end(session_id, "to be compacted")
    done = subprocess.run(
        [*server.command, "compact", "--data-dir", str(server.data_dir), "--older-than", "0s"],
        cwd=server.cwd, env=server.env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((server.data_dir / "compaction-report.json").read_text())
    assert report["compacted"] == 1 and report["exit_code"] == 0
    assert oct((server.data_dir / "compaction-report.json").stat().st_mode & 0o777) == "0o600"
    samples = scrape(server)
    assert value(samples, "hermes_web_compaction_last_compacted") == 1
    assert value(samples, "hermes_web_compaction_last_errors") == 0
    assert value(samples, "hermes_web_compaction_last_finished_at") == pytest.approx(report["finished_at"])
    assert value(samples, "hermes_web_journal_files") == 0


def test_metrics_off_answers_404_and_healthz_still_works(tmp_path):
    server = ServerProcess(tmp_path / "var", env={"HERMES_WEB_METRICS": "off"}).start()
    try:
        status, data, _ = request(server.url, "GET", "/metrics")
        assert status == 404 and json.loads(data)["error"]["code"] == "not_found"
        status, data, _ = request(server.url, "GET", "/healthz")
        assert status == 200 and json.loads(data)["status"] == "ok"
    finally:
        server.stop()


def test_with_a_password_healthz_needs_no_login_and_beyond_loopback_metrics_need_one(tmp_path):
    server = ServerProcess(tmp_path / "var", env={"HERMES_WEB_PASSWORD": PASSWORD},
                           args=["--host", "0.0.0.0"]).start()
    try:
        status, data, _ = request(server.url, "GET", "/healthz")
        assert status == 200, data
        body = json.loads(data)
        assert body["status"] == "ok" and body["store"] == "files"
        assert set(body) == {"status", "store", "free_bytes"}  # nothing the server holds
        status, data, _ = request(server.url, "GET", "/metrics")
        assert status == 401 and json.loads(data)["error"]["code"] == "unauthorized"
        from hermes_web.security import auth

        token = auth.create_token(server.data_dir, "prometheus")
        assert value(scrape(server, {"Authorization": f"Bearer {token}"}),
                     "hermes_web_refused_requests_total", reason="unauthorized") >= 1
    finally:
        server.stop()


def test_healthz_says_503_while_the_data_dir_takes_no_write_and_200_again_after(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount_point)], check=True)
    server = None
    try:
        server = ServerProcess(mount_point / "var").start()
        filler = mount_point / "filler"
        fill(filler)
        status, data, headers = request(server.url, "GET", "/healthz")
        assert status == 503
        body = json.loads(data)
        assert body["error"]["code"] == "unhealthy" and body["status"] == "unavailable"
        assert "the data dir is not writable: No space left on device" in body["error"]["message"]
        assert headers["Retry-After"] == "5"
        filler.unlink()
        status, data, _ = request(server.url, "GET", "/healthz")
        assert status == 200, data
        assert not [name for name in os.listdir(mount_point / "var") if name.startswith(".healthz-")]
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_healthz_says_503_while_redis_is_down(tmp_path):
    require_redis_server()
    redis = RedisServer(tmp_path / "redis").start()
    server = ServerProcess(tmp_path / "var", env={"HERMES_WEB_STORE": redis.url}).start()
    try:
        status, data, _ = request(server.url, "GET", "/healthz")
        assert status == 200 and json.loads(data)["store"] == "redis", data
        redis.stop()
        status, data, _ = request(server.url, "GET", "/healthz", timeout=30)
        assert status == 503, data
        body = json.loads(data)
        assert "the store does not answer" in body["error"]["message"] and body["store"] == "redis"
    finally:
        server.stop()
        redis.stop()
