"""Uploads: streamed to the session's upload directory, limited, sniffed, durable, deleted."""

import hashlib
import json
import os
import secrets
import stat
import threading
import time

import pytest

from hermes_web.core.sniff import TextDetector, looks_like_markup, sniff_mime
from hermes_web.read.fold import RunFold
from hermes_web.store.uploads import MAX_NAME_CHARS, display_name
from tests.support import request

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)


def multipart_body(parts, boundary: str = None):
    """``(body, content_type)`` for ``parts`` = [(field, filename_or_None, content_bytes)].

    Filenames are written raw (bytes or str) so tests can send any header value.
    """
    boundary = boundary or "hermes" + secrets.token_hex(8)
    chunks = []
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"'.encode()
        if filename is not None:
            raw = filename if isinstance(filename, bytes) else filename.encode("utf-8")
            disposition += b'; filename="' + raw + b'"'
        chunks.append(b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition
                      + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + b"\r\n")
    chunks.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def upload(server, session_id: str, files, headers=None):
    """POST files (``[(filename, content)]``) as ``file`` fields: ``(status, json, headers)``."""
    body, content_type = multipart_body([("file", name, content) for name, content in files])
    status, data, response_headers = request(
        server.url, "POST", f"/api/sessions/{session_id}/uploads", body, {"Content-Type": content_type, **(headers or {})}
    )
    return status, json.loads(data) if data else None, response_headers


def upload_one(server, session_id: str, name: str, content: bytes) -> dict:
    status, body, _ = upload(server, session_id, [(name, content)])
    assert status == 201, body
    (attachment,) = body["attachments"]
    return attachment


