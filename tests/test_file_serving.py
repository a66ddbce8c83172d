"""Serving attachments: sandboxing headers, conditional and range requests, and a corpus of
hostile paths, ids and file names that must never read a byte outside the session's files."""

import json
import os
import secrets
import threading
import urllib.parse

import pytest

from hermes_web.core.safepath import UnsafePath, open_beneath, resolve_inside
from tests.support import ServerProcess, request
from tests.test_uploads import PNG, regular_files, upload, upload_one

TOKEN = secrets.token_hex(6)
OUTSIDE_SECRET = f"OUTSIDE-SECRET-{TOKEN}".encode()
SESSION_SECRET = f"SESSION-SECRET-{TOKEN}"
JOURNAL_SECRET = f"JOURNAL-SECRET-{TOKEN}"
OTHER_SESSION_SECRET = f"OTHER-SESSION-SECRET-{TOKEN}".encode()
SECRETS = (OUTSIDE_SECRET, SESSION_SECRET.encode(), JOURNAL_SECRET.encode(), OTHER_SESSION_SECRET, b"root:x:0:0")
LEGACY_CONTENT = b"legacy report kept by an older tool\n"
RACE_CONTENT = b"benign content of the raced name\n"


class Site:
    """One server with two sessions, legacy files, symlinks out of the root and secrets."""

    def __init__(self, base):
        self.server = ServerProcess(base / "var").start()
        self.data_dir = self.server.data_dir.resolve()
        self.uploads_root = self.data_dir / "uploads"
        self.outside_dir = base / "outside"
        self.outside_dir.mkdir()
        self.outside_secret = self.outside_dir / "secret.txt"
        self.outside_secret.write_bytes(OUTSIDE_SECRET)
        (self.data_dir / "secret-in-data-dir.txt").write_bytes(OUTSIDE_SECRET)

        self.session = self.server.create_session()
        self.other = self.server.create_session()
        status, _, _ = self.server.api("PATCH", f"/api/sessions/{self.session}", {"title": SESSION_SECRET})
        assert status == 200
        self.attachment = upload_one(self.server, self.session, "mine.txt", b"my own attachment\n")
        self.other_attachment = upload_one(self.server, self.other, "theirs.txt", OTHER_SESSION_SECRET)
        run = self.server.start_run(self.other, "hello")
        self.server.wait_run_finished(run["run_id"])

        session_dir = self.uploads_root / self.session
        (session_dir / "legacy").mkdir()
        self.legacy_file = session_dir / "legacy" / "report.txt"
        self.legacy_file.write_bytes(LEGACY_CONTENT)
        self.flat_legacy_file = self.uploads_root / "older-tool-upload.txt"
        self.flat_legacy_file.write_bytes(LEGACY_CONTENT)
        (session_dir / "link-out.txt").symlink_to(self.outside_secret)
        (session_dir / "dirlink").symlink_to(self.outside_dir)
        (session_dir / "link-session.json").symlink_to(self.data_dir / "sessions" / f"{self.session}.json")
        os.mkfifo(session_dir / "fifo")
        self.race_file = session_dir / "race.txt"
        self.race_file.write_bytes(RACE_CONTENT)
        self.other_blob = self.uploads_root / self.other / "blobs" / self.other_attachment["sha256"]
        self.own_blob = session_dir / "blobs" / self.attachment["sha256"]
        self.session_json = self.data_dir / "sessions" / f"{self.session}.json"
        self.other_journal = self.server.journal_path(self.other, run["run_id"]).resolve()

        # Every path below is named by a marker of this session: being referenced is not enough.
        referenced = [
            self.legacy_file, self.flat_legacy_file, self.race_file, self.own_blob,
            session_dir / "link-out.txt", session_dir / "dirlink" / "secret.txt", session_dir / "link-session.json",
            session_dir / "fifo", self.other_blob, self.session_json, self.other_journal, self.outside_secret,
            session_dir / "meta" / f"{self.attachment['id']}.json", "/etc/passwd",
            self.data_dir / "secret-in-data-dir.txt",
        ]
        marker = "[Attached files: " + ", ".join(str(path) for path in referenced) + "]"
        run = self.server.start_run(self.session, f"{JOURNAL_SECRET} please read {marker}")
        self.server.wait_run_finished(run["run_id"])
        self.journal = self.server.journal_path(self.session, run["run_id"]).resolve()

    def raw(self, path: str, session_id: str = None, headers=None):
        query = urllib.parse.urlencode({"session_id": session_id or self.session, "path": path},
                                       quote_via=urllib.parse.quote)
        return request(self.server.url, "GET", f"/api/file/raw?{query}", headers=headers)

    def get(self, url: str, headers=None):
        return request(self.server.url, "GET", url, headers=headers)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("serving"))
    yield site
    site.server.stop()


