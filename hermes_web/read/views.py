"""The session view (PROTOCOL 2.1, 1.6, 2.6): the active branch, a page of it, the cursor.

Every cost here depends on the page asked for, not on the session's history: the run list
and its branch structure are cached per session and rebuilt only when a run starts or
compaction moves runs; each run's fold is cached (a finished run's messages for good, a
running one advanced incrementally from its last offset), so viewing a long active run
costs the records appended since the last view.
"""

import collections
import threading

from hermes_web.core.codec import decode_record
from hermes_web.read.branches import RunTree, page, with_versions
from hermes_web.read.fold import RunFold
from hermes_web.store.logstore import LogNotFound
from hermes_web.store.metadata import Damaged, NotFound

MAX_CACHED_RUNS = 2048
# A view is rebuilt when compaction moves a run out of its journal mid-build; compactions
# are minutes apart, so a second attempt all but always succeeds.
MAX_VIEW_ATTEMPTS = 3
DEFAULT_PAGE_RUNS = 50
MAX_PAGE_RUNS = 200


class InvalidPage(ValueError):
    """``before`` or ``branch`` names a run that is not where the request says."""


class _CachedFold:
    __slots__ = ("fold", "lock", "identity", "finished_messages", "finished_stamp")

    def __init__(self, identity, run_id, session_id):
        self.fold = RunFold(run_id, session_id)
        self.lock = threading.Lock()
        self.identity = identity
        self.finished_messages = None
        self.finished_stamp = None  # the log's stamp when its messages were kept


class _SessionRuns:
    """One session's runs: where each lives and the branch structure (cached)."""

    __slots__ = ("journal_list", "transcript", "journal_runs", "tree")

    def __init__(self, journal_list, transcript, journal_runs, tree):
        self.journal_list = journal_list  # what the log store listed
        self.transcript = transcript
        self.journal_runs = journal_runs  # those of them not yet in the transcript
        self.tree = tree

    def current(self, journal_list, transcript) -> bool:
        return self.transcript is transcript and (
            self.journal_list is journal_list or self.journal_list == journal_list)


