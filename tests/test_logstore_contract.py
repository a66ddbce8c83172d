"""The log-store contract (``hermes_web/store/logstore.py``), held against every implementation.

Each store is reached through a factory that builds it on a fresh place and knows how to
make a writer "die" the way a crashed server would (for files: its descriptor, and so its
lock, goes away without a terminal record). Another store joins by adding a factory.
"""

import threading
import time

import pytest

from hermes_web.core.codec import encode_record
from hermes_web.core.ids import new_run_id, new_session_id
from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.logs import FileLogStore
from hermes_web.store.logstore import LogExists, LogNotFound, is_terminal

WAIT = 5.0


class FileStoreFactory:
    name = "files"
    cancels_across_processes = False

    def __init__(self, tmp_path):
        self.data_dir = DataDir(tmp_path / "var").create()

    def make(self):
        return FileLogStore(self.data_dir, Durability("terminal")).open_index()

    @staticmethod
    def kill(writer) -> None:
        """The writer's process died: its descriptor (and lock) is gone, no terminal record."""
        import os

        journal = writer._journal  # noqa: SLF001 - simulating a crash needs the descriptors
        for name in ("_fd", "_lock_fd"):
            if getattr(journal, name) is not None:
                os.close(getattr(journal, name))
                setattr(journal, name, None)
        writer._store._closed(writer)  # noqa: SLF001 - a dead process forgets its writers


class RedisStoreFactory:
    """Stores on one real redis-server (flushed per test); each ``make`` is a new process's
    store, with its own wake-up listener and lease keeper."""

    name = "redis"
    cancels_across_processes = True

    def __init__(self, tmp_path, request):
        self.redis = request.getfixturevalue("redis_server")
        self.redis.flush()
        self.stores = []
        request.addfinalizer(self.close)

    def make(self):
        from hermes_web.store.redis import connect
        from hermes_web.store.redis.logs import RedisLogStore

        store = RedisLogStore(connect(self.redis.url), Durability("terminal"), lease_seconds=5.0).start()
        self.stores.append(store)
        return store

    @staticmethod
    def kill(writer) -> None:
        """The writer's process died: it renews its lease no more, and the lease lapsed."""
        from hermes_web.store.redis.client import KEYS

        store = writer._store  # noqa: SLF001 - simulating a crash needs the store's internals
        store._closed(writer)  # noqa: SLF001 - a dead process forgets its writers
        store.client.delete(KEYS.lease(writer.run_id))

    def close(self) -> None:
        for store in self.stores:
            store.stop()
            store.client.close()


FACTORIES = [FileStoreFactory, RedisStoreFactory]


@pytest.fixture(params=FACTORIES, ids=lambda factory: factory.name)
def factory(request, tmp_path):
    if request.param is RedisStoreFactory:
        return RedisStoreFactory(tmp_path, request)
    return request.param(tmp_path)


@pytest.fixture
def store(factory):
    return factory.make()


def started(session_id, run_id, **extra):
    return {"type": "run.started", "ts": 1.0, "run_id": run_id, "session_id": session_id,
            "user": {"id": f"{run_id}-user", "text": "hi", "attachments": []},
            "agent": {"name": "demo", "model": "demo"}, **extra}


def delta(index):
    return {"type": "text.delta", "ts": 2.0 + index, "text": f"piece {index} "}


COMPLETED = {"type": "run.completed", "ts": 99.0}


def new_run(store, session_id=None):
    session_id = session_id or new_session_id()
    run_id = new_run_id(session_id)
    return session_id, run_id, store.create(session_id, run_id, started(session_id, run_id))


def test_offsets_are_the_ends_of_the_jsonl_lines_and_export_reproduces_the_journal(store):
    session_id, run_id, writer = new_run(store)
    records = [started(session_id, run_id)] + [delta(index) for index in range(20)] + [COMPLETED]
    expected_offset = len(encode_record(records[0]))
    assert writer.offset == expected_offset
    for record in records[1:]:
        expected_offset += len(encode_record(record))
        assert writer.append(record, durable=is_terminal(record)) == expected_offset
    writer.close()
    with store.open(run_id) as log:
        lines = log.read(0, 1 << 20)
        assert b"".join(line + b"\n" for line, _ in lines) == b"".join(encode_record(r) for r in records)
        ends = [end for _, end in lines]
        assert ends[-1] == expected_offset
        assert log.tail() == (expected_offset, COMPLETED)
        for index, end in enumerate(ends):
            assert log.read(end) == lines[index + 1:][: len(log.read(end))]
        assert log.read(ends[-1]) == []


