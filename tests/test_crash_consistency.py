"""Power loss, not just process death: recovery from every crash state POSIX permits.

A real workload (the app's start-up recovery of a dead run, sessions created and renamed
through the API, demo runs to their end, compaction in delete and archive mode) runs with
its file-system operations recorded (``tests/crash_model.py``). From every durability point
of that log, the crash states a power cut could leave are built (writes since a file's last
fsync dropped or torn, directory changes since the directory's last fsync dropped), and a
fresh start-up recovers each. Every state must keep:

- every acknowledged record: a run whose start was answered is in its session, a finished
  run keeps its status and text, a session's acknowledged metadata is whole;
- exactly one terminal record per run, nothing after it;
- every session's runs a prefix of its history, none twice (also across compaction);
- what compaction reported retired, retired.

Then the test proves it can fail: with any one of three fsyncs taken out of the model (the
fsync of ``run.interrupted``, of ``atomic_write``'s temporary file, of the journal
directory after compaction's unlinks) some state breaks an invariant.
"""

import io
import json
import os
import shutil
import time

import pytest

from hermes_web.app import create_app, shutdown
from hermes_web.compaction.files import compact
from hermes_web.compaction.plan import Options
from hermes_web.core.codec import decode_record, encode_record
from hermes_web.core.config import Config
from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.read.views import SessionViews
from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.logs import FileLogStore
from hermes_web.store.files.metadata import SessionStore
from hermes_web.store.files.transcripts import TranscriptStore
from hermes_web.store.metadata import Damaged, NotFound
from tests.crash_model import Recorder, crash_states, materialize

PLANTED_SESSION = "0123456789abcdef"
PLANTED_RUN = f"01700000000000000-aaaaaa-{PLANTED_SESSION}"


def plant_dead_run(root) -> None:
    """What a server killed mid-run leaves: a session, a journal without an end, a marker."""
    data_dir = DataDir(root).create()
    meta = {"id": PLANTED_SESSION, "title": "planted", "created_at": 1.0, "updated_at": 1.0}
    data_dir.session_path(PLANTED_SESSION).write_bytes(json.dumps(meta).encode())
    journal = data_dir.journal_path(PLANTED_SESSION, PLANTED_RUN)
    journal.parent.mkdir(mode=0o700, parents=True)
    records = [{"type": "run.started", "ts": 1.0, "run_id": PLANTED_RUN, "session_id": PLANTED_SESSION,
                "user": {"id": f"{PLANTED_RUN}-user", "text": "planted", "attachments": []},
                "agent": {"name": "demo", "model": "demo"}},
               {"type": "text.delta", "ts": 1.5, "text": "half an answer"}]
    journal.write_bytes(b"".join(encode_record(record) for record in records))
    store = FileLogStore(data_dir, Durability("terminal")).open_index()  # marks the run unfinished
    assert (store.active_index / PLANTED_RUN).is_symlink()