class SessionViews:
    """Builds session views and agent histories from the transcript and the run logs."""

    def __init__(self, logs, transcripts, sessions):
        self.logs = logs
        self.transcripts = transcripts
        self.sessions = sessions
        self._lock = threading.Lock()
        self._folds = collections.OrderedDict()  # run_id -> _CachedFold (LRU)
        self._replaces = {}  # run_id -> the run it replaces (None); a journal's first line
        self._runs = {}  # session_id -> _SessionRuns
        self._histories = {}  # session_id -> (run ids, messages): the last history built

    # ------------------------------------------------------------ the view

    def view(self, session_id: str, limit: int = None, before: str = None, branch: str = None) -> dict:
        """The session view; the last ``limit`` runs (before ``before``) of the active branch
        (or the branch through ``branch``) when ``limit`` is given. NotFound for an unknown
        session, InvalidPage for a ``before``/``branch`` that is not on it."""
        meta = self._metadata(session_id)
        for attempt in range(MAX_VIEW_ATTEMPTS):
            view = self._build_view(session_id, meta, limit, before, branch,
                                    complete=attempt < MAX_VIEW_ATTEMPTS - 1)
            if view is not None:
                return view
            self._forget_runs(session_id)
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt never returns None

    def _metadata(self, session_id: str) -> dict:
        try:
            return self.sessions.get(session_id)
        except Damaged as damaged:
            return damaged.placeholder

    def _build_view(self, session_id, meta, limit, before, branch, complete: bool):
        runs = self.session_runs(session_id)
        tree = runs.tree
        if branch is not None:
            if branch not in tree:
                raise InvalidPage(f"no run {branch} in this session")
            run_ids = tree.branch_through(branch)
        else:
            run_ids = tree.active
        has_more = False
        if limit is not None:
            try:
                run_ids, has_more = page(run_ids, limit, before)
            except ValueError:
                raise InvalidPage(f"run {before} is not on this branch") from None
        messages = []
        for run_id in run_ids:
            run_messages = self._run_messages(session_id, runs, run_id)
            if run_messages is None:
                if complete:
                    return None
                continue
            messages.extend(with_versions(run_messages, tree.versions(run_id)))
        cursor, active_run = None, None
        if tree.order:
            last = tree.order[-1]
            state = self._run_state(session_id, runs, last)
            if state is None:
                if complete:
                    return None
            else:
                cursor, running = state
                active_run = {"id": last} if running else None
        view = dict(meta)
        view.update(messages=messages, active_run=active_run, cursor=cursor)
        if limit is not None:
            view["has_more"] = has_more
            if has_more:
                view["before"] = run_ids[0]
        if runs.transcript.damaged:
            view["damaged"] = runs.transcript.damaged
        return view

    def history(self, session_id: str, before_run: str) -> list:
        """The messages an agent sees for its run ``before_run``: the active branch before
        it (PROTOCOL 1.6). Built on the previous history of the session when it is a
        prefix, so a long session costs the runs since the last turn."""
        runs = self.session_runs(session_id)
        if before_run not in runs.tree:
            self._forget_runs(session_id)
            runs = self.session_runs(session_id)
        run_ids = tuple(runs.tree.before(before_run)) if before_run in runs.tree else tuple(runs.tree.active)
        cached = self._histories.get(session_id)
        if cached is not None and cached[0] == run_ids[: len(cached[0])]:
            messages = list(cached[1])
            start = len(cached[0])
        else:
            messages, start = [], 0
        for run_id in run_ids[start:]:
            run_messages = self._run_messages(session_id, runs, run_id)
            if run_messages is None:  # compacted meanwhile: read it from the transcript
                self._forget_runs(session_id)
                return self.history(session_id, before_run)
            messages.extend(run_messages)
        self._histories[session_id] = (run_ids, messages)
        return list(messages)

    # ------------------------------------------------------------ runs of a session

    def session_runs(self, session_id: str) -> _SessionRuns:
        """The session's runs and branch structure, rebuilt only when they changed.

        Journals are listed before the transcript is read: a compaction finishing in
        between then shows its runs in the transcript, never in neither.
        """
        journal_list = self.logs.runs(session_id)
        transcript = self.transcripts.read(session_id)
        cached = self._runs.get(session_id)
        if cached is not None and cached.current(journal_list, transcript):
            return cached
        entries = []
        in_transcript = set()
        for run_id, messages in transcript.runs:
            in_transcript.add(run_id)
            user = next((message for message in messages if message.get("role") == "user"), {})
            entries.append((run_id, user.get("replaces")))
        live = []
        for run_id in journal_list:
            if run_id in in_transcript:
                continue  # compaction wrote the transcript but has not removed the journal yet
            live.append(run_id)
            entries.append((run_id, self._replaces_of(session_id, run_id)))
        runs = _SessionRuns(journal_list, transcript, frozenset(live), RunTree(entries))
        self._runs[session_id] = runs
        return runs

    def _replaces_of(self, session_id: str, run_id: str):
        if run_id in self._replaces:
            return self._replaces[run_id]
        replaces = None
        try:
            with self.logs.open(run_id, session_id) as log:
                lines = log.read(0, 64 * 1024)
        except (LogNotFound, OSError):
            lines = []
        if lines:
            record = decode_record(lines[0][0])
            if record is not None and record.get("type") == "run.started":
                value = record.get("replaces")
                replaces = value if isinstance(value, str) else None
        self._replaces[run_id] = replaces
        return replaces

    def _forget_runs(self, session_id: str) -> None:
        self._runs.pop(session_id, None)

    def forget_session(self, session_id: str) -> None:
        """Drop what is cached of a deleted session."""
        self._forget_runs(session_id)
        self._histories.pop(session_id, None)
        self.transcripts.forget(session_id)

    # ------------------------------------------------------------ one run

    def every_message(self, session_id: str):
        """Every message of every run of the session, replaced versions included."""
        for run_id in self.session_runs(session_id).tree.order:
            yield from self.run_messages(session_id, run_id)

    def run_messages(self, session_id: str, run_id: str) -> list:
        """The ``[user, assistant]`` messages of one run of the session ([] when unknown)."""
        for _ in range(MAX_VIEW_ATTEMPTS):
            runs = self.session_runs(session_id)
            messages = self._run_messages(session_id, runs, run_id)
            if messages is not None:
                return messages
            self._forget_runs(session_id)
        return []

    def _run_messages(self, session_id: str, runs: _SessionRuns, run_id: str):
        """The run's ``[user, assistant]`` messages; None when its journal vanished."""
        if run_id not in runs.journal_runs:
            return runs.transcript.by_run.get(run_id, [])
        folded = self._fold_run(session_id, run_id)
        return None if folded is None else folded[0]

    def _run_state(self, session_id: str, runs: _SessionRuns, run_id: str):
        """``(cursor, running)`` of a run; None when its journal vanished."""
        if run_id not in runs.journal_runs:
            assistant = runs.transcript.assistant(run_id)
            return (assistant.get("cursor") if assistant else None), False
        folded = self._fold_run(session_id, run_id)
        if folded is None:
            return None
        messages, finished = folded
        return (messages[-1]["cursor"] if messages else f"{run_id}:0"), not finished

    def _fold_run(self, session_id: str, run_id: str):
        """``(messages, finished)`` of one journal, advanced from the cached offset; None
        when the journal no longer exists."""
        try:
            log = self.logs.open(run_id, session_id)
        except LogNotFound:
            return None
        with log:
            cached = self._cached(run_id, session_id, log.identity)
            with cached.lock:
                if cached.finished_messages is not None:
                    if log.stamp() == cached.finished_stamp:
                        return cached.finished_messages, True
                    # A finished journal changed in place (a hand edit, damage): fold it again.
                    cached = self._cached(run_id, session_id, log.identity, fresh=True)
                try:
                    _advance(cached.fold, log)
                    if not cached.fold.finished and not log.owner_alive():
                        if log.recover() == "recovered":  # its writer died (PROTOCOL 1.3)
                            _advance(cached.fold, log)
                except LogNotFound:
                    return None  # a shared store's log removed (compacted) while being read
                messages = cached.fold.messages()
                if cached.fold.finished:
                    cached.finished_messages = messages
                    cached.finished_stamp = log.stamp()
                return messages, cached.fold.finished

    def _cached(self, run_id: str, session_id: str, identity, fresh: bool = False) -> _CachedFold:
        with self._lock:
            cached = self._folds.get(run_id)
            if cached is None or cached.identity != identity or fresh:
                cached = _CachedFold(identity, run_id, session_id)
                self._folds[run_id] = cached
            self._folds.move_to_end(run_id)
            while len(self._folds) > MAX_CACHED_RUNS:
                self._folds.popitem(last=False)
            return cached


def _advance(fold: RunFold, log) -> None:
    while True:
        lines = log.read(fold.offset)
        if not lines:
            return
        for line, end_offset in lines:
            fold.apply(decode_record(line), end_offset)