def test_a_cursor_is_valid_at_zero_and_at_every_line_end_only(store):
    session_id, run_id, writer = new_run(store)
    for index in range(5):
        writer.append(delta(index))
    with store.open(run_id, session_id) as log:
        ends = {end for _, end in log.read(0)}
        for offset in range(0, writer.offset + 3):
            assert log.is_cursor(offset) == (offset == 0 or offset in ends), offset
        assert not log.is_cursor(-1) and not log.is_cursor(True)
    writer.close()


def test_runs_are_listed_in_start_order_and_located_by_id(store):
    session_id = new_session_id()
    run_ids = []
    for _ in range(4):
        _, run_id, writer = new_run(store, session_id)
        writer.append(COMPLETED, durable=True)
        writer.close()
        run_ids.append(run_id)
    assert store.runs(session_id) == run_ids == sorted(run_ids)
    assert all(store.locate(run_id) == session_id for run_id in run_ids)
    assert store.runs(new_session_id()) == []
    unknown = new_run_id(new_session_id())
    with pytest.raises(LogNotFound):
        store.open(unknown)
    assert store.locate("00000000000000000-000000") is None  # an id no store made


def test_a_run_id_is_created_once(store):
    session_id, run_id, writer = new_run(store)
    with pytest.raises(LogExists):
        store.create(session_id, run_id, started(session_id, run_id))
    writer.close()


def test_a_waiting_reader_is_woken_by_an_append_and_times_out_without_one(store):
    session_id, run_id, writer = new_run(store)
    with store.open(run_id) as log:
        offset = log.read(0)[-1][1]
        began = time.monotonic()
        assert log.wait(offset, 0.2) is False
        assert 0.15 < time.monotonic() - began < WAIT
        timer = threading.Timer(0.1, writer.append, args=(delta(1),))
        timer.start()
        assert log.wait(offset, WAIT) is True
        timer.join()
        assert [end for _, end in log.read(offset)] == [writer.offset]
    writer.close()


def test_two_readers_at_different_speeds_each_get_every_record(store):
    session_id, run_id, writer = new_run(store)
    total = 300
    results = {}

    def follow(name, pause):
        seen = []
        with store.open(run_id) as log:
            offset = 0
            while True:
                lines = log.read(offset)
                for line, end in lines:
                    seen.append(line)
                    offset = end
                if seen and seen[-1] == encode_record(COMPLETED)[:-1]:
                    break
                if not lines:
                    log.wait(offset, 1.0)
                time.sleep(pause)
        results[name] = seen

    readers = [threading.Thread(target=follow, args=(name, pause)) for name, pause in (("fast", 0), ("slow", 0.002))]
    for reader in readers:
        reader.start()
    for index in range(total):
        writer.append(delta(index))
    writer.append(COMPLETED, durable=True)
    writer.close()
    for reader in readers:
        reader.join(WAIT * 4)
    expected = [encode_record(started(session_id, run_id))[:-1]] + [encode_record(delta(i))[:-1] for i in range(total)]
    expected.append(encode_record(COMPLETED)[:-1])
    assert results["fast"] == expected and results["slow"] == expected


def test_the_owner_is_alive_until_it_closes(store):
    session_id, run_id, writer = new_run(store)
    with store.open(run_id) as log:
        assert log.owner_alive()
        writer.append(COMPLETED, durable=True)
        writer.close()
        assert not log.owner_alive()


