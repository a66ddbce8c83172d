"""The journal: single-write appends, complete-line reads, durability policies, the lock,
recovery of torn tails, file modes (PROTOCOL 1.1-1.3)."""

import json
import os
import stat
import threading
import time

import pytest

from hermes_web.core import codec
from hermes_web.core.codec import encode_record
from hermes_web.core.fsutil import ensure_dir
from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files import journal
from hermes_web.store.files.journal import (
    JournalError,
    JournalWriter,
    is_line_boundary,
    journal_state,
    read_entries,
    read_lines,
    read_tail,
    recover,
)


def started(run_id="r1"):
    return {"type": "run.started", "ts": 1.0, "run_id": run_id, "session_id": "s1",
            "user": {"id": "u", "text": "hi", "attachments": []}, "agent": {"name": "demo", "model": "demo"}}


def delta(index):
    return {"type": "text.delta", "ts": 2.0 + index, "text": f"piece {index} "}


COMPLETED = {"type": "run.completed", "ts": 99.0}


class CountingOffload:
    """An offload hook that records every call (fsyncs of files and directories)."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, function, *args):
        with self.lock:
            self.calls.append((function, args))
        return function(*args)

    def file_fsyncs(self, fd):
        with self.lock:
            return sum(1 for function, args in self.calls if function is os.fsync and args == (fd,))


def open_fd(path):
    return os.open(path, os.O_RDONLY)


@pytest.fixture
def durability():
    policy = Durability("record")
    yield policy
    policy.stop()


def test_append_returns_the_committed_offset_which_is_the_file_size(tmp_path, durability):
    path = tmp_path / "run.jsonl"
    writer = JournalWriter.create(path, started(), durability)
    assert writer.offset == len(encode_record(started())) == path.stat().st_size
    expected = writer.offset
    for index in range(5):
        expected += len(encode_record(delta(index)))
        assert writer.append(delta(index)) == expected == path.stat().st_size
    expected += len(encode_record(COMPLETED))
    assert writer.append(COMPLETED, durable=True) == expected
    writer.close()
    assert [end for _, end in read_entries(path)][-1] == expected


def test_each_record_is_one_write_of_the_whole_line(tmp_path, durability, monkeypatch):
    path = tmp_path / "run.jsonl"
    writer = JournalWriter.create(path, started(), durability)
    writes = []
    real_write = os.write

    def recording_write(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(journal.os, "write", recording_write)
    records = [delta(0), {"type": "tool.started", "ts": 3.0, "call_id": "c", "name": "n", "args": {"a": "x\ny"}}, COMPLETED]
    for record in records:
        writer.append(record)
    writer.close()
    assert writes == [encode_record(record) for record in records]
    assert all(line.count(b"\n") == 1 and line.endswith(b"\n") for line in writes)


def test_readers_never_see_a_torn_tail(tmp_path, durability):
    path = tmp_path / "run.jsonl"
    writer = JournalWriter.create(path, started(), durability)
    committed = writer.append(delta(0))
    writer.close()
    half = encode_record(delta(1))[:17]
    with open(path, "ab") as handle:
        handle.write(half)
    fd = open_fd(path)
    try:
        lines = read_lines(fd, 0)
        assert [end for _, end in lines] == [len(encode_record(started())), committed]
        assert read_lines(fd, committed) == []
        assert read_tail(fd) == (committed, delta(0))
        assert not is_line_boundary(fd, committed + len(half))
    finally:
        os.close(fd)
    assert [record for record, _ in read_entries(path)] == [started(), delta(0)]
    assert journal_state(path) == (committed, delta(0))


def test_read_lines_returns_complete_lines_with_their_end_offsets_from_any_boundary(tmp_path):
    lines = [encode_record(delta(index)) for index in range(6)]
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(lines))
    ends = []
    offset = 0
    for line in lines:
        offset += len(line)
        ends.append(offset)
    fd = open_fd(path)
    try:
        for start_index, start in enumerate([0] + ends):
            got = read_lines(fd, start)
            assert [end for _, end in got] == ends[start_index:]
            assert [line + b"\n" for line, _ in got] == lines[start_index:]
        # A small read window still returns whole lines only, and makes progress on a long one.
        assert read_lines(fd, 0, max_bytes=len(lines[0]) + 3) == [(lines[0][:-1], ends[0])]
        assert read_lines(fd, 0, max_bytes=5) == [(line[:-1], end) for line, end in zip(lines, ends)]
    finally:
        os.close(fd)


def test_is_line_boundary_truth_table(tmp_path):
    data = b'{"a":1}\n{"b":22}\n\n{"c":3}\n{"torn'
    path = tmp_path / "run.jsonl"
    path.write_bytes(data)
    fd = open_fd(path)
    try:
        for offset in range(-3, len(data) + 4):
            expected = offset == 0 or (0 < offset <= len(data) and data[offset - 1:offset] == b"\n")
            assert is_line_boundary(fd, offset) is expected, offset
        for not_an_offset in (None, "8", 8.0, 2 ** 80 * -1):
            assert is_line_boundary(fd, not_an_offset) is False
        assert is_line_boundary(fd, 2 ** 62) is False
    finally:
        os.close(fd)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    fd = open_fd(empty)
    try:
        assert [is_line_boundary(fd, offset) for offset in (0, 1, 2)] == [True, False, False]
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "sizes, torn",
    [
        ([10], b""),
        ([10, 20, 30], b""),
        ([70_000], b""),  # one line longer than the first read window
        ([5, 70_000], b""),
        ([5, 300_000], b""),
        ([100, 900_000], b""),
        ([5, 300_000], b'{"type":"text.del'),
        ([5, 70_000], b"x" * 200_000),  # a torn tail longer than the window
        ([5, 10, 64 * 1024 - 60], b""),  # the previous newline right at the window edge
    ],
)
def test_read_tail_finds_the_last_complete_line_however_long(tmp_path, sizes, torn):
    records = [{"type": "text.delta", "ts": 1.0, "text": "y" * size} for size in sizes]
    data = b"".join(encode_record(record) for record in records)
    path = tmp_path / "run.jsonl"
    path.write_bytes(data + torn)
    assert journal_state(path) == (len(data), records[-1])


def test_read_tail_of_a_file_without_a_complete_line(tmp_path):
    path = tmp_path / "run.jsonl"
    for content in (b"", b'{"type":"run.sta', b"z" * 100_000):
        path.write_bytes(content)
        assert journal_state(path) == (0, None)


def write_run(path, policy, interval=0.05, offload=None):
    durability = Durability(policy, interval, offload)
    writer = JournalWriter.create(path, started(), durability)
    for index in range(20):
        writer.append(delta(index))
    writer.append({"type": "usage", "ts": 50.0, "input_tokens": 3, "output_tokens": 20})
    writer.append(COMPLETED, durable=True)
    writer.close()
    durability.stop()


def test_every_fsync_policy_writes_identical_files(tmp_path):
    contents = set()
    for policy in ("record", "interval", "terminal"):
        path = tmp_path / f"{policy}.jsonl"
        write_run(path, policy)
        contents.add(path.read_bytes())
    assert len(contents) == 1
    (content,) = contents
    assert content.count(b"\n") == 23 and content.endswith(encode_record(COMPLETED))


def journal_fsyncs(offload, descriptors) -> int:
    """Fsyncs of the journal's file, through any of the writer's descriptors."""
    return sum(offload.file_fsyncs(fd) for fd in descriptors)


def descriptors_of(writer) -> tuple:
    """The writer's descriptors: the one it appends through and the one holding its lock."""
    return writer._fd, writer._lock_fd


