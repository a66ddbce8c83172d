"""Several real ``hermes-web serve`` processes on one real redis-server (docs/redis.md).

Each server has a data dir of its own (its local search index) and they share the Redis
and the upload directory, as behind a load balancer.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.redis_server import RedisServer, require_redis_server
from tests.support import ROOT, SseClient, request

LEASE_SECONDS = 1.5
WAIT = 20.0


@pytest.fixture
def cluster(server_factory, tmp_path, request):
    """``start(name, redis=None, **env)``: a server on the shared (flushed) Redis."""
    require_redis_server()
    shared = request.getfixturevalue("redis_server")
    shared.flush()

    def start(name, redis=None, **env):
        return server_factory(data_dir=tmp_path / f"{name}-var", env={
            "HERMES_WEB_STORE": (redis or shared).url,
            "HERMES_WEB_UPLOADS_DIR": str(tmp_path / "shared-uploads"),
            "HERMES_WEB_REDIS_LEASE_S": str(LEASE_SECONDS),
            **env,
        })

    return start


def journal(server, run_id, offset=0) -> bytes:
    status, body, headers = request(server.url, "GET", f"/api/runs/{run_id}/journal?offset={offset}")
    assert status == 200, body
    return body


def frames_of(body: bytes, run_id: str, offset: int = 0) -> list:
    """``(id, event, data)`` a stream from ``offset`` must deliver for this journal."""
    frames = []
    end = 0
    for line in body.splitlines(keepends=True):
        end += len(line)
        if end > offset:
            frames.append((f"{run_id}:{end}", json.loads(line)["type"], json.loads(line)))
    return frames


def stream(server, path, last_event_id=None, until=lambda frame: False, timeout=WAIT, into=None) -> list:
    """The record frames of a stream until ``until`` holds, appended to ``into`` as they come."""
    client = SseClient(server.url, path, last_event_id=last_event_id, timeout=timeout)
    frames = [] if into is None else into
    try:
        assert client.status == 200, client.status
        for frame in client.records():
            frames.append(frame)
            if until(frame):
                break
    finally:
        client.close()
    return frames


def wait_for(predicate, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ended(frame) -> bool:
    return frame[1] in ("run.completed", "run.failed", "run.cancelled", "run.interrupted")


def run_status(server, run_id) -> str:
    status, body, _ = server.api("GET", f"/api/runs/{run_id}")
    return body["status"] if status == 200 else None


def test_a_run_on_one_server_is_streamed_resumed_and_viewed_on_another(cluster):
    one, two = cluster("one"), cluster("two")
    session_id = one.create_session()
    # A session stream on the second server, open before the run starts on the first.
    live = []
    watcher = threading.Thread(target=stream, args=(two, f"/api/sessions/{session_id}/events"),
                               kwargs={"until": lambda frame: frame[1] == "run.completed", "into": live})
    watcher.start()
    time.sleep(0.5)
    run_id = one.start_run(session_id, "several servers, one log")["run_id"]
    watcher.join(WAIT)
    assert not watcher.is_alive()

    body = journal(one, run_id)
    assert journal(two, run_id) == body  # byte for byte, from either server
    expected = frames_of(body, run_id)
    assert expected[-1][1] == "run.completed"
    assert [frame for frame in live if frame[0].startswith(run_id)] == expected
    assert stream(two, f"/api/runs/{run_id}/events") == expected
    for index, (cursor, _, _) in enumerate(expected[:-1]):
        assert stream(two, f"/api/runs/{run_id}/events", last_event_id=cursor) == expected[index + 1:], cursor
    status, _, _ = request(two.url, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": expected[-1][0]})
    assert status == 204
    status, _, _ = request(two.url, "GET", f"/api/runs/{run_id}/events?cursor={run_id}:1")
    assert status == 400  # not a record boundary, on any server

    views = [server.api("GET", f"/api/sessions/{session_id}")[1] for server in (one, two)]
    assert views[0] == views[1]
    assert views[0]["cursor"] == expected[-1][0] and views[0]["messages"][1]["status"] == "completed"
    later = cluster("three")  # a server started later sees everything
    assert later.api("GET", f"/api/sessions/{session_id}")[1] == views[0]
    assert [meta["id"] for meta in later.api("GET", "/api/sessions")[1]] == [session_id]
    results = wait_for(lambda: two.api("GET", "/api/search?q=several+servers")[1]["results"], what="search")
    assert results[0]["session_id"] == session_id  # indexed on the server that did not run it


def test_a_rename_on_one_server_reaches_a_session_stream_on_another(cluster):
    one, two = cluster("one"), cluster("two")
    session_id = one.create_session()
    client = SseClient(two.url, f"/api/sessions/{session_id}/events", timeout=WAIT)
    try:
        time.sleep(0.3)
        status, _, _ = one.api("PATCH", f"/api/sessions/{session_id}", {"title": "Renamed on one"})
        assert status == 200
        updated = next(frame for frame in client.frames() if frame.get("event") == "session.updated"
                       and json.loads(frame["data"])["title"] == "Renamed on one")
        assert json.loads(updated["data"])["id"] == session_id
        status, _, _ = one.api("DELETE", f"/api/sessions/{session_id}")
        assert status == 204
        assert any(frame.get("event") == "session.deleted" for frame in client.frames())
    finally:
        client.close()
    assert two.api("GET", f"/api/sessions/{session_id}")[0] == 404


def test_the_other_server_ends_a_killed_owners_run_exactly_once(cluster):
    owner = cluster("owner", HERMES_WEB_DEMO_DELAY_MS="40")
    other = cluster("other")
    session_id = owner.create_session()
    run_id = owner.start_run(session_id, "a turn whose server dies")["run_id"]
    frames = []
    follower = threading.Thread(target=stream, args=(other, f"/api/runs/{run_id}/events"),
                                kwargs={"until": ended, "into": frames})
    follower.start()
    wait_for(lambda: len(frames) > 3, what="the first records")
    owner.kill9()
    killed_at = time.monotonic()
    follower.join(WAIT)
    assert frames[-1][1] == "run.interrupted"
    # Within the lease and the viewer's once-a-second liveness recheck.
    assert time.monotonic() - killed_at < LEASE_SECONDS + 3
    body = journal(other, run_id)
    assert body.count(b'"type":"run.interrupted"') == 1 and b"run.interrupted" in body.splitlines()[-1]
    assert frames == frames_of(body, run_id)
    # Not before the lease lapsed: it is renewed three times per lease, so it outlives the
    # last record by at least two thirds of the lease.
    assert frames[-1][2]["ts"] - frames[-2][2]["ts"] >= LEASE_SECONDS * 2 / 3 - 0.1
    view = other.api("GET", f"/api/sessions/{session_id}")[1]
    assert view["active_run"] is None and view["messages"][1]["status"] == "interrupted"
    assert view["messages"][1]["reasoning"]  # what was written before the kill is kept
    # A new turn starts at once on the surviving server.
    next_run = other.start_run(session_id, "and on we go")["run_id"]
    assert other.wait_run_finished(next_run)["status"] == "completed"


def test_nobody_watching_a_killed_owners_run_still_ends_it(cluster):
    owner = cluster("owner", HERMES_WEB_DEMO_DELAY_MS="40")
    other = cluster("other")
    session_id = owner.create_session()
    run_id = owner.start_run(session_id, "nobody watches this one")["run_id"]
    time.sleep(0.3)
    owner.kill9()
    # The survivor's lease keeper sweeps unfinished runs once per lease period.
    body = wait_for(lambda: (lambda data: data if b"run.interrupted" in data else None)(journal(other, run_id)),
                    timeout=LEASE_SECONDS * 4, what="run.interrupted")
    assert body.count(b"run.interrupted") == 1


def test_cancel_works_from_the_server_that_does_not_own_the_run(cluster):
    owner = cluster("owner", HERMES_WEB_DEMO_DELAY_MS="40")
    other = cluster("other")
    session_id = owner.create_session()
    run_id = owner.start_run(session_id, "cancel me from elsewhere")["run_id"]
    wait_for(lambda: journal(other, run_id).count(b"\n") > 3, what="the first records")
    status, body, _ = other.api("POST", f"/api/runs/{run_id}/cancel", {})
    assert status == 200, body
    assert body["status"] == "cancelled"
    last = json.loads(journal(owner, run_id).splitlines()[-1])
    assert last["type"] == "run.cancelled" and last["by"] == "user"
    status, body, _ = other.api("POST", f"/api/runs/{run_id}/cancel", {})
    assert status == 200 and body["status"] == "cancelled"  # idempotent
    # Deleting a session whose run another server owns cancels it there first.
    run_id = owner.start_run(session_id, "deleted from elsewhere")["run_id"]
    status, _, _ = other.api("DELETE", f"/api/sessions/{session_id}")
    assert status == 204
    assert owner.api("GET", f"/api/sessions/{session_id}")[0] == 404
    assert owner.api("GET", f"/api/runs/{run_id}")[0] == 404


def test_compaction_while_servers_run_keeps_every_view(cluster, redis_server, tmp_path):
    one, two = cluster("one"), cluster("two")
    session_id = one.create_session()
    first, frames = one.run_to_end(session_id, "before compaction")
    views = [server.api("GET", f"/api/sessions/{session_id}")[1] for server in (one, two)]
    result = subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--older-than", "0",
                             "--data-dir", str(tmp_path / "compactor")], cwd=ROOT,
                            env={**os.environ, "HERMES_WEB_STORE": redis_server.url},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"compacted {first}" in result.stdout, result.stdout + result.stderr
    for server, before in zip((one, two), views):
        assert server.api("GET", f"/api/sessions/{session_id}")[1] == before
        assert server.api("GET", f"/api/runs/{first}/journal")[0] == 410  # folded into the transcript
    # A session stream from the compacted run's cursor goes on with the runs after it.
    live = []
    follower = threading.Thread(target=stream, args=(two, f"/api/sessions/{session_id}/events"),
                                kwargs={"last_event_id": frames[-1][0], "until": ended, "into": live})
    follower.start()
    time.sleep(0.3)
    second = one.start_run(session_id, "after compaction")["run_id"]
    follower.join(WAIT)
    assert live and all(frame[0].startswith(second) for frame in live) and live[-1][1] == "run.completed"


def test_an_upload_on_one_server_is_served_by_another(cluster):
    one, two = cluster("one"), cluster("two")
    session_id = one.create_session()
    boundary = "hermesboundary"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"note.txt\"\r\n"
               f"Content-Type: text/plain\r\n\r\nshared bytes\r\n--{boundary}--\r\n").encode()
    status, body, _ = request(one.url, "POST", f"/api/sessions/{session_id}/uploads", payload,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 201, body
    attachment = json.loads(body)["attachments"][0]
    status, data, _ = request(two.url, "GET", attachment["url"])
    assert status == 200 and data == b"shared bytes"


def test_a_redis_outage_mid_run_gives_503s_then_recovers(cluster, tmp_path):
    # Its own Redis, synced on every write, so the restart loses nothing acknowledged.
    redis = RedisServer(tmp_path / "redis", appendfsync="always").start()
    try:
        owner = cluster("owner", redis=redis, HERMES_WEB_DEMO_DELAY_MS="40")
        other = cluster("other", redis=redis)
        session_id = owner.create_session()
        run_id = owner.start_run(session_id, "a turn through an outage")["run_id"]
        frames = []
        follower = threading.Thread(target=stream, args=(other, f"/api/runs/{run_id}/events"),
                                    kwargs={"until": ended, "into": frames, "timeout": 30})
        follower.start()
        wait_for(lambda: len(frames) > 3, what="the first records")
        redis.kill()
        for server in (owner, other):
            for method, path, body in (("GET", "/api/sessions", None), ("GET", f"/api/sessions/{session_id}", None),
                                       ("POST", f"/api/sessions/{session_id}/runs", {"text": "now?"}),
                                       ("POST", "/api/sessions", {})):
                began = time.monotonic()
                status, answer, headers = server.api(method, path, body)
                assert status == 503, (method, path, status, answer)
                assert answer["error"]["code"] == "store_unavailable" and headers.get("Retry-After") == "1"
                assert time.monotonic() - began < 5  # never a hang
        time.sleep(1.0)
        redis.start()
        # Both servers recover by themselves, and the stream in progress carries on to an end.
        for server in (owner, other):
            wait_for(lambda: server.api("GET", "/api/sessions")[0] == 200, what="recovery")
        follower.join(30)
        assert not follower.is_alive()
        body = journal(other, run_id)
        assert frames == frames_of(body, run_id)
        assert frames[-1][1] in ("run.completed", "run.failed", "run.interrupted")
        assert run_status(other, run_id) != "running"
        later = owner.start_run(session_id, "after the outage")["run_id"]
        assert owner.wait_run_finished(later)["status"] == "completed"
    finally:
        redis.kill()
    for server in (owner, other):
        server.stop(signal.SIGTERM)
        log = server.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