def assert_no_secret(body: bytes, label):
    for secret in SECRETS:
        assert secret not in body, (label, secret)


# ---------------------------------------------------------------- headers


def test_text_attachment_is_inline_with_sandboxing_headers(site):
    status, data, headers = site.get(site.attachment["url"])
    assert status == 200 and data == b"my own attachment\n"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    assert headers["Content-Disposition"] == "inline; filename=\"mine.txt\"; filename*=UTF-8''mine.txt"
    assert headers["ETag"] == f'"{site.attachment["sha256"]}"'
    assert headers["Content-Length"] == str(len(data))
    assert headers["Accept-Ranges"] == "bytes"


def test_etag_revalidation_and_single_ranges(site):
    url = site.attachment["url"]
    etag = f'"{site.attachment["sha256"]}"'
    status, data, _ = site.get(url, {"If-None-Match": etag})
    assert (status, data) == (304, b"")
    status, data, _ = site.get(url, {"If-None-Match": '"something-else"'})
    assert (status, data) == (200, b"my own attachment\n")
    status, data, headers = site.get(url, {"Range": "bytes=3-5"})
    assert (status, data, headers["Content-Range"]) == (206, b"own", "bytes 3-5/18")
    status, data, headers = site.get(url, {"Range": "bytes=-6"})
    assert (status, data, headers["Content-Range"]) == (206, b"hment\n", "bytes 12-17/18")
    status, data, headers = site.get(url, {"Range": "bytes=18-"})
    assert status == 416 and headers["Content-Range"] == "bytes */18"
    assert json.loads(data)["error"]["code"] == "range_not_satisfiable"
    status, data, _ = site.get(url, {"Range": "bytes=0-1,4-5"})
    assert (status, data) == (200, b"my own attachment\n")
    status, data, _ = site.get(url, {"Range": "lines=1-2"})
    assert (status, data) == (200, b"my own attachment\n")


@pytest.mark.parametrize("name, content, mime, disposition", [
    ("page.html", b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
     "application/octet-stream", "attachment"),
    ("image.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
     "application/octet-stream", "attachment"),
    ("notes.txt", b"  <script>alert(1)</script>", "application/octet-stream", "attachment"),
    ("pic.png", b"<html><body onload=alert(1)>", "application/octet-stream", "attachment"),
    ("polyglot.html", b"GIF89a/*<html><script>alert(1)</script></html>*/", "image/gif", "inline"),
    ("pixel.png", PNG, "image/png", "inline"),
    ("doc.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf", "inline"),
    ("archive.zip", b"PK\x05\x06" + bytes(18), "application/zip", "attachment"),
    ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00", "application/octet-stream", "attachment"),
    ("data.json", b'{"ok": true}', "application/json", "inline"),
])
def test_served_type_comes_from_the_bytes(site, name, content, mime, disposition):
    attachment = upload_one(site.server, site.session, name, content)
    assert attachment["mime"] == mime
    status, data, headers = site.get(attachment["url"])
    assert (status, data) == (200, content)
    assert headers["Content-Type"].split(";")[0] == mime
    assert "html" not in headers["Content-Type"] and "svg" not in headers["Content-Type"]
    assert headers["Content-Disposition"].split(";")[0] == disposition
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]