def test_unfinished_runs_are_known_without_a_scan_and_a_dead_owners_run_ends_once(factory, store):
    session_id, dead_run, dead_writer = new_run(store)
    dead_writer.append(delta(0))
    _, live_run, live_writer = new_run(store)
    _, done_run, done_writer = new_run(store)
    done_writer.append(COMPLETED, durable=True)
    done_writer.close()
    unfinished = {run_id for _, run_id in store.unfinished()}
    assert {dead_run, live_run} <= unfinished and done_run not in unfinished
    factory.kill(dead_writer)
    restarted = factory.make()  # a new process on the same store
    assert restarted.recover_unfinished() == 1
    assert restarted.recover_unfinished() == 0  # idempotent
    with restarted.open(dead_run) as log:
        committed, last = log.tail()
        records = [line for line, _ in log.read(0)]
    assert last["type"] == "run.interrupted" and last["reason"]
    assert sum(1 for line in records if b'"run.interrupted"' in line) == 1
    assert {run_id for _, run_id in restarted.unfinished()} == {live_run}
    with restarted.open(live_run) as log:
        assert log.owner_alive() and not is_terminal(log.tail()[1])  # a live owner is never touched
    live_writer.append(COMPLETED, durable=True)
    live_writer.close()


def test_a_reader_meeting_a_dead_owners_run_finishes_it(factory, store):
    session_id, run_id, writer = new_run(store)
    writer.append(delta(0))
    with store.open(run_id) as log:
        factory.kill(writer)
        pause = log.settle()
        assert pause <= 1.0
        assert log.tail()[1]["type"] == "run.interrupted"
        assert log.wait(log.tail()[0], 0.5) in (True, False)  # returns: never hangs on a dead run


def test_deleting_a_session_removes_its_runs(store):
    session_id, run_id, writer = new_run(store)
    writer.append(COMPLETED, durable=True)
    writer.close()
    store.delete_session(session_id)
    assert store.runs(session_id) == []
    with pytest.raises(LogNotFound):
        store.open(run_id)
    assert run_id not in {run for _, run in store.unfinished()}


def test_the_session_lock_is_exclusive(store):
    session_id = new_session_id()
    inside = []
    overlap = []

    def hold():
        with store.session_lock(session_id):
            inside.append(1)
            if len(inside) > 1:
                overlap.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert overlap == []


def test_a_reader_in_another_process_is_woken_by_an_append(factory, store):
    session_id, run_id, writer = new_run(store)
    other = factory.make()
    with other.open(run_id) as log:
        offset = log.read(0)[-1][1]
        timer = threading.Timer(0.1, writer.append, args=(delta(1),))
        timer.start()
        began = time.monotonic()
        woken = False
        while not woken and time.monotonic() - began < WAIT:
            log.wait(offset, WAIT)
            woken = bool(log.read(offset))
        timer.join()
        assert woken
        # Woken by the append, not by the once-a-second liveness recheck.
        assert time.monotonic() - began < 0.9
    writer.close()


def test_readers_racing_on_a_dead_owners_run_end_it_exactly_once(factory, store):
    session_id, run_id, writer = new_run(store)
    writer.append(delta(0))
    factory.kill(writer)
    stores = [factory.make() for _ in range(4)]
    barrier = threading.Barrier(len(stores))

    def settle(other):
        with other.open(run_id) as log:
            barrier.wait(WAIT)
            log.tail()

    threads = [threading.Thread(target=settle, args=(other,)) for other in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    with store.open(run_id) as log:
        records = [line for line, _ in log.read(0)]
    assert sum(1 for line in records if b'"run.interrupted"' in line) == 1
    assert b'"run.interrupted"' in records[-1]


def test_a_cancel_request_reaches_the_owner_where_the_store_can_reach_it(factory, store):
    session_id, run_id, writer = new_run(store)
    heard = []
    arrived = threading.Event()
    writer.on_cancel = lambda by: (heard.append(by), arrived.set())
    other = factory.make()
    assert other.request_cancel(run_id, "user") is factory.cancels_across_processes
    if factory.cancels_across_processes:
        assert arrived.wait(WAIT) and heard[0] == "user"
        writer.append({"type": "run.cancelled", "ts": 3.0, "by": "user"}, durable=True)
        writer.close()
        assert other.request_cancel(run_id, "user") is False  # nothing left to cancel
    else:
        writer.close()
