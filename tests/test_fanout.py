"""Live delivery by the run's sender (hermes_web/read/fanout.py): caught-up viewers get every
frame once and in order, a viewer that stops reading falls back to its own loop without
holding up the others, and picks up exactly where its socket stopped."""

import json
import socket
import threading
import time

from tests.support import SseClient, expected_frames

STREAM_TIMEOUT = 60.0


def raw_stream(server, path: str, receive_buffer: int = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def frames_of(data: bytes) -> list:
    body = data.split(b"\r\n\r\n", 1)[1]
    frames = []
    for block in body.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line and not line.startswith(b":"))
        if b"id" in fields:
            frames.append((fields[b"id"].decode(), fields[b"event"].decode(), fields[b"data"].decode()))
    return frames


def test_caught_up_viewers_get_every_frame_and_a_stalled_one_catches_up_exactly(server_factory):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "3"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "fan this out to every viewer " * 30)["run_id"]
    results = {}

    def follow(index):
        client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
        try:
            results[index] = [(frame["id"], frame["event"], frame["data"]) for frame in client.frames() if "id" in frame]
        finally:
            client.close()

    followers = [threading.Thread(target=follow, args=(index,)) for index in range(20)]
    for follower in followers:
        follower.start()
    # A viewer over HTTP/1.0 (no chunking) with a tiny receive buffer that stops reading.
    stalled = raw_stream(server, f"/api/runs/{run_id}/events", receive_buffer=2048)
    session_viewer = raw_stream(server, f"/api/sessions/{session_id}/events?cursor={run_id}:0")
    time.sleep(1.0)
    for follower in followers:
        follower.join(STREAM_TIMEOUT)
    received = b""
    stalled.settimeout(10)
    while True:
        chunk = stalled.recv(65536)
        if not chunk:
            break
        received += chunk
    stalled.close()
    expected = expected_frames(server.journal_path(session_id, run_id), run_id)
    assert json.loads(expected[-1][2])["type"] == "run.completed"
    for index in range(20):
        assert results[index] == expected, f"viewer {index}"
    assert frames_of(received) == expected
    session_viewer.settimeout(10)
    seen = b""
    while not all(frame_id.encode() in seen for frame_id, _, _ in expected[-1:]):
        seen += session_viewer.recv(65536)
    session_viewer.close()
    assert frames_of(seen) == expected