def regular_files(root):
    """Every regular file below ``root`` (relative paths), symlinks not followed."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(os.path.relpath(path, root))
    return sorted(found)


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize("raw, expected", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("/etc/passwd", "passwd"),
    ("dir/", "file"),
    ("..", "file"),
    (".", "file"),
    ("", "file"),
    ("a\x00b.txt", "ab.txt"),
    ("invoice\u202etxt.exe", "invoicetxt.exe"),
    ("line\r\nbreak.txt", "linebreak.txt"),
    ("e\u0301te\u0301.md", "\u00e9t\u00e9.md"),
    ("CON", "CON"),
    ("．．／x", "．．／x"),
])
def test_display_name_is_one_clean_component(raw, expected):
    assert display_name(raw) == expected


def test_display_name_bounds_long_names_and_keeps_the_extension():
    name = display_name("a" * 10_000 + ".png")
    assert len(name) == MAX_NAME_CHARS and name.endswith(".png")


@pytest.mark.parametrize("head, is_text, name, expected", [
    (PNG, False, "x.txt", "image/png"),
    (b"\xff\xd8\xff\xe0JFIF", False, "x", "image/jpeg"),
    (b"GIF89a<html><script>alert(1)</script>", True, "x.html", "image/gif"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", False, "x", "image/webp"),
    (b"%PDF-1.7\n", False, "x", "application/pdf"),
    (b"PK\x03\x04\x14\x00", False, "x.docx", "application/zip"),
    (b"hello", True, "notes.txt", "text/plain"),
    (b"# Title", True, "readme.md", "text/markdown"),
    (b'{"a": 1}', True, "data.json", "application/json"),
    (b"a,b\n1,2\n", True, "t.csv", "text/csv"),
    (b"plain", True, "noext", "text/plain"),
    (b"<!DOCTYPE html><p>x", True, "x.txt", "application/octet-stream"),
    (b"  <script>alert(1)</script>", True, "x.md", "application/octet-stream"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"/>', True, "x.svg", "application/octet-stream"),
    (b"<?xml version='1.0'?>", True, "x.txt", "application/octet-stream"),
    (b"\x00\x01\x02binary", False, "x.txt", "application/octet-stream"),
    (b"\x7fELF", False, "x.png", "application/octet-stream"),
])
def test_sniff_uses_magic_bytes_and_the_allow_list(head, is_text, name, expected):
    assert sniff_mime(head, is_text, name) == expected


def test_markup_detection_needs_a_tag_boundary():
    assert looks_like_markup(b"<a href=x>")
    assert not looks_like_markup(b"<abbr> is not sniffed as html by browsers")
    assert not looks_like_markup(b"a < b and c > d")


def test_text_detector_follows_utf8_across_chunks():
    detector = TextDetector()
    encoded = "caf\u00e9 \u2603".encode()
    for byte in encoded:
        detector.feed(bytes([byte]))
    assert detector.finish() is True
    broken = TextDetector()
    broken.feed(b"caf\xc3")
    assert broken.finish() is False
    control = TextDetector()
    control.feed(b"nul\x00byte")
    assert control.finish() is False


def test_fold_turns_legacy_markers_into_chips_and_keeps_the_text():
    text = "see [Attached files: /data/uploads/old/a b.png, /data/uploads/old/notes.md]"
    fold = RunFold()
    fold.apply({"type": "run.started", "ts": 1.0, "run_id": "r1", "session_id": "s1",
                "user": {"id": "u1", "text": text, "attachments": [
                    {"id": "att_1", "name": "x.pdf", "mime": "application/pdf", "size": 3, "sha256": "ab"}]},
                "agent": {"name": "demo", "model": "demo"}}, 10)
    user = fold.messages()[0]
    assert user["text"] == text
    assert user["attachments"] == [
        {"id": "att_1", "name": "x.pdf", "mime": "application/pdf", "size": 3,
         "url": "/api/sessions/s1/attachments/att_1"},
        {"id": None, "name": "a b.png", "mime": "image/png", "size": None,
         "url": "/api/file/raw?session_id=s1&path=%2Fdata%2Fuploads%2Fold%2Fa%20b.png"},
        {"id": None, "name": "notes.md", "mime": "text/markdown", "size": None,
         "url": "/api/file/raw?session_id=s1&path=%2Fdata%2Fuploads%2Fold%2Fnotes.md"},
    ]


# ---------------------------------------------------------------- the upload route


def test_upload_stores_generated_names_with_private_modes(server):
    session_id = server.create_session()
    content = b"hello attachments\n"
    status, body, _ = upload(server, session_id, [("../../notes.txt", content), ("pic.png", PNG)])
    assert status == 201
    first, second = body["attachments"]
    assert first["name"] == "notes.txt" and first["mime"] == "text/plain" and first["size"] == len(content)
    assert first["sha256"] == hashlib.sha256(content).hexdigest()
    assert first["url"] == f"/api/sessions/{session_id}/attachments/{first['id']}"
    assert second["mime"] == "image/png" and second["size"] == len(PNG)
    assert set(first) == {"id", "name", "mime", "size", "sha256", "url"}
    uploads_dir = server.data_dir / "uploads" / session_id
    assert regular_files(uploads_dir) == sorted([
        f"blobs/{first['sha256']}", f"blobs/{second['sha256']}",
        f"meta/{first['id']}.json", f"meta/{second['id']}.json",
    ])
    for directory in (uploads_dir, uploads_dir / "blobs", uploads_dir / "meta"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for relative in regular_files(uploads_dir):
        assert stat.S_IMODE(os.stat(uploads_dir / relative).st_mode) == 0o600
    meta = json.loads((uploads_dir / "meta" / f"{first['id']}.json").read_text())
    assert {key: meta[key] for key in ("id", "name", "mime", "size", "sha256")} == {
        key: first[key] for key in ("id", "name", "mime", "size", "sha256")}
    assert isinstance(meta["created_at"], float)
    assert str(server.data_dir) not in json.dumps(body)


def test_identical_content_is_stored_once_per_session(server):
    session_id = server.create_session()
    one = upload_one(server, session_id, "a.txt", b"same bytes")
    two = upload_one(server, session_id, "b.txt", b"same bytes")
    assert one["id"] != two["id"] and one["sha256"] == two["sha256"]
    assert regular_files(server.data_dir / "uploads" / session_id / "blobs") == [one["sha256"]]
    for attachment, name in ((one, "a.txt"), (two, "b.txt")):
        status, data, headers = request(server.url, "GET", attachment["url"])
        assert (status, data) == (200, b"same bytes")
        assert f"filename=\"{name}\"" in headers["Content-Disposition"]


def _raw_upload(server, session_id, body: bytes, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return request(server.url, "POST", f"/api/sessions/{session_id}/uploads", body, headers)


def test_bad_upload_requests_are_4xx_json_and_leave_nothing(server):
    session_id = server.create_session()
    good, good_type = multipart_body([("file", "a.txt", b"abc")], boundary="BOUNDARY1")
    cases = [
        ("no content type", session_id, good, None, 415),
        ("json body", session_id, b'{"file": "x"}', "application/json", 415),
        ("text body", session_id, b"abc", "text/plain", 415),
        ("urlencoded form", session_id, b"file=abc", "application/x-www-form-urlencoded", 415),
        ("no boundary", session_id, good, "multipart/form-data", 400),
        ("overlong boundary", session_id, good, "multipart/form-data; boundary=" + "b" * 71, 400),
        ("boundary with quote", session_id, good, 'multipart/form-data; boundary="a\\"b"', 400),
        ("wrong boundary", session_id, good, "multipart/form-data; boundary=OTHER", 400),
        ("truncated body", session_id, good[:-20], good_type, 400),
        ("cut inside the data", session_id, good[:good.index(b"abc") + 2], good_type, 400),
        ("empty body", session_id, b"", good_type, 400),
        ("only the closing boundary", session_id, b"--BOUNDARY1--\r\n", good_type, 400),
        ("no file field", session_id, multipart_body([("note", None, b"hi")], "B2")[0],
         "multipart/form-data; boundary=B2", 400),
        ("file field without filename", session_id, multipart_body([("file", None, b"hi")], "B3")[0],
         "multipart/form-data; boundary=B3", 400),
        ("other field with filename", session_id, multipart_body([("upload", "a.txt", b"hi")], "B4")[0],
         "multipart/form-data; boundary=B4", 400),
        ("empty filename", session_id, multipart_body([("file", "", b"hi")], "B5")[0],
         "multipart/form-data; boundary=B5", 400),
        ("blank filename", session_id, multipart_body([("file", "   ", b"hi")], "B6")[0],
         "multipart/form-data; boundary=B6", 400),
        ("good file then empty filename", session_id,
         multipart_body([("file", "a.txt", b"hi"), ("file", "", b"x")], "B7")[0],
         "multipart/form-data; boundary=B7", 400),
        ("no content-disposition", session_id,
         b"--B8\r\nContent-Type: text/plain\r\n\r\nabc\r\n--B8--\r\n", "multipart/form-data; boundary=B8", 400),
        ("undecodable part header", session_id,
         b'--B9\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.txt"\r\n\r\nabc\r\n--B9--\r\n',
         "multipart/form-data; boundary=B9", 400),
        ("endless part headers", session_id, b"--B10\r\nX-Pad: " + b"a" * 200_000,
         "multipart/form-data; boundary=B10", 413),
        ("unknown session", "0123456789abcdef", good, good_type, 404),
        ("encoded traversal as session", "..%2f..", good, good_type, 404),
        ("invalid session id", "a%20b", good, good_type, 400),
        ("dotted session id", "a.b", good, good_type, 400),
    ]
    outcomes = {}
    for label, target, body, content_type, _ in cases:
        status, data, headers = _raw_upload(server, target, body, content_type)
        error = json.loads(data)["error"] if headers.get("Content-Type", "").startswith("application/json") else None
        outcomes[label] = (status, bool(error and error.get("code")))
    assert outcomes == {label: (expected, True) for label, _, _, _, expected in cases}
    assert regular_files(server.data_dir / "uploads") == []


def test_too_many_files_in_one_request_is_413_and_keeps_none(server):
    session_id = server.create_session()
    status, body, _ = upload(server, session_id, [(f"f{index}.txt", b"x%d" % index) for index in range(21)])
    assert status == 413 and body["error"]["code"] == "too_many_files"
    assert regular_files(server.data_dir / "uploads") == []


def test_over_size_upload_is_413_and_leaves_nothing_on_disk(server_factory):
    server = server_factory(env={"HERMES_WEB_MAX_UPLOAD_MB": "0.01"})
    limit = int(0.01 * 1024 * 1024)
    session_id = server.create_session()
    status, body, _ = upload(server, session_id, [("big.bin", b"x" * (limit + 1))])
    assert status == 413
    assert body["error"]["code"] == "file_too_large" and body["error"]["limit"] == limit
    status, body, _ = upload(server, session_id, [("small.txt", b"fits"), ("big.bin", os.urandom(50 * limit))])
    assert status == 413 and body["error"]["code"] == "file_too_large"
    assert regular_files(server.data_dir / "uploads") == []
    assert os.listdir(server.data_dir / "uploads" / session_id / ".incoming") == []
    exact = upload_one(server, session_id, "exact.bin", b"y" * limit)
    assert exact["size"] == limit


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_upload_streams_to_disk_without_buffering_the_body(server):
    session_id = server.create_session()
    upload_one(server, session_id, "warm.txt", b"warm up")
    pid = server.process.pid
    before = _rss_kib(pid)
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(_rss_kib(pid))
            done.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    content = os.urandom(19 * 1024 * 1024)
    sampler.start()
    started = time.monotonic()
    try:
        attachment = upload_one(server, session_id, "big.bin", content)
    finally:
        elapsed = time.monotonic() - started
        done.set()
        sampler.join(5)
    growth_mib = (max(samples) - before) / 1024
    print(f"19 MiB upload: {elapsed:.2f}s, {len(samples)} RSS samples, server RSS grew at most {growth_mib:.1f} MiB")
    assert attachment["size"] == len(content)
    assert attachment["sha256"] == hashlib.sha256(content).hexdigest()
    assert attachment["mime"] == "application/octet-stream"
    assert len(samples) >= 5
    assert growth_mib < 8, growth_mib


# ---------------------------------------------------------------- attachments in runs


def _user_attachments(server, session_id):
    status, view, _ = server.api("GET", f"/api/sessions/{session_id}")
    assert status == 200
    return view["messages"][0]["attachments"], view["messages"][1]


def test_attachments_survive_the_run_and_a_restart(server_factory):
    server = server_factory()
    session_id = server.create_session()
    notes = upload_one(server, session_id, "notes.md", b"# Notes\n\nsome text\n")
    image = upload_one(server, session_id, "pixel.png", PNG)
    run = server.start_run(session_id, "what did I attach?", [notes["id"], image["id"]])
    expected = [
        {key: attachment[key] for key in ("id", "name", "mime", "size", "url")} for attachment in (notes, image)
    ]
    during, _ = _user_attachments(server, session_id)
    assert during == expected
    server.wait_run_finished(run["run_id"])
    after, assistant = _user_attachments(server, session_id)
    assert after == expected
    (tool,) = [call for call in assistant["tool_calls"] if call["name"] == "list_attachments"]
    assert tool["result"] == {"attachments": [
        {"name": "notes.md", "mime": "text/markdown", "size": notes["size"]},
        {"name": "pixel.png", "mime": "image/png", "size": len(PNG)},
    ]}
    journal = server.journal_path(session_id, run["run_id"]).read_text()
    assert str(server.data_dir) not in journal and "blobs" not in journal
    server.stop()

    restarted = server_factory(data_dir=server.data_dir)
    reloaded, _ = _user_attachments(restarted, session_id)
    assert reloaded == expected
    status, data, headers = request(restarted.url, "GET", image["url"])
    assert (status, data, headers["Content-Type"]) == (200, PNG, "image/png")


def test_run_with_an_attachment_of_another_session_is_refused(server):
    mine, theirs = server.create_session(), server.create_session()
    foreign = upload_one(server, theirs, "theirs.txt", b"private")
    status, body, _ = server.api("POST", f"/api/sessions/{mine}/runs", {"text": "hi", "attachments": [foreign["id"]]})
    assert status == 400 and body["error"]["code"] == "unknown_attachment"


def test_deleting_a_session_deletes_its_uploads(server):
    session_id = server.create_session()
    kept_session = server.create_session()
    attachment = upload_one(server, session_id, "a.txt", b"to be deleted")
    kept = upload_one(server, kept_session, "b.txt", b"to be kept")
    assert (server.data_dir / "uploads" / session_id).is_dir()
    status, _, _ = server.api("DELETE", f"/api/sessions/{session_id}")
    assert status == 204
    assert not (server.data_dir / "uploads" / session_id).exists()
    status, _, _ = request(server.url, "GET", attachment["url"])
    assert status == 404
    status, data, _ = request(server.url, "GET", kept["url"])
    assert (status, data) == (200, b"to be kept")