def test_unicode_names_get_an_rfc5987_filename_and_an_ascii_fallback(site):
    attachment = upload_one(site.server, site.session, "r\u00e9sum\u00e9 \u6587\u4ef6 (v2);final.txt", b"cv")
    _, _, headers = site.get(attachment["url"])
    assert headers["Content-Disposition"] == (
        "inline; filename=\"resume  (v2)_final.txt\"; "
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%96%87%E4%BB%B6%20%28v2%29%3Bfinal.txt"
    )
    plain = upload_one(site.server, site.session, "plain.txt", b"p")
    _, _, headers = site.get(plain["url"])
    assert headers["Content-Disposition"] == "inline; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"


# ---------------------------------------------------------------- the compatibility route


def test_raw_route_serves_files_the_session_references_inside_the_root(site):
    for path, expected in ((site.legacy_file, LEGACY_CONTENT), (site.flat_legacy_file, LEGACY_CONTENT),
                           (site.own_blob, b"my own attachment\n")):
        status, data, headers = site.raw(str(path))
        assert (status, data) == (200, expected), path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in headers["Content-Security-Policy"]
    _, _, headers = site.raw(str(site.own_blob))
    assert headers["Content-Disposition"].startswith('inline; filename="mine.txt"')
    _, _, headers = site.raw(str(site.legacy_file))
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"].startswith('inline; filename="report.txt"')
    status, data, _ = site.raw(str(site.legacy_file), session_id=site.other)
    assert status == 404 and LEGACY_CONTENT not in data


def test_view_shows_legacy_markers_as_chips_that_resolve(site):
    status, view, _ = site.server.api("GET", f"/api/sessions/{site.session}")
    assert status == 200
    user = [message for message in view["messages"] if message["role"] == "user"][-1]
    chips = {chip["name"]: chip for chip in user["attachments"]}
    assert chips["report.txt"]["id"] is None and chips["report.txt"]["size"] is None
    assert chips["report.txt"]["mime"] == "text/plain"
    status, data, _ = site.get(chips["report.txt"]["url"])
    assert (status, data) == (200, LEGACY_CONTENT)
    status, data, _ = site.get(chips["secret.txt"]["url"])
    assert status == 404 and OUTSIDE_SECRET not in data


def _traversal_paths(site) -> list:
    """Values of ``path`` (sent percent-encoded once) that must never be served."""
    root, data_dir, session = str(site.uploads_root), str(site.data_dir), site.session
    own = f"{root}/{session}"
    secret_rel = os.path.relpath(site.outside_secret, site.uploads_root / session / "legacy")
    return [
        "", ".", "..", "/", "//", root, own, f"{own}/", f"{own}/legacy",
        "/etc/passwd", "//etc/passwd", "/etc/../etc/passwd", "etc/passwd", "../../../../etc/passwd",
        str(site.outside_secret), str(site.session_json), str(site.journal), str(site.other_journal),
        f"{data_dir}/secret-in-data-dir.txt", f"{data_dir}/sessions/{site.other}.json",
        f"{own}/../../sessions/{session}.json", f"{own}/legacy/../../../secret-in-data-dir.txt",
        f"{own}/legacy/{secret_rel}", f"{root}/../secret-in-data-dir.txt",
        f"{own}/link-out.txt", f"{own}/dirlink/secret.txt", f"{own}/dirlink/../secret.txt",
        f"{own}/link-session.json", f"{own}/fifo", f"{own}/meta/{site.attachment['id']}.json",
        f"{own}/.incoming", f"{own}/blobs", str(site.other_blob), f"{root}/{site.other}/meta",
        f"{own}/../{site.other}/blobs/{site.other_attachment['sha256']}",
        f"{own}/blobs/{site.other_attachment['sha256']}",
        f"{own}/legacy/report.txt\x00", f"{own}/legacy/report.txt\x00.png", f"/etc/passwd\x00{own}/legacy/report.txt",
        f"{own}/legacy/%2e%2e/%2e%2e/%2e%2e/secret-in-data-dir.txt",
        f"{own}/legacy/%252e%252e/%252e%252e/secret-in-data-dir.txt",
        f"{own}/legacy/\u2024\u2024/\u2024\u2024/secret-in-data-dir.txt",
        f"{own}/legacy/\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fsecret-in-data-dir.txt",
        f"{own}\\..\\..\\secret-in-data-dir.txt", f"{own}/legacy\\..\\..\\..\\secret-in-data-dir.txt",
        f"{own}/legacy/..\\../../secret-in-data-dir.txt",
        f"{own}/CON", f"{own}/NUL.txt", f"{own}/COM1", f"{own}/legacy/AUX", "CON", "NUL.txt",
        f"{own}/legacy/report.txt/", f"{own}/legacy/report.txt/.", f"{own}/legacy/./../link-out.txt",
        f"{own}/legacy/" + "a" * 255, f"{own}/" + "x/" * 2100, "/" + "a" * 10_000,
        "/" + "b" * 5000, f"{own}/legacy/" + "../" * 1500 + "etc/passwd",
        f"file://{own}/legacy/report.txt", f"{own}/legacy/report.txt?x=1", "~/.ssh/id_rsa",
        f"{own}/legacy/REPORT.TXT", f" {own}/legacy/report.txt",
    ]