def kill(writer) -> None:
    """The writer's process dies: its descriptors (and with them its lock) are gone."""
    writer._durability.forget(writer)
    for fd in descriptors_of(writer):
        os.close(fd)
    writer._fd = writer._lock_fd = None


def test_record_policy_fsyncs_after_every_append(tmp_path):
    offload = CountingOffload()
    durability = Durability("record", offload=offload)
    writer = JournalWriter.create(tmp_path / "run.jsonl", started(), durability)
    fds = descriptors_of(writer)
    assert journal_fsyncs(offload, fds) == 1
    for index in range(4):
        writer.append(delta(index))
        assert journal_fsyncs(offload, fds) == 2 + index
    writer.close()


def test_terminal_policy_fsyncs_run_started_and_the_terminal_record_only(tmp_path):
    offload = CountingOffload()
    durability = Durability("terminal", offload=offload)
    path = tmp_path / "run.jsonl"
    writer = JournalWriter.create(path, started(), durability)
    fds = descriptors_of(writer)
    # run.started is durable (and its directory entry too) before create returns.
    assert journal_fsyncs(offload, fds) == 1
    assert any(args == (path.parent,) for _, args in offload.calls)
    for index in range(10):
        writer.append(delta(index))
    assert journal_fsyncs(offload, fds) == 1
    writer.append(COMPLETED, durable=True)
    assert journal_fsyncs(offload, fds) == 2
    writer.close()  # nothing pending: no extra fsync
    assert journal_fsyncs(offload, fds) == 2
    durability.stop()


