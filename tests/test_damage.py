"""Damaged files (PROTOCOL 1.4): one bad byte never takes a session, the list or the server
down, and is never hidden. Every case is a real server over files damaged by hand."""

import json
import subprocess
import sys
import time

from hermes_web.core.records import TERMINAL_TYPES
from tests.support import ROOT, SseClient, journal_lines

STREAM_TIMEOUT = 30.0
GARBAGE = b'{"type":"text.delta","ts":1,"te\xff\x00xt": garbage'


def finished_run(server, session_id, text="hello damaged world"):
    run_id = server.start_run(session_id, text)["run_id"]
    server.wait_run_finished(run_id)
    return run_id


def damage_middle_line(path, index=3) -> bytes:
    """Replace line ``index`` of a journal with garbage of the same length (offsets keep)."""
    lines = path.read_bytes().split(b"\n")
    original = lines[index]
    lines[index] = (GARBAGE * (len(original) // len(GARBAGE) + 1))[: len(original)].replace(b"\n", b" ")
    path.write_bytes(b"\n".join(lines))
    return original


def records_of(client):
    return [(frame["id"], frame["event"], frame["data"]) for frame in client.frames() if "id" in frame]


def test_a_damaged_line_in_a_finished_journal_is_shown_counted_and_skipped_after_a_restart(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(data_dir=data_dir)
    session_id = server.create_session()
    run_id = finished_run(server, session_id)
    path = server.journal_path(session_id, run_id)
    damage_middle_line(path)
    server.stop()
    server = server_factory(data_dir=data_dir)
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert status == 200
    assistant = view["messages"][-1]
    assert assistant["damaged"] == 1 and assistant["status"] == "completed"
    assert view["cursor"] == f"{run_id}:{path.stat().st_size}"
    # The stream sends the damaged line as a frame with a valid cursor, and resumes after it.
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        frames = records_of(client)
    finally:
        client.close()
    damaged = [frame for frame in frames if frame[1] == "record.damaged"]
    assert len(damaged) == 1 and json.loads(damaged[0][2]) == {"type": "record.damaged", "bytes": len(journal_lines(path)[3][0])}
    assert [frame[0] for frame in frames] == [f"{run_id}:{end}" for _, end in journal_lines(path)]
    resumed = SseClient(server.url, f"/api/runs/{run_id}/events", last_event_id=damaged[0][0], timeout=STREAM_TIMEOUT)
    try:
        assert records_of(resumed) == frames[frames.index(damaged[0]) + 1:]
    finally:
        resumed.close()
    # The session goes on: a new message runs to its end (no run left "running" forever).
    next_run = finished_run(server, session_id, "still works")
    assert server.api("GET", f"/api/runs/{next_run}")[1]["status"] == "completed"
    listed = {item["id"]: item for item in server.api("GET", "/api/sessions")[1]}
    assert listed[session_id]["active_run"] is None


def test_a_damaged_last_line_of_a_dead_run_is_kept_and_the_run_ends_interrupted(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "20"}, data_dir=data_dir)
    session_id = server.create_session()
    run_id = server.start_run(session_id, "die with a bad last line")["run_id"]
    path = server.journal_path(session_id, run_id)
    while path.read_bytes().count(b"\n") < 6:
        pass
    server.kill9()
    with open(path, "ab") as handle:
        handle.write(b"\x00\x01 not a record at all\n")
    server = server_factory(data_dir=data_dir)
    records = [line for line, _ in journal_lines(path)]
    assert records[-2] == b"\x00\x01 not a record at all\n"
    assert json.loads(records[-1])["type"] == "run.interrupted"
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert view["messages"][-1]["status"] == "interrupted" and view["messages"][-1]["damaged"] == 1


def test_a_transcript_cut_mid_line_degrades_only_its_own_session(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(data_dir=data_dir)
    damaged_session = server.create_session()
    kept = [finished_run(server, damaged_session, f"turn {index}") for index in range(3)]
    healthy = server.create_session()
    healthy_run = finished_run(server, healthy, "untouched")
    compact = subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(data_dir),
                              "--older-than", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert compact.returncode == 0, compact.stdout + compact.stderr
    transcript = data_dir / "transcripts" / f"{damaged_session}.jsonl"
    data = transcript.read_bytes()
    transcript.write_bytes(data[: len(data) - 40])  # the last assistant line is cut
    status, view, _ = server.api("GET", f"/api/sessions/{damaged_session}")
    assert status == 200 and view["damaged"] == 1
    assert [message["run_id"] for message in view["messages"] if message["role"] == "user"] == kept
    assert server.api("GET", f"/api/runs/{kept[0]}")[1]["status"] == "completed"
    assert server.api("GET", "/api/runs/01700000000000000-abcdef-ffffffffffffffff")[0] == 404
    assert server.api("GET", f"/api/runs/{healthy_run}")[0] == 200
    assert server.api("GET", "/api/sessions")[0] == 200
    assert server.api("GET", f"/api/sessions/{healthy}")[1]["messages"][-1]["text"]
    # A new run there works, and compaction reports the damage and leaves that session.
    finished_run(server, damaged_session, "after the damage")
    again = subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(data_dir),
                            "--older-than", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "damaged" in again.stdout and "Traceback" not in again.stdout + again.stderr
    assert transcript.read_bytes() == data[: len(data) - 40]


def test_unreadable_session_metadata_is_listed_as_damaged_and_the_rest_is_served(server):
    broken = [server.create_session() for _ in range(3)]
    healthy = server.create_session()
    finished_run(server, healthy)
    (server.data_dir / "sessions" / f"{broken[0]}.json").write_bytes(b"[]")
    (server.data_dir / "sessions" / f"{broken[1]}.json").write_bytes(b'{"id": "x", "title"')
    (server.data_dir / "sessions" / f"{broken[2]}.json").write_bytes(b"\xff\xfe\x00")
    status, listed, _ = server.api("GET", "/api/sessions")
    assert status == 200
    by_id = {item["id"]: item for item in listed}
    for session_id in broken:
        assert by_id[session_id]["damaged"] is True and by_id[session_id]["title"]
        status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
        assert status == 200 and view["damaged"] is True
    assert "damaged" not in by_id[healthy]
    # A run can start in a session with damaged metadata, and a rename repairs it.
    finished_run(server, broken[0], "works anyway")
    status, meta, _ = server.api("PATCH", f"/api/sessions/{broken[0]}", {"title": "Repaired"})
    assert status == 200 and meta["title"] == "Repaired" and "damaged" not in meta
    assert json.loads((server.data_dir / "sessions" / f"{broken[0]}.json").read_bytes())["title"] == "Repaired"


def test_compaction_leaves_a_damaged_run_unless_asked_to_salvage_it(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(data_dir=data_dir)
    session_id = server.create_session()
    first = finished_run(server, session_id, "will be damaged")
    second = finished_run(server, session_id, "after it")
    path = server.journal_path(session_id, first)
    damage_middle_line(path)
    before = server.api("GET", f"/api/session?session_id={session_id}")[1]

    def compact(*flags):
        return subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--data-dir", str(data_dir),
                               "--older-than", "0", *flags], cwd=ROOT, capture_output=True, text=True, timeout=60)

    result = compact("--delete")
    assert result.returncode == 1 and f"{first}: 1 damaged line" in result.stdout
    assert path.exists() and server.journal_path(session_id, second).exists()  # the prefix rule
    salvaged = compact("--delete", "--salvage")
    assert salvaged.returncode == 0, salvaged.stdout
    assert not path.exists()
    archive = data_dir / "archive" / session_id / f"{first}.jsonl.gz"
    assert archive.exists()  # the damaged bytes are kept even in delete mode
    after = server.api("GET", f"/api/session?session_id={session_id}")[1]
    assert after["messages"] == before["messages"] and after["messages"][1]["damaged"] == 1


def test_a_run_stream_of_a_journal_whose_lines_are_all_damaged_still_ends(server_factory, tmp_path):
    data_dir = tmp_path / "var"
    server = server_factory(data_dir=data_dir)
    session_id = server.create_session()
    run_id = finished_run(server, session_id)
    path = server.journal_path(session_id, run_id)
    lines = journal_lines(path)
    # Every line but the terminal record is garbage of the same length.
    path.write_bytes(b"".join(b"#" * (len(line) - 1) + b"\n" for line, _ in lines[:-1]) + lines[-1][0])
    client = SseClient(server.url, f"/api/runs/{run_id}/events", timeout=STREAM_TIMEOUT)
    try:
        frames = records_of(client)
    finally:
        client.close()
    assert [event for _, event, _ in frames] == ["record.damaged"] * (len(lines) - 1) + [json.loads(lines[-1][0])["type"]]
    assert frames[-1][1] in TERMINAL_TYPES
    assert [frame_id for frame_id, _, _ in frames] == [f"{run_id}:{end}" for _, end in lines]
    view = server.api("GET", f"/api/sessions/{session_id}")[1]
    assert view["messages"][-1]["damaged"] == len(lines) - 1 and view["messages"][0]["run_id"] == run_id


def test_damage_to_a_finished_journal_shows_without_a_restart(server):
    session_id = server.create_session()
    run_id = finished_run(server, session_id)
    assert "damaged" not in server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1]
    time.sleep(0.01)  # a later mtime, whatever the clock's granularity
    damage_middle_line(server.journal_path(session_id, run_id))
    assert server.api("GET", f"/api/sessions/{session_id}")[1]["messages"][-1]["damaged"] == 1