def test_raw_route_refuses_every_traversal(site):
    corpus = _traversal_paths(site)
    assert len(corpus) >= 60
    outcomes = {}
    for path in corpus:
        status, data, headers = site.raw(path)
        assert_no_secret(data, path[:120])
        assert LEGACY_CONTENT not in data and b"my own attachment" not in data, path[:120]
        if status == 414:  # refused by the HTTP server before the app: request line over 8 KiB
            assert len(urllib.parse.quote(path, safe="")) > 8000, path[:120]
            continue
        outcomes[path[:120]] = (status, headers.get("Content-Type"))
    allowed = {(404, "application/json"), (400, "application/json")}
    assert {path: outcome for path, outcome in outcomes.items() if outcome not in allowed} == {}


def test_raw_route_refuses_raw_encoded_queries(site):
    own = urllib.parse.quote(f"{site.uploads_root}/{site.session}", safe="/")
    queries = [
        f"path={own}/legacy/%2e%2e/%2e%2e/%2e%2e/secret-in-data-dir.txt",
        f"path={own}/legacy/%252e%252e/%252e%252e/%252e%252e/secret-in-data-dir.txt",
        f"path={own}/legacy/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/secret-in-data-dir.txt",
        f"path={own}/legacy/%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afsecret-in-data-dir.txt",
        f"path={own}/legacy/%e0%80%ae%e0%80%ae/secret-in-data-dir.txt",
        f"path={own}/legacy/..%5c..%5c..%5csecret-in-data-dir.txt",
        f"path={own}/legacy/report.txt%00",
        "path=%2fetc%2fpasswd",
        "path=%252fetc%252fpasswd",
        "path=%ff%fe",
        "path=",
        "",
        f"path={own}/legacy/report.txt&path=/etc/passwd",
    ]
    for query in queries:
        separator = "&" if query else ""
        status, data, headers = site.get(f"/api/file/raw?session_id={site.session}{separator}{query}")
        assert_no_secret(data, query)
        if query.endswith("&path=/etc/passwd"):
            assert (status, data) == (200, LEGACY_CONTENT)  # the first value counts
        else:
            assert status in (400, 404), (query, status)
            assert headers["Content-Type"] == "application/json", query