def test_interval_flusher_fsyncs_dirty_journals_in_the_background(tmp_path):
    offload = CountingOffload()
    durability = Durability("interval", interval=0.05, offload=offload)
    writer = JournalWriter.create(tmp_path / "run.jsonl", started(), durability)
    fds = descriptors_of(writer)
    assert journal_fsyncs(offload, fds) == 1
    for index in range(10):
        writer.append(delta(index))
    assert journal_fsyncs(offload, fds) <= 2  # appends themselves do not fsync
    deadline = time.monotonic() + 5
    while journal_fsyncs(offload, fds) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Ten appends, one group commit.
    assert journal_fsyncs(offload, fds) == 2
    time.sleep(0.2)  # idle journals are not fsynced again
    assert journal_fsyncs(offload, fds) == 2
    writer.append(delta(10))
    deadline = time.monotonic() + 5
    while journal_fsyncs(offload, fds) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert journal_fsyncs(offload, fds) == 3
    writer.close()
    durability.stop()


def test_the_lock_is_held_while_the_writer_lives(tmp_path, durability):
    path = tmp_path / "run.jsonl"
    writer = JournalWriter.create(path, started(), durability)
    writer.append(delta(0))
    before = path.read_bytes()
    assert recover(path) == "locked"
    with pytest.raises(JournalError):
        JournalWriter.create(path, started("intruder"), durability)
    assert path.read_bytes() == before
    assert [name for name in os.listdir(tmp_path)] == ["run.jsonl"]
    writer.append(COMPLETED, durable=True)
    writer.close()
    assert recover(path) == "terminal"
    assert path.read_bytes() == before + encode_record(COMPLETED)


def test_recover_cuts_a_torn_tail_keeps_it_aside_and_ends_the_run(tmp_path, durability):
    path = tmp_path / "run.jsonl"
    writer = JournalWriter.create(path, started(), durability)
    committed = writer.append(delta(0))
    kill(writer)  # the writer dies without a terminal record
    torn = encode_record(delta(1))[:-9]
    with open(path, "ab") as handle:
        handle.write(torn)
    assert recover(path, reason="process died") == "recovered"
    entries = read_entries(path)
    assert [record["type"] for record, _ in entries] == ["run.started", "text.delta", "run.interrupted"]
    assert entries[-1][0]["reason"] == "process died"
    assert path.read_bytes()[:committed] == encode_record(started()) + encode_record(delta(0))
    assert path.read_bytes().endswith(b"\n") and entries[-1][1] == path.stat().st_size
    torn_path = tmp_path / "run.jsonl.torn"
    assert torn_path.read_bytes() == torn
    assert stat.S_IMODE(torn_path.stat().st_mode) == 0o600
    # Idempotent: a second recovery finds a terminal journal and changes nothing.
    after = path.read_bytes()
    assert recover(path) == "terminal"
    assert path.read_bytes() == after


def test_recover_of_a_finished_journal_only_cuts_garbage_after_the_terminal_record(tmp_path):
    path = tmp_path / "run.jsonl"
    good = encode_record(started()) + encode_record(COMPLETED)
    path.write_bytes(good + b'{"type":"te')
    assert recover(path) == "terminal"
    assert path.read_bytes() == good
    assert (tmp_path / "run.jsonl.torn").read_bytes() == b'{"type":"te'
    assert recover(tmp_path / "missing.jsonl") == "missing"


def test_files_are_created_0600_and_directories_0700(tmp_path, durability):
    old_umask = os.umask(0o022)
    try:
        data_dir = DataDir(tmp_path / "var").create()
        journals_dir = ensure_dir(data_dir.journals_dir("s1"))
        path = data_dir.journal_path("s1", "r1")
        writer = JournalWriter.create(path, started(), durability)
        writer.close()
        recover(path)
    finally:
        os.umask(old_umask)
    for directory in (data_dir.root, data_dir.sessions_dir, data_dir.journals_root, journals_dir,
                      data_dir.transcripts_dir, data_dir.uploads_root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_encode_record_is_one_compact_line_even_with_newlines_inside():
    line = encode_record({"type": "text.delta", "ts": 1.5, "text": "a\nb\r\n\u2028ü"})
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert b", " not in line and b": " not in line
    assert json.loads(line)["text"] == "a\nb\r\n\u2028ü"
    with pytest.raises(codec.RecordTooLarge):
        encode_record({"type": "text.delta", "text": "x" * codec.MAX_RECORD_BYTES})


def test_an_existing_world_readable_data_root_is_made_private(tmp_path):
    root = tmp_path / "var"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # as a checkout's var/ arrives
    DataDir(root).create()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
