"""Compaction on the Redis store: the finished prefix of runs moves into the transcript in
one transaction, the view stays the same, a second pass does nothing."""

import gzip
import io
import os
import subprocess
import sys

import pytest

from hermes_web.compaction.plan import Options
from hermes_web.compaction.redis import compact
from hermes_web.core.config import Config
from hermes_web.core.ids import new_run_id
from hermes_web.read.views import SessionViews
from hermes_web.store.durability import Durability
from hermes_web.store.logstore import LogNotFound
from hermes_web.store.redis import open_stores
from hermes_web.store.redis.client import KEYS
from tests.support import ROOT

COMPLETED = {"type": "run.completed", "ts": 50.0}


@pytest.fixture
def stores(redis_server, tmp_path):
    redis_server.flush()
    config = Config(data_dir=tmp_path / "var", store_url=redis_server.url)
    opened = open_stores(config, Durability("terminal"))
    yield opened
    opened.logs.stop()


def started(session_id, run_id, text="hello"):
    return {"type": "run.started", "ts": 10.0, "run_id": run_id, "session_id": session_id,
            "user": {"id": f"{run_id}-user", "text": text, "attachments": []}, "agent": {"name": "demo", "model": "demo"}}


def finished_run(stores, session_id, text, terminal=COMPLETED):
    run_id = new_run_id(session_id)
    writer = stores.logs.create(session_id, run_id, started(session_id, run_id, text))
    writer.append({"type": "text.delta", "ts": 11.0, "text": f"answer to {text}"})
    if terminal is not None:
        writer.append(terminal, durable=True)
        writer.close()
    return run_id, writer


def run(stores, **options) -> tuple:
    out = io.StringIO()
    code = compact(stores, Options(older_than=0, **options), out=out)
    return code, out.getvalue()


def test_finished_runs_move_into_the_transcript_and_the_view_stays_the_same(stores):
    session_id = stores.metadata.create("s1")["id"]
    first, _ = finished_run(stores, session_id, "one")
    second, _ = finished_run(stores, session_id, "two")
    views = SessionViews(stores.logs, stores.transcripts, stores.metadata)
    before = views.view(session_id)
    journal = b"".join(line + b"\n" for line, _ in stores.logs.open(first).read(0))

    code, out = run(stores)
    assert code == 0, out
    assert f"compacted {first}" in out and f"compacted {second}" in out
    assert stores.logs.runs(session_id) == []
    assert [run_id for run_id, _ in stores.transcripts.read(session_id).runs] == [first, second]
    assert SessionViews(stores.logs, stores.transcripts, stores.metadata).view(session_id) == before
    assert views.view(session_id) == before  # a running server's views follow too
    client = stores.logs.client
    assert gzip.decompress(client.hget(KEYS.archive(session_id), first)) == journal
    assert not client.exists(KEYS.log(first)) and not client.exists(KEYS.run(first))

    code, out = run(stores)  # idempotent
    assert code == 0 and "compacted" not in out.replace("run(s) compacted", "")
    assert [run_id for run_id, _ in stores.transcripts.read(session_id).runs] == [first, second]

    code, out = run(stores, keep_archives=-1)  # prunes every archive
    assert "2 archive(s) pruned" in out
    assert not client.exists(KEYS.archive(session_id))


def test_a_live_run_and_every_run_after_it_stay_and_a_dead_one_is_recovered_first(stores):
    session_id = stores.metadata.create("s2")["id"]
    dead, dead_writer = finished_run(stores, session_id, "dead", terminal=None)
    stores.logs._closed(dead_writer)  # noqa: SLF001 - its process died...
    stores.logs.client.delete(KEYS.lease(dead))  # ...and its lease lapsed
    live, live_writer = finished_run(stores, session_id, "live", terminal=None)
    after, _ = finished_run(stores, session_id, "after")

    code, out = run(stores, mode="delete")
    assert code == 0, out
    assert f"recovered {dead}" in out and f"skip {live}: running" in out and f"skip {after}" in out
    transcript = stores.transcripts.read(session_id)
    assert [run_id for run_id, _ in transcript.runs] == [dead]
    assert transcript.assistant(dead)["status"] == "interrupted"
    assert stores.logs.runs(session_id) == [live, after]
    assert not stores.logs.client.exists(KEYS.archive(session_id))  # --delete keeps nothing
    live_writer.append(COMPLETED, durable=True)
    live_writer.close()
    assert run(stores)[0] == 0
    assert [run_id for run_id, _ in stores.transcripts.read(session_id).runs] == [dead, live, after]


def test_a_dry_run_changes_nothing(stores):
    session_id = stores.metadata.create("s3")["id"]
    run_id, _ = finished_run(stores, session_id, "one")
    code, out = run(stores, dry_run=True)
    assert code == 0 and f"would compact {run_id}" in out
    assert stores.logs.runs(session_id) == [run_id]


def test_the_compact_command_picks_the_store_from_the_environment(stores, redis_server, tmp_path):
    session_id = stores.metadata.create("s4")["id"]
    run_id, _ = finished_run(stores, session_id, "from the command line")
    env = {**os.environ, "HERMES_WEB_STORE": redis_server.url}
    result = subprocess.run([sys.executable, "-m", "hermes_web", "compact", "--older-than", "0",
                             "--data-dir", str(tmp_path / "elsewhere")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"compacted {run_id}" in result.stdout
    assert stores.transcripts.read(session_id).assistant(run_id)["text"] == "answer to from the command line"


def test_a_reader_whose_log_is_compacted_away_is_told_so(stores):
    session_id = stores.metadata.create("s5")["id"]
    run_id, _ = finished_run(stores, session_id, "gone soon")
    log = stores.logs.open(run_id)
    assert log.read(0)
    assert run(stores)[0] == 0
    with pytest.raises(LogNotFound):
        log.read(0)  # never an endless empty read
    with pytest.raises(LogNotFound):
        log.tail()
    views = SessionViews(stores.logs, stores.transcripts, stores.metadata)
    assert views.view(session_id)["messages"][1]["text"] == "answer to gone soon"


def test_a_run_with_a_damaged_line_stays_unless_salvaged(stores):
    session_id = stores.metadata.create("s6")["id"]
    run_id, writer = finished_run(stores, session_id, "damaged", terminal=None)
    # A line that is not a record, stored as it came (bit rot in Redis, a hand edit).
    offset = writer.offset + len(b"not json") + 1
    stores.logs.client.xadd(KEYS.log(run_id), {"l": b"not json"}, id=f"{offset}-0")
    stores.logs.client.hset(KEYS.run(run_id), "committed", offset)
    writer.offset = offset
    writer.append(COMPLETED, durable=True)
    writer.close()

    code, out = run(stores, mode="delete")
    assert code == 1 and "1 damaged line(s)" in out
    assert stores.logs.runs(session_id) == [run_id]
    code, out = run(stores, mode="delete", salvage=True)
    assert code == 0 and "salvaged" in out, out
    assert stores.transcripts.read(session_id).assistant(run_id)["damaged"] == 1
    archived = gzip.decompress(stores.logs.client.hget(KEYS.archive(session_id), run_id))
    assert b"\nnot json\n" in archived  # kept, also under --delete