@pytest.mark.parametrize("session_value, expected", [
    (None, 400), ("", 400), ("..", 400), ("../sessions", 400), ("%2e%2e", 400), ("a" * 65, 400), ("a\x00", 400),
    ("0123456789abcdef", 404),
])
def test_raw_route_needs_a_valid_existing_session(site, session_value, expected):
    query = {"path": str(site.legacy_file)}
    if session_value is not None:
        query["session_id"] = session_value
    status, data, headers = site.get("/api/file/raw?" + urllib.parse.urlencode(query))
    assert (status, headers["Content-Type"]) == (expected, "application/json")
    assert LEGACY_CONTENT not in data


def _attachment_urls(site) -> list:
    """Raw request targets on the attachment route that must be refused."""
    own, other = site.session, site.other
    other_id, sha = site.other_attachment["id"], site.attachment["sha256"]
    ids = [
        other_id, sha, site.other_attachment["sha256"], "att_" + "0" * 20, "..", ".", "...", "%2e%2e", "%252e%252e",
        "..%2f..%2f..%2fsessions%2f" + own + ".json", "..%5c..%5csessions", "%c0%ae%c0%ae", "%e0%80%ae",
        "%00", "att%00", "CON", "NUL.txt", "COM1", "LPT1", "%e2%80%a4%e2%80%a4", "%ef%bc%8e%ef%bc%8e%ef%bc%8f",
        "a" * 65, "a" * 10_000, "meta", "blobs", ".incoming", f"{site.attachment['id']}.json",
        f"{site.attachment['id']}%2f..", "%20" + site.attachment["id"],
    ]
    urls = [f"/api/sessions/{own}/attachments/{value}" for value in ids]
    urls += [
        f"/api/sessions/{other}/attachments/{site.attachment['id']}",
        f"/api/sessions/../sessions/{own}/attachments/{site.attachment['id']}",
        f"/api/sessions/%2e%2e/attachments/{site.attachment['id']}",
        f"/api/sessions/{own}%00/attachments/{site.attachment['id']}",
        f"/api/sessions/{own}/attachments/{site.attachment['id']}/..",
        f"/api/sessions/{own}/attachments/{site.attachment['id']}%2f..%2f..%2f..%2fsessions",
        f"/api/sessions/{own}/attachments/../../../sessions/{own}.json",
        f"/api/sessions/{own}/attachments/",
        f"/api/sessions/{own}/attachments/%2fetc%2fpasswd",
        f"/api/sessions/CON/attachments/{site.attachment['id']}",
    ]
    return urls


def test_attachment_route_refuses_foreign_and_malformed_ids(site):
    urls = _attachment_urls(site)
    outcomes = {}
    for url in urls:
        status, data, headers = site.get(url)
        assert_no_secret(data, url)
        assert b"my own attachment" not in data, url
        if status == 414:  # refused by the HTTP server before the app: request line over 8 KiB
            assert len(url) > 8000, url
            continue
        assert headers["Content-Type"] == "application/json", url
        outcomes[url[:120]] = status
    assert {url: status for url, status in outcomes.items() if status not in (400, 404)} == {}
    status, _, _ = site.get(f"/api/sessions/{site.other}/attachments/{site.other_attachment['id']}")
    assert status == 200  # the foreign id is real: refused only from the wrong session


HOSTILE_FILENAMES = [
    "../../../../tmp/escape.txt", "..\\..\\..\\escape.txt", "/etc/passwd", "/etc/cron.d/evil",
    "%2e%2e%2f%2e%2e%2fescape.txt", "%252e%252e%252fescape.txt", "..%c0%afescape.txt", "....//....//escape.txt",
    "CON", "NUL.txt", "COM1", "LPT1.log", "aux", "\u2024\u2024/\u2024\u2024/escape.txt",
    "\uff0e\uff0e\uff0fescape.txt", ".", "..", "...", ".htaccess", "a" * 10_000, "a" * 10_000 + ".txt",
    "x\x00.txt", "name\u202egnp.exe", "\u0000", "dir/", "~/.bashrc", "C:\\Windows\\system.ini",
    "meta/../blobs/evil", "\u00e9\u00e8.txt", "emoji-\U0001F600.txt", "  spaced  .txt",
]


