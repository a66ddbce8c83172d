"""Each server's local search index, fed with what the other servers do.

The search index stays a local SQLite file per server (``search.py``): it is derived data,
rebuilt from the shared store whenever it is missing. A server indexes its own runs as they
start and end; this feed adds the runs other servers finish and the titles they change, as
the wake channel reports them. What happens while a server's subscription is down is not
heard: deleting ``<data dir>/index/search.sqlite`` and restarting rebuilds it whole.
"""

import logging
import queue
import threading

from hermes_web.read.search import ANSWER, TITLE, USER
from hermes_web.store.metadata import NotFound

log = logging.getLogger(__name__)

MAX_PENDING = 10_000


class SearchFeed:
    """Indexes other servers' finished runs and renamed or deleted sessions."""

    def __init__(self, search, sessions, views):
        self.search = search
        self.sessions = sessions
        self.views = views
        self._pending = queue.Queue(MAX_PENDING)

    def follow(self, notifier) -> None:
        notifier.add_listener(self._heard)
        threading.Thread(target=self._run, name="search-feed", daemon=True).start()

    def _heard(self, kind: str, session_id: str, run_id) -> None:
        try:
            self._pending.put_nowait((kind, session_id, run_id))
        except queue.Full:
            pass  # far behind: the index misses these until it is rebuilt

    def _run(self) -> None:
        while True:
            kind, session_id, run_id = self._pending.get()
            try:
                if kind == "e":
                    self._index_run(session_id, run_id)
                else:
                    self._index_title(session_id)
            except Exception as error:  # an unreachable store or a damaged run: skip it
                log.warning("search index: could not index %s from another server: %s", run_id or session_id, error)

    def _index_run(self, session_id: str, run_id: str) -> None:
        for message in self.views.run_messages(session_id, run_id):
            kind = USER if message.get("role") == "user" else ANSWER
            self.search.add(session_id, run_id, kind, message.get("text") or "", message.get("created_at") or 0)

    def _index_title(self, session_id: str) -> None:
        try:
            meta = self.sessions.get(session_id)
        except NotFound:
            self.search.remove_session(session_id)
            return
        self.search.add(session_id, "", TITLE, meta.get("title") or "", meta.get("updated_at") or 0)
