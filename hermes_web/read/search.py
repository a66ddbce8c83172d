"""Search over every session (PROTOCOL 2.6): titles, user messages and assistant answers.

A derived index in ``index/search.sqlite``: SQLite's FTS5 with the trigram tokenizer (in the
standard library's sqlite3), so a case-insensitive substring of three or more characters is
found through the index however many sessions there are; shorter queries scan. It holds
redacted text only, is fed as runs start and end and as titles change, and can be rebuilt
from the data dir at any time (it is created by a background pass when missing).
"""

import logging
import re
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SNIPPET_CONTEXT = 60
BUILD_PAUSE_SECONDS = 0.002
MAX_QUERY_CHARS = 200
TITLE, USER, ANSWER = "title", "user", "answer"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (session_id, run_id, kind)
);
CREATE INDEX IF NOT EXISTS docs_session ON docs (session_id);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_text USING fts5(
    text, content='docs', content_rowid='id', tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS docs_added AFTER INSERT ON docs BEGIN
    INSERT INTO docs_text (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_removed AFTER DELETE ON docs BEGIN
    INSERT INTO docs_text (docs_text, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class SearchIndex:
    """The search index of a data dir. Thread-safe; one connection per process."""

    def __init__(self, path, redact):
        self.path = path
        self.redact = redact  # text -> redacted text: nothing unmasked is ever stored
        self._lock = threading.Lock()
        self._connection = None

    def init_app(self, app) -> None:
        from hermes_web.core.services import register

        register(app, "search", self)

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0, isolation_level=None)
            # A derived index: losing its last writes to a power cut costs a rebuild, never data.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    def needs_build(self) -> bool:
        with self._lock:
            row = self._db().execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return row is None or row[0] != str(SCHEMA_VERSION)

    # ------------------------------------------------------------ feeding

    def add(self, session_id: str, run_id: str, kind: str, text: str, ts: float) -> None:
        """Index (or re-index) one text: a session's title (``run_id`` ""), a run's user
        message or its answer."""
        if not isinstance(text, str):
            return
        text = self.redact(text)
        try:
            with self._lock:
                database = self._db()
                database.execute("BEGIN")
                database.execute("DELETE FROM docs WHERE session_id = ? AND run_id = ? AND kind = ?",
                                 (session_id, run_id, kind))
                if text.strip():
                    database.execute("INSERT INTO docs (session_id, run_id, kind, ts, text) VALUES (?, ?, ?, ?, ?)",
                                     (session_id, run_id, kind, float(ts or 0), text))
                database.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            log.warning("search index: could not index %s %s: %s", session_id, run_id or kind, error)

    def remove_session(self, session_id: str) -> None:
        try:
            with self._lock:
                self._db().execute("DELETE FROM docs WHERE session_id = ?", (session_id,))
        except sqlite3.Error as error:
            log.warning("search index: could not forget session %s: %s", session_id, error)

    def _rollback(self) -> None:
        try:
            with self._lock:
                if self._connection is not None and self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def build(self, sessions, views) -> int:
        """Index everything the data dir holds (an older data dir, a deleted index)."""
        count = 0
        for meta in sessions.list():
            # Under gevent this runs between requests: a pause per session keeps a build of
            # thousands of sessions from crowding out the people using the server meanwhile.
            time.sleep(BUILD_PAUSE_SECONDS)
            session_id = meta["id"]
            self.add(session_id, "", TITLE, meta.get("title") or "", meta.get("updated_at") or 0)
            try:
                messages = list(views.every_message(session_id))
            except Exception as error:  # a damaged session must not stop the others
                log.warning("search index: skipped session %s: %s", session_id, error)
                continue
            for message in messages:
                kind = USER if message.get("role") == "user" else ANSWER
                self.add(session_id, message.get("run_id") or "", kind, message.get("text") or "",
                         message.get("created_at") or 0)
                count += 1
        with self._lock:
            self._db().execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)", (str(SCHEMA_VERSION),))
        return count

    # ------------------------------------------------------------ searching

    def search(self, query: str, limit: int, titles) -> list:
        """``[{session_id, run_id, title, snippet}]`` newest first, one per run (or title).
        ``titles``: session_id -> current title (None for a session that no longer exists)."""
        needle = query.strip()
        if not needle:
            return []
        with self._lock:
            database = self._db()
            if len(needle) >= 3:
                phrase = '"' + needle.replace('"', '""') + '"'
                rows = database.execute(
                    "SELECT d.session_id, d.run_id, d.kind, d.text FROM docs_text JOIN docs d ON d.id = docs_text.rowid "
                    "WHERE docs_text MATCH ? ORDER BY d.ts DESC LIMIT ?", (phrase, limit * 4))
            else:
                pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                rows = database.execute(
                    "SELECT session_id, run_id, kind, text FROM docs WHERE text LIKE ? ESCAPE '\\' "
                    "ORDER BY ts DESC LIMIT ?", (pattern, limit * 4))
            rows = rows.fetchall()
        matcher = re.compile(re.escape(needle), re.IGNORECASE)
        results = []
        seen = set()
        for session_id, run_id, kind, text in rows:
            key = (session_id, run_id)
            title = titles(session_id)
            if key in seen or title is None:
                continue
            match = matcher.search(text)
            if match is None:
                continue  # the trigram index folds case more widely than Python: keep exact
            seen.add(key)
            results.append({"session_id": session_id, "run_id": run_id or None, "title": title,
                            "snippet": snippet(text, match.start(), match.end())})
            if len(results) >= limit:
                break
        return results


def snippet(text: str, start: int, end: int, context: int = SNIPPET_CONTEXT) -> str:
    """The match with some context on either side, on one line, marked with ellipses."""
    left = max(0, start - context)
    right = min(len(text), end + context)
    piece = " ".join(text[left:right].split())
    return ("…" if left > 0 else "") + piece + ("…" if right < len(text) else "")