def wait_finished(client, run_id, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/runs/{run_id}").get_json()
        if body["status"] != "running":
            return body
        time.sleep(0.01)
    raise TimeoutError(run_id)


def run_workload(root, recorder) -> list:
    """The recorded workload; returns ``(session_id, run_id)`` in the order runs started."""
    app = create_app(Config(data_dir=root, fsync_policy="terminal", demo_delay_ms=2))
    recorder.ack("finished", session_id=PLANTED_SESSION, run_id=PLANTED_RUN, status="interrupted",
                 text="half an answer")
    client = app.test_client()
    started = []
    try:
        session_id = client.post("/api/sessions", json={"title": "first title"}).get_json()["id"]
        # Until the rename, the first run's title (from its message) may replace it.
        recorder.ack("session", session_id=session_id, titles=["first title", "one two three"])

        def start(text):
            response = client.post(f"/api/sessions/{session_id}/runs", json={"text": text})
            assert response.status_code == 202, response.get_json()
            run_id = response.get_json()["run_id"]
            started.append((session_id, run_id))
            recorder.ack("started", session_id=session_id, run_id=run_id)
            return run_id

        def finish(run_id):
            status = wait_finished(client, run_id)["status"]
            view = client.get(f"/api/session?session_id={session_id}").get_json()
            text = next(m["text"] for m in view["messages"] if m["run_id"] == run_id and m["role"] == "assistant")
            recorder.ack("finished", session_id=session_id, run_id=run_id, status=status, text=text)

        first = start("one two three")
        finish(first)
        assert client.patch(f"/api/sessions/{session_id}", json={"title": "renamed"}).status_code == 200
        recorder.ack("session", session_id=session_id, titles=["renamed"])
        second = start("four five")
        finish(second)
        # Compaction while a run is live: it folds the runs before it, and the journal
        # directory keeps the live one.
        third = start("six")
        compact(DataDir(root), Options(older_than=0, mode="delete"), out=io.StringIO())
        recorder.ack("retired", session_id=session_id, run_ids=[first, second])
        finish(third)
        compact(DataDir(root), Options(older_than=0, mode="archive"), out=io.StringIO())
        recorder.ack("retired", session_id=session_id, run_ids=[third, PLANTED_RUN])
    finally:
        shutdown(app)
    return started


def check(crash, directory, history, later_titles) -> list:
    """The invariants a fresh start-up must restore from ``crash``; the broken ones."""
    materialize(crash, directory)
    data_dir = DataDir(directory).create()
    store = FileLogStore(data_dir, Durability("terminal")).open_index()
    store.recover_unfinished()
    metadata = SessionStore(data_dir)
    views = SessionViews(store, TranscriptStore(data_dir), metadata)
    problems = []
    titles = {}
    acked_runs = {}
    retired = set()
    for label, payload in crash.acks:
        if label == "session":
            titles[payload["session_id"]] = payload["titles"]
        elif label in ("started", "finished"):
            acked_runs.setdefault(payload["run_id"], {}).update(payload, label=label)
        elif label == "retired":
            retired.update((payload["session_id"], run_id) for run_id in payload["run_ids"])
    for session_id, allowed in titles.items():
        try:
            meta = metadata.get(session_id)
        except (NotFound, Damaged) as error:
            problems.append(f"session {session_id}: acknowledged metadata lost ({type(error).__name__})")
            continue
        # A change made durable just before its acknowledgement is fine too.
        if meta["title"] not in allowed and meta["title"] not in later_titles(session_id, crash.position):
            problems.append(f"session {session_id}: title {meta['title']!r}, acknowledged one of {allowed}")
    sessions = {PLANTED_SESSION} | {session_id for session_id, _ in history}
    for session_id in sessions:
        order = views.session_runs(session_id).tree.order
        if len(order) != len(set(order)):
            problems.append(f"session {session_id}: a run twice in {order}")
        full = [PLANTED_RUN] if session_id == PLANTED_SESSION else [run for sid, run in history if sid == session_id]
        if order != full[: len(order)]:
            problems.append(f"session {session_id}: runs {order} are not a prefix of {full}")
        messages = {message["run_id"]: message for message in views.every_message(session_id)
                    if message["role"] == "assistant"}
        for run_id, ack in acked_runs.items():
            if ack["session_id"] != session_id:
                continue
            if run_id not in order:
                problems.append(f"run {run_id}: acknowledged start lost")
                continue
            if ack["label"] == "finished":
                message = messages.get(run_id, {})
                if message.get("status") != ack["status"] or message.get("text") != ack["text"]:
                    problems.append(f"run {run_id}: {message.get('status')!r} {message.get('text')!r}, "
                                    f"acknowledged {ack['status']!r} {ack['text']!r}")
        for run_id in store.runs(session_id):
            if (session_id, run_id) in retired:
                problems.append(f"run {run_id}: compaction reported it retired, its journal is back")
            lines = data_dir.journal_path(session_id, run_id).read_bytes().split(b"\n")
            if lines[-1] != b"":
                problems.append(f"run {run_id}: a torn tail survived recovery")
            records = [decode_record(line) for line in lines[:-1]]
            kinds = [record["type"] if record else None for record in records]
            terminals = [index for index, kind in enumerate(kinds) if kind in TERMINAL_TYPES]
            if terminals != [len(kinds) - 1]:
                problems.append(f"run {run_id}: terminal records at {terminals} of {len(kinds)}")
            if None in kinds:
                problems.append(f"run {run_id}: a damaged line after recovery")
        transcript = TranscriptStore(data_dir).read(session_id)
        if transcript.damaged:
            problems.append(f"session {session_id}: a damaged transcript")
    return problems


def record_and_check(tmp_path, monkeypatch, ignore_fsync=None, stop_at_first=False):
    root = tmp_path / "var"
    plant_dead_run(root)
    recorder = Recorder(root)
    recorder.ignore_fsync = ignore_fsync
    with monkeypatch.context() as patched:
        recorder.install(patched)
        history = run_workload(root, recorder)
    title_acks = [(position, op[2]) for position, op in enumerate(recorder.ops) if op[0] == "ack" and op[1] == "session"]

    def later_titles(session_id, position):
        return {title for at, payload in title_acks if at > position and payload["session_id"] == session_id
                for title in payload["titles"]}

    failures = []
    checked = 0
    for crash in crash_states(recorder):
        directory = tmp_path / f"crash-{checked}"
        problems = check(crash, directory, history, later_titles)
        shutil.rmtree(directory)
        checked += 1
        if problems:
            failures.append((crash.description, problems))
            if stop_at_first:
                break
    return checked, failures, recorder


def test_recovery_from_every_crash_state_keeps_every_invariant(tmp_path, monkeypatch):
    checked, failures, recorder = record_and_check(tmp_path, monkeypatch)
    print(f"{len(recorder.ops)} operations recorded, {checked} crash states recovered and checked")
    assert checked > 200
    assert failures == []


def _after_interrupted(op, recorder):
    return op[0] == "fsync" and b'"run.interrupted"' in recorder.last_write(op[1])


def _atomic_temp(op, recorder):
    return op[0] == "fsync" and any(
        step[0] == "create" and step[3] == op[1] and step[2].startswith(".tmp-") for step in recorder.ops[-200:])


def _journal_dir_after_unlinks(op, recorder):
    if op[0] != "fsync_dir" or not op[1].startswith("journals" + os.sep):
        return False
    previous = [step for step in recorder.ops[-20:] if step[0] in ("unlink", "create", "link", "rename")]
    return bool(previous) and previous[-1][0] == "unlink" and not previous[-1][2].startswith(".")


@pytest.mark.parametrize("mutation", [_after_interrupted, _atomic_temp, _journal_dir_after_unlinks],
                         ids=["no fsync of run.interrupted", "no fsync of atomic_write's temp file",
                              "no fsync of the journal dir after compaction's unlinks"])
def test_the_check_fails_when_a_needed_fsync_is_missing(tmp_path, monkeypatch, mutation):
    _, failures, _ = record_and_check(tmp_path, monkeypatch, ignore_fsync=mutation, stop_at_first=True)
    assert failures, "a missing fsync went unnoticed"
