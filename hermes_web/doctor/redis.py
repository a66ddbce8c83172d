"""The Redis store's checks: the indexes (the session list, each session's runs, the run
index of ids that do not carry their session, the unfinished runs) against the runs, and
what does not decode (metadata, transcripts, log entries).

Liveness is the store's lease: a run whose lease lives is read, never changed. Each
repair is one Redis transaction that watches the key it depends on and checks again that
what was found still holds; the repairs write index entries only. Torn tails cannot
happen here (every entry is a whole line); a dead server's run is left to the servers'
sweep, which ends it the one way it always does.
"""

import redis

from hermes_web.core.codec import decode_record
from hermes_web.core.ids import is_valid_id
from hermes_web.doctor.placement import Holders, damaged_transcript, placement
from hermes_web.doctor.report import NotFixed
from hermes_web.store.logstore import LogNotFound
from hermes_web.store.metadata import Damaged, NotFound, sort_time
from hermes_web.store.redis.client import KEYS


class RedisCheck:
    """One pass over the shared store: :meth:`run` reports every finding to ``report``."""

    def __init__(self, stores, report, references):
        self.stores = stores
        self.logs = stores.logs
        self.client = stores.logs.client
        self.report = report
        self.references = references
        self.holders = Holders()
        self.checked = set()  # run ids whose log was read

    def run(self) -> None:
        keys = self._keys()
        sessions = self._check_sessions(keys)
        for session_id in sorted(sessions | keys["runs"]):
            for run_id in self.logs.runs(session_id):
                self._check_run(session_id, run_id)
        for run_id in sorted(keys["run"] - self.checked):
            self._check_unlisted_run(run_id)
        for session_id in sorted(sessions | keys["transcript"]):
            self._check_transcript(session_id)
        self._check_run_index()
        self._check_unfinished()

    def _keys(self) -> dict:
        """The ids in the store's key names, by kind (one SCAN per prefix)."""
        found = {"session": set(), "runs": set(), "transcript": set(), "run": set()}
        for prefix, kinds in (("session:", {"": "session", "runs": "runs", "transcript": "transcript"}),
                              ("run:", {"": "run"})):
            start = len(KEYS.prefix + prefix)
            for key in self.client.scan_iter(match=f"{KEYS.prefix}{prefix}*", count=1000):
                identifier, _, suffix = key.decode(errors="replace")[start:].partition(":")
                if is_valid_id(identifier) and suffix in kinds:
                    found[kinds[suffix]].add(identifier)
        return found

    # ------------------------------------------------------------ sessions

    def _check_sessions(self, keys) -> set:
        """Metadata that does not decode; the session list against the metadata."""
        listed = {value.decode() for value in self.client.zrange(KEYS.sessions, 0, -1)}
        sessions = set()
        for session_id in sorted(listed | keys["session"]):
            try:
                meta = self.stores.metadata.get(session_id)
            except NotFound:
                self.report.finding("stale-index", KEYS.sessions, f"lists session {session_id}, which has no metadata",
                                    fix=lambda s=session_id: self._unlist_session(s))
                continue
            except Damaged as damaged:
                meta = {}
                self.report.finding("damaged-metadata", KEYS.session(session_id),
                                    f"{damaged.reason}: the session is listed as an unreadable chat")
            sessions.add(session_id)
            if session_id not in listed:
                self.report.finding("unlisted-session", KEYS.session(session_id),
                                    f"session {session_id} is not in {KEYS.sessions}: no session list shows it",
                                    fix=lambda s=session_id, m=meta: self._list_session(s, m))
        return sessions

    def _unlist_session(self, session_id: str) -> str:
        self._guarded(KEYS.session(session_id), lambda pipe: not pipe.exists(KEYS.session(session_id)),
                      lambda pipe: pipe.zrem(KEYS.sessions, session_id), "the session exists now")
        return "removed"

    def _list_session(self, session_id: str, meta: dict) -> str:
        self._guarded(KEYS.session(session_id), lambda pipe: pipe.exists(KEYS.session(session_id)),
                      lambda pipe: pipe.zadd(KEYS.sessions, {session_id: sort_time(meta)}, nx=True),
                      "the session was deleted meanwhile")
        return "listed"

    # ------------------------------------------------------------ runs

    def _check_run(self, session_id: str, run_id: str) -> None:
        self.checked.add(run_id)
        state = self.client.hgetall(KEYS.run(run_id))
        if not state:
            self.report.finding("stale-index", KEYS.session_runs(session_id), f"lists run {run_id}, which has no log",
                                fix=lambda: self._unlist_run(session_id, run_id))
            return
        owner = state.get(b"session", b"").decode(errors="replace")
        if owner != session_id:
            self.report.finding("misindexed-run", KEYS.session_runs(session_id),
                                f"lists run {run_id}, whose log belongs to session {owner!r}")
            return
        self.holders.add(run_id, session_id)
        entries = self._entries(session_id, run_id)
        if entries is None:
            return  # compacted or deleted meanwhile
        self.references.add_run(session_id, run_id, entries)
        damaged = sum(1 for record, _ in entries if record is None)
        if damaged:
            self.report.finding("damaged-line", KEYS.log(run_id),
                                f"{damaged} entry(ies) that do not decode to a record: views skip them, "
                                "compaction leaves the run until --salvage")
        if state.get(b"terminal") or self.logs.owner_alive(run_id):
            return
        self.report.finding("unfinished-run", KEYS.run(run_id),
                            "no terminal record and no lease: a server's sweep ends it (run.interrupted) "
                            "within a lease period")
        if not self.client.hexists(KEYS.unfinished, run_id):
            self.report.finding("missing-marker", KEYS.run(run_id),
                                f"not in {KEYS.unfinished}: no server's sweep visits it",
                                fix=lambda: self._mark(session_id, run_id))

    def _check_unlisted_run(self, run_id: str) -> None:
        """A run whose log no session lists."""
        owner = self.client.hget(KEYS.run(run_id), "session")
        owner = owner.decode(errors="replace") if owner is not None else None
        if not is_valid_id(owner) or run_id in self.checked:
            return
        self.report.finding("unindexed-run", KEYS.run(run_id),
                            f"not in {KEYS.session_runs(owner)}: session {owner} does not show it",
                            fix=lambda: self._list_run(owner, run_id))
        self._check_run(owner, run_id)

    def _entries(self, session_id: str, run_id: str):
        """Every ``(record, end_offset)`` of the run's log (None when it is gone)."""
        entries = []
        try:
            with self.logs.open(run_id, session_id) as log:
                while True:
                    lines = log.read(entries[-1][1] if entries else 0)
                    if not lines:
                        return entries
                    entries.extend((decode_record(line), end_offset) for line, end_offset in lines)
        except LogNotFound:
            return None

    def _unlist_run(self, session_id: str, run_id: str) -> str:
        self._guarded(KEYS.run(run_id), lambda pipe: not pipe.exists(KEYS.run(run_id)),
                      lambda pipe: pipe.zrem(KEYS.session_runs(session_id), run_id), "the run exists now")
        return "removed"

    def _list_run(self, session_id: str, run_id: str) -> str:
        self._guarded(KEYS.run(run_id), lambda pipe: _text(pipe.hget(KEYS.run(run_id), "session")) == session_id,
                      lambda pipe: pipe.zadd(KEYS.session_runs(session_id), {run_id: 0}), "the run changed meanwhile")
        return f"added to {KEYS.session_runs(session_id)}"

    def _mark(self, session_id: str, run_id: str) -> str:
        def unfinished(pipe) -> bool:
            return pipe.hget(KEYS.run(run_id), "terminal") == b"" and not pipe.exists(KEYS.lease(run_id))

        self._guarded(KEYS.run(run_id), unfinished, lambda pipe: pipe.hset(KEYS.unfinished, run_id, session_id),
                      "the run has ended or is live")
        return f"added to {KEYS.unfinished}"

    # ------------------------------------------------------------ transcripts

    def _check_transcript(self, session_id: str) -> None:
        transcript = self.stores.transcripts.read(session_id)
        detail = damaged_transcript(transcript)
        if detail:
            self.report.finding("damaged-transcript", KEYS.transcript(session_id), detail)
        self.references.add_messages(session_id, transcript.messages)
        self.holders.add_transcript(session_id, transcript)

    # ------------------------------------------------------------ the run index, unfinished runs

    def _check_run_index(self) -> None:
        for run_id, session_ids in self.holders.items():
            found = placement(run_id, session_ids, self.logs.locate(run_id), KEYS.run_sessions)
            if found is None:
                continue
            kind, session_id, detail = found
            if kind in ("duplicate-run", "misplaced-run"):
                self.report.finding(kind, run_id, detail)
            else:
                self.report.finding(kind, run_id, detail, fix=lambda s=session_id, r=run_id: self._index_run(s, r))
        for run_id, target in sorted(self.client.hgetall(KEYS.run_sessions).items()):
            run_id, target = run_id.decode(errors="replace"), target.decode(errors="replace")
            if run_id in self.holders or self._holds(target, run_id):
                continue
            self.report.finding("stale-index", KEYS.run_sessions,
                                f"maps run {run_id} to session {target!r}, which holds no such run",
                                fix=lambda r=run_id, t=target: self._unindex_run(r, t))

    def _holds(self, session_id: str, run_id: str) -> bool:
        """Whether the session holds the run now: its log or its transcript."""
        if not is_valid_id(session_id):
            return False
        if _text(self.client.hget(KEYS.run(run_id), "session")) == session_id:
            return True
        return run_id in self.stores.transcripts.read(session_id).by_run

    def _index_run(self, session_id: str, run_id: str) -> str:
        if self.logs.owner_alive(run_id):
            raise NotFixed("the run is live")
        if not self._holds(session_id, run_id):
            raise NotFixed(f"session {session_id} no longer holds it")
        self.client.hset(KEYS.run_sessions, run_id, session_id)
        return f"{KEYS.run_sessions} {run_id} -> {session_id}"

    def _unindex_run(self, run_id: str, target: str) -> str:
        if self._holds(target, run_id):
            raise NotFixed(f"session {target} holds it now")
        self._guarded(KEYS.run_sessions, lambda pipe: _text(pipe.hget(KEYS.run_sessions, run_id)) == target,
                      lambda pipe: pipe.hdel(KEYS.run_sessions, run_id), "it changed meanwhile")
        return "removed"

    def _check_unfinished(self) -> None:
        """Every run ``unfinished`` names has not ended (a run that ended never runs again)."""
        for run_id, session_id in sorted(self.client.hgetall(KEYS.unfinished).items()):
            run_id = run_id.decode(errors="replace")
            terminal = self.client.hget(KEYS.run(run_id), "terminal")
            if terminal == b"":
                continue
            detail = f"lists run {run_id}, which has {'ended' if terminal else 'no log'}"
            self.report.finding("stale-marker", KEYS.unfinished, detail, fix=lambda r=run_id: self._unmark(r))

    def _unmark(self, run_id: str) -> str:
        self._guarded(KEYS.run(run_id), lambda pipe: pipe.hget(KEYS.run(run_id), "terminal") != b"",
                      lambda pipe: pipe.hdel(KEYS.unfinished, run_id), "the run is unfinished")
        return "removed"

    # ------------------------------------------------------------ helpers

    def _guarded(self, key: str, still, change, otherwise: str) -> None:
        """``change(pipeline)`` in a transaction that fails if ``key`` changes after
        ``still(pipeline)`` confirmed what was found; NotFixed(``otherwise``) when it did not."""
        with self.client.pipeline(transaction=True) as pipeline:
            try:
                pipeline.watch(key)
                if not still(pipeline):
                    raise NotFixed(otherwise)
                pipeline.multi()
                change(pipeline)
                pipeline.execute()
            except redis.WatchError:
                raise NotFixed("it changed meanwhile") from None


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def check(stores, report, references) -> None:
    """Check the shared store of ``stores``."""
    RedisCheck(stores, report, references).run()
