"""The session view (PROTOCOL 2.1): transcript, folded journals, and the exact cursor.

Folds are cached per run and advanced incrementally, so viewing a session with a long
active run costs the records appended since the last view, not the whole journal.
"""

import collections
import os
import threading

from hermes_web.fold import RunFold
from hermes_web.journal import decode_line, read_lines, recover

MAX_CACHED_RUNS = 512
# A view is rebuilt when compaction moves a run out of its journal mid-build; compactions
# are minutes apart, so a second attempt all but always succeeds.
MAX_VIEW_ATTEMPTS = 3


class _CachedFold:
    __slots__ = ("fold", "lock", "inode", "finished_messages")

    def __init__(self, inode):
        self.fold = RunFold()
        self.lock = threading.Lock()
        self.inode = inode
        self.finished_messages = None


class SessionViews:
    """Builds session views; holds the incremental fold cache and the transcript cache."""

    def __init__(self, data_dir, sessions, runs):
        self.data_dir = data_dir
        self.sessions = sessions
        self.runs = runs
        self._lock = threading.Lock()
        self._folds = collections.OrderedDict()  # run_id -> _CachedFold (LRU)
        self._transcripts = {}  # session_id -> (signature, messages)

    def view(self, session_id: str) -> dict:
        """The session view; raises store.NotFound for an unknown session."""
        for _ in range(MAX_VIEW_ATTEMPTS - 1):
            view = self._build_view(session_id)
            if view is not None:
                return view
        return self._build_view(session_id, complete=False)

    def _build_view(self, session_id: str, complete: bool = True):
        """The view, or None when a journal vanished under it (compaction moved it into
        the transcript after the transcript was read): the caller builds it again."""
        meta = self.sessions.get(session_id)
        # Journals are listed before the transcript is read: a compaction finishing in
        # between then shows its runs in the transcript, never in neither.
        run_ids = self.data_dir.run_ids(session_id)
        messages = list(self.transcript(session_id))
        compacted = {message.get("run_id") for message in messages}
        cursor = _last_cursor(messages)
        active_run = None
        for run_id in run_ids:
            if run_id in compacted:
                continue  # compaction wrote the transcript but has not removed the journal yet
            folded = self._fold_run(session_id, run_id)
            if folded is None:
                if complete:
                    return None
                continue
            run_messages, finished = folded
            if not run_messages:
                continue
            messages.extend(run_messages)
            cursor = run_messages[-1]["cursor"]
            if not finished:
                active_run = {"id": run_id}
        view = dict(meta)
        view.update(messages=messages, active_run=active_run, cursor=cursor)
        return view

    def history(self, session_id: str, before_run: str) -> list:
        """Messages of the runs before ``before_run`` (what an agent sees as context)."""
        return [message for message in self.view(session_id)["messages"] if message.get("run_id") != before_run]

    def transcript(self, session_id: str) -> list:
        """Messages compaction folded into ``transcripts/<sid>.jsonl`` (cached by file identity)."""
        path = self.data_dir.transcript_path(session_id)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self._transcripts.pop(session_id, None)
            return []
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._transcripts.get(session_id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        with open(path, "rb") as handle:
            messages = [decode_line(line) for line in handle if line.strip()]
        self._transcripts[session_id] = (signature, messages)
        return messages

    def compacted_run_ids(self, session_id: str) -> set:
        return {message.get("run_id") for message in self.transcript(session_id)}

    def forget_session(self, session_id: str) -> None:
        self._transcripts.pop(session_id, None)

    def _fold_run(self, session_id: str, run_id: str):
        """``(messages, finished)`` of one journal, advanced from the cached offset; None
        when the journal no longer exists."""
        path = self.data_dir.journal_path(session_id, run_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            inode = os.fstat(fd).st_ino
            cached = self._cached(run_id, inode)
            with cached.lock:
                if cached.finished_messages is not None:
                    return cached.finished_messages, True
                self._advance(cached.fold, fd)
                if not cached.fold.finished and not self.runs.is_local(run_id):
                    if recover(path) == "recovered":  # its writer died (PROTOCOL 1.3)
                        self._advance(cached.fold, fd)
                messages = cached.fold.messages()
                if cached.fold.finished:
                    cached.finished_messages = messages
                return messages, cached.fold.finished
        finally:
            os.close(fd)

    @staticmethod
    def _advance(fold: RunFold, fd: int) -> None:
        while True:
            lines = read_lines(fd, fold.offset)
            if not lines:
                return
            for line, end_offset in lines:
                fold.apply(decode_line(line), end_offset)

    def _cached(self, run_id: str, inode: int) -> _CachedFold:
        with self._lock:
            cached = self._folds.get(run_id)
            if cached is None or cached.inode != inode:
                cached = _CachedFold(inode)
                self._folds[run_id] = cached
            self._folds.move_to_end(run_id)
            while len(self._folds) > MAX_CACHED_RUNS:
                self._folds.popitem(last=False)
            return cached


def _last_cursor(messages: list):
    for message in reversed(messages):
        if message.get("cursor"):
            return message["cursor"]
    return None