def test_hostile_upload_filenames_are_display_text_only(site):
    session_id = site.server.create_session()
    before = set(regular_files(site.data_dir.parent))
    names = {}
    for index, filename in enumerate(HOSTILE_FILENAMES):
        status, body, _ = upload(site.server, session_id, [(filename, b"content %d" % index)])
        assert status == 201, (filename, body)
        (attachment,) = body["attachments"]
        name = attachment["name"]
        assert "/" not in name and "\\" not in name and "\x00" not in name, filename
        assert name not in ("", ".", "..") and len(name) <= 255, filename
        names[filename] = name
        status, data, headers = site.get(attachment["url"])
        assert (status, data) == (200, b"content %d" % index)
        assert headers["Content-Disposition"].isascii()
    assert names["../../../../tmp/escape.txt"] == "escape.txt"
    assert names["/etc/passwd"] == "passwd"
    assert names["meta/../blobs/evil"] == "evil"
    assert names[".."] == "file"
    new_files = set(regular_files(site.data_dir.parent)) - before
    prefix = f"var/uploads/{session_id}/"
    assert all(path.startswith(prefix + "blobs/") or path.startswith(prefix + "meta/att_") for path in new_files), \
        sorted(new_files)
    assert len([path for path in new_files if "/meta/" in path]) == len(HOSTILE_FILENAMES)


def test_hostile_corpus_is_large_enough(site):
    count = len(_traversal_paths(site)) + len(_attachment_urls(site)) + len(HOSTILE_FILENAMES) + 13
    assert count >= 100, count


# ---------------------------------------------------------------- symlink swaps


def test_open_beneath_refuses_a_final_symlink_swapped_in_after_the_check(tmp_path):
    root = tmp_path / "root"
    (root / "session").mkdir(parents=True)
    target = root / "session" / "file.txt"
    target.write_bytes(b"inside")
    (tmp_path / "secret.txt").write_bytes(OUTSIDE_SECRET)
    real_root, parts = resolve_inside(str(root), str(target))
    target.unlink()
    target.symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UnsafePath):
        open_beneath(real_root, parts)


def test_open_beneath_refuses_a_directory_swapped_for_a_symlink_after_the_check(tmp_path):
    root = tmp_path / "root"
    (root / "session" / "dir").mkdir(parents=True)
    (root / "session" / "dir" / "file.txt").write_bytes(b"inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "file.txt").write_bytes(OUTSIDE_SECRET)
    real_root, parts = resolve_inside(str(root), str(root / "session" / "dir" / "file.txt"))
    os.rename(root / "session" / "dir", root / "session" / "moved")
    (root / "session" / "dir").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePath):
        open_beneath(real_root, parts)
    os.unlink(root / "session" / "dir")
    os.rename(root / "session" / "moved", root / "session" / "dir")
    fd = open_beneath(real_root, parts)
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_raw_route_never_serves_a_symlink_swapped_in_during_requests(site):
    session_dir = site.race_file.parent
    stop = threading.Event()
    swaps = [0]

    def swap():
        while not stop.is_set():
            regular = session_dir / ".race-regular"
            regular.write_bytes(RACE_CONTENT)
            os.replace(regular, site.race_file)
            stop.wait(0.002)
            link = session_dir / ".race-link"
            link.symlink_to(site.outside_secret)
            os.replace(link, site.race_file)
            stop.wait(0.0005)
            swaps[0] += 1

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    statuses = {}
    try:
        for _ in range(300):
            status, data, _ = site.raw(str(site.race_file))
            assert_no_secret(data, "race")
            if status == 200:
                assert data == RACE_CONTENT
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        stop.set()
        swapper.join(5)
        regular = session_dir / ".race-regular"
        regular.write_bytes(RACE_CONTENT)
        os.replace(regular, site.race_file)
    print(f"race: {swaps[0]} swaps, outcomes {statuses}")
    assert set(statuses) <= {200, 404}
    assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0, statuses
