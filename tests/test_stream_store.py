"""The stream-store rules (``hermes_web/store/stream_store.py``) held against both stores,
in-process: forks read in pages however large their source, producers and Stream-Seq
decide once, a deleted source stays readable to its forks, and expiry removes what
nobody reads. Over HTTP, the official suite covers the protocol's surface."""

import pytest

from hermes_web.store.datadir import DataDir
from hermes_web.store.durability import Durability
from hermes_web.store.files.streams import FileStreams
from hermes_web.store.streams import Producer, Settings, StreamError
from hermes_web.store.wakeup import Beacons


@pytest.fixture(params=["files", "redis"])
def streams(request, tmp_path):
    if request.param == "files":
        store = FileStreams(DataDir(tmp_path / "var").create(), Durability("terminal"))
    else:
        from hermes_web.store.redis.client import connect
        from hermes_web.store.redis.streams import RedisStreams

        redis = request.getfixturevalue("redis_server")
        redis.flush()
        store = RedisStreams(connect(redis.url), Beacons(), "test")
    yield store
    store.close_all()


def text(content_type="text/plain", **fields) -> Settings:
    return Settings(content_type=content_type, **fields)


def read_everything(streams, name, page_bytes):
    """Every message of ``name`` from the start, a page of about ``page_bytes`` at a time."""
    payloads, after, pages = [], 0, 0
    while True:
        result = streams.read(name, after, max_bytes=page_bytes)
        payloads.extend(message.payload for message in result.messages)
        after = result.offset
        pages += 1
        if result.complete:
            return payloads, pages


def test_a_fork_of_a_large_source_reads_in_pages(streams):
    streams.create("source", text(), b"")
    for number in range(200):
        streams.append("source", f"{number:04d}".encode() * 25, "text/plain")
    streams.create("fork", Settings(content_type=None, forked_from="source", fork_offset=None), b"")
    streams.append("fork", b"own", "text/plain")
    payloads, pages = read_everything(streams, "fork", page_bytes=2000)
    assert payloads == [f"{number:04d}" * 25 for number in range(200)] + ["own"]
    assert pages >= 10  # never the whole source in one answer


def test_producers_and_stream_seq_decide_once(streams):
    streams.create("p", text(), b"")
    producer = Producer("writer", 0, 0)
    assert not streams.append("p", b"a", "text/plain", producer=producer).duplicate
    assert streams.append("p", b"a", "text/plain", producer=producer).duplicate
    with pytest.raises(StreamError) as gap:
        streams.append("p", b"c", "text/plain", producer=Producer("writer", 0, 2))
    assert gap.value.status == 409 and gap.value.headers["Producer-Expected-Seq"] == "1"
    with pytest.raises(StreamError) as stale:
        streams.append("p", b"c", "text/plain", producer=Producer("writer", 1, 0)) and streams.append(
            "p", b"d", "text/plain", producer=Producer("writer", 0, 5))
    assert stale.value.status == 403
    streams.append("p", b"s", "text/plain", seq="b")
    with pytest.raises(StreamError) as seq:
        streams.append("p", b"t", "text/plain", seq="a")
    assert seq.value.code == "stream_seq_conflict"
    assert [message.payload for message in streams.read("p", 0).messages] == ["a", "c", "s"]


def test_a_deleted_source_stays_readable_to_its_fork_until_the_fork_goes(streams):
    streams.create("src", text(), b"kept")
    streams.create("f", Settings(content_type=None, forked_from="src", fork_offset=None), b"")
    streams.delete("src")
    with pytest.raises(StreamError) as gone:
        streams.read("src", 0)
    assert gone.value.status == 410
    assert [message.payload for message in streams.read("f", 0).messages] == ["kept"]
    streams.delete("f")
    assert "src" not in streams.names() and "f" not in streams.names()


def test_expired_streams_are_swept(streams):
    clock = [1000.0]
    streams.clock = lambda: clock[0]
    streams.create("short", text(ttl_seconds=10), b"x")
    streams.create("forever", text(), b"y")
    streams.touch(streams.head("short"))
    clock[0] += 11
    assert streams.sweep() == 1
    assert streams.names() == ["forever"]
