"""The file store's checks: the data dir against PROTOCOL 1 (journals, the run index,
active markers, transcripts, metadata), with the repairs that are safe while servers run.

Liveness is the server's own: a run is live while a process holds its journal's writer
lock (``flock``, PROTOCOL 1.3). A live run is read, never changed. Every repair happens
under the session's lock and after checking again that what was found still holds; none
of them touches a journal, a transcript or metadata: they write index entries (symlinks,
replaced atomically) and file modes. Torn tails and dead runs are left to the server's
recovery, which cuts and ends them the one way it always does.
"""

import contextlib
import dataclasses
import os
import time

from hermes_web.core.fsutil import atomic_symlink, fsync_dir, unlink_quietly
from hermes_web.core.ids import is_valid_id
from hermes_web.core.records import is_terminal
from hermes_web.doctor.placement import Holders, damaged_transcript, placement
from hermes_web.doctor.report import NotFixed
from hermes_web.store.durability import Durability
from hermes_web.store.files.journal import TORN_SUFFIX, read_entries, writer_alive_at
from hermes_web.store.files.logs import RESERVE_BYTES, FileLogStore
from hermes_web.store.files.metadata import SessionStore
from hermes_web.store.files.transcripts import transcript_run_ids
from hermes_web.store.metadata import Damaged, NotFound
from hermes_web.store.transcripts import parse_transcript

# An index entry or marker this young may belong to a run being created right now (the
# server writes them just before the journal).
CREATION_GRACE_SECONDS = 60


@dataclasses.dataclass
class Journal:
    """One journal as the check saw it."""

    session_id: str
    run_id: str
    path: str
    live: bool
    terminal: bool


class FileCheck:
    """One pass over a data dir: :meth:`run` reports every finding to ``report``."""

    def __init__(self, data_dir, report, references, now: float = None):
        self.data_dir = data_dir
        self.report = report
        self.references = references
        self.now = time.time() if now is None else now
        self.store = FileLogStore(data_dir, Durability("terminal"))
        self.journals = {}  # (session_id, run_id) -> Journal
        self.holders = Holders()

    def run(self) -> set:
        """Every check; returns the paths of live runs' journals (to be left alone)."""
        sessions = set(self.data_dir.session_ids())
        for session_id in sorted(sessions):
            self._check_metadata(session_id)
        for session_id in _session_dirs(self.data_dir.journals_root):
            for run_id in self.data_dir.run_ids(session_id):
                self._check_journal(session_id, run_id)
        transcripts = self._check_transcripts()
        self._check_orphans(sessions, transcripts)
        if (self.store.index_root / "VERSION").exists():
            # Without it the server indexes the whole data dir when it first opens it.
            self._check_run_index()
            self._check_markers()
            self._check_reserve()
        return {journal.path for journal in self.journals.values() if journal.live}

    def _subject(self, path) -> str:
        return self.report.subject(path)

    # ------------------------------------------------------------ what is stored

    def _check_metadata(self, session_id: str) -> None:
        try:
            SessionStore(self.data_dir).get(session_id)
        except Damaged as damaged:
            self.report.finding("damaged-metadata", self._subject(self.data_dir.session_path(session_id)),
                                f"{damaged.reason}: the session is listed as an unreadable chat")
        except NotFound:
            pass  # deleted meanwhile

    def _check_journal(self, session_id: str, run_id: str) -> None:
        path = os.path.abspath(self.data_dir.journal_path(session_id, run_id))
        subject = self._subject(path)
        try:
            live = writer_alive_at(path)
            size = os.stat(path).st_size
            entries = read_entries(path)
        except FileNotFoundError:
            return  # compacted or deleted meanwhile
        except OSError as error:
            self.references.complete = False
            self.report.finding("unreadable", subject, error.strerror or str(error))
            return
        last = entries[-1][0] if entries else None
        journal = Journal(session_id, run_id, path, live, is_terminal(last))
        self.journals[(session_id, run_id)] = journal
        self.holders.add(run_id, session_id)
        self.references.add_run(session_id, run_id, entries)
        damaged = [start for (record, _), start in zip(entries, [0] + [end for _, end in entries]) if record is None]
        if damaged:
            self.report.finding("damaged-line", subject,
                                f"{len(damaged)} line(s) that do not decode to a record, the first at byte "
                                f"{damaged[0]}: views skip them, compaction leaves the run until --salvage")
        committed = entries[-1][1] if entries else 0
        if not live and size > committed:
            after = "" if journal.terminal else f"; the server's recovery keeps them in {run_id}.jsonl{TORN_SUFFIX} " \
                                                "when it ends the run"
            self.report.finding("torn-tail", subject,
                                f"{size - committed} byte(s) after the last newline, never shown to readers{after}")

    def _check_transcripts(self) -> set:
        """Damaged transcripts; the runs each holds. Returns the sessions with one."""
        sessions = set()
        for name in sorted(_names(self.data_dir.transcripts_dir)):
            session_id = name[:-len(".jsonl")]
            if not name.endswith(".jsonl") or not is_valid_id(session_id):
                continue  # a compaction's temp file
            path = self.data_dir.transcript_path(session_id)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                continue
            except OSError as error:
                self.references.complete = False
                self.report.finding("unreadable", self._subject(path), error.strerror or str(error))
                continue
            sessions.add(session_id)
            transcript = parse_transcript(data)
            detail = damaged_transcript(transcript, cut=bool(data) and not data.endswith(b"\n"))
            if detail:
                self.report.finding("damaged-transcript", self._subject(path), detail)
            self.references.add_messages(session_id, transcript.messages)
            self.holders.add_transcript(session_id, transcript)
        return sessions

    def _check_orphans(self, sessions: set, transcripts: set) -> None:
        for session_id in sorted((transcripts | set(_session_dirs(self.data_dir.journals_root))) - sessions):
            runs = sum(1 for _, session_ids in self.holders.items() if session_id in session_ids)
            if runs and not self.data_dir.session_path(session_id).exists():
                self.report.finding("orphaned-runs", self._subject(self.data_dir.journals_dir(session_id)),
                                    f"{runs} run(s) of session {session_id}, which has no metadata "
                                    f"(sessions/{session_id}.json): no session list shows them")

    # ------------------------------------------------------------ the run index

    def _check_run_index(self) -> None:
        """Each run held by exactly one session is located there by its id; every entry of
        ``index/runs`` names a session that holds its run."""
        for run_id, session_ids in sorted(self.holders.items()):
            found = placement(run_id, session_ids, self.store.locate(run_id), f"index/runs/{run_id}")
            if found is None:
                continue
            kind, session_id, detail = found
            subject = self._run_subject(session_id, run_id)
            if kind == "duplicate-run":
                self.report.finding(kind, run_id, detail)
                continue
            if kind == "misplaced-run":
                self.report.finding(kind, subject, f"{detail}: move it there (an id that names a session is never "
                                                   "looked up in the index)")
                continue
            journal = self.journals.get((session_id, run_id))
            if journal is not None and journal.live:
                self.report.finding(kind, subject, detail, fix=lambda: _refuse("the run is live"))
            else:
                self.report.finding(kind, subject, detail, fix=lambda s=session_id, r=run_id: self._index_run(s, r))
        for run_id in sorted(_valid_names(self.store.runs_index)):
            path = self.store.runs_index / run_id
            target = _readlink(path)
            if run_id in self.holders or (is_valid_id(target) and self._young(path)):
                continue  # held somewhere: checked above; or a run being created
            detail = f"names session {target!r}, which holds no run {run_id}" if is_valid_id(target) \
                else f"names {target!r}, not a session id"
            self.report.finding("stale-index", self._subject(path), detail,
                                fix=lambda p=path, t=target, r=run_id: self._unlink_entry(p, t, r))

    def _run_subject(self, session_id: str, run_id: str) -> str:
        if (session_id, run_id) in self.journals:
            return self._subject(self.journals[(session_id, run_id)].path)
        return f"{self._subject(self.data_dir.transcript_path(session_id))}#{run_id}"

    def _index_run(self, session_id: str, run_id: str) -> str:
        with self._session_lock(session_id):
            if not self._holds(session_id, run_id):
                raise NotFixed(f"session {session_id} no longer holds it")
            if self._live(session_id, run_id):
                raise NotFixed("the run is live")
            atomic_symlink(session_id, self.store.runs_index / run_id)
        return f"index/runs/{run_id} -> {session_id}"

    def _unlink_entry(self, path, target, run_id: str) -> str:
        with self._session_lock(target):
            if is_valid_id(target) and self._holds(target, run_id):
                raise NotFixed(f"session {target} holds it now")
            if _readlink(path) != target:
                raise NotFixed("it changed meanwhile")
            unlink_quietly(path)
            fsync_dir(path.parent)
        return "removed"

    # ------------------------------------------------------------ active markers

    def _check_markers(self) -> None:
        """Markers name exactly the runs that have not ended (PROTOCOL 1.3's recovery
        visits them); a dead run is reported for the server's recovery to end."""
        active = self.store.active_index
        for (session_id, run_id), journal in sorted(self.journals.items()):
            if journal.live or journal.terminal:
                continue
            self.report.finding("unfinished-run", self._subject(journal.path),
                                "no terminal record and no writer: a server ends it (run.interrupted) when it "
                                "starts or when the run is read")
            target = _readlink(active / run_id)
            if target == session_id or len(self.holders.get(run_id)) > 1:
                continue
            detail = "no marker in index/active: a server's start-up recovery may not visit it" if target is None \
                else f"index/active/{run_id} names session {target!r}"
            self.report.finding("missing-marker", self._subject(journal.path), detail,
                                fix=lambda s=session_id, r=run_id: self._mark(s, r))
        for run_id in sorted(_valid_names(active)):
            path = active / run_id
            target = _readlink(path)
            journal = self.journals.get((target, run_id)) if is_valid_id(target) else None
            if journal is not None and (journal.live or not journal.terminal):
                continue  # live (or closing), or unfinished: reported above
            if journal is None and is_valid_id(target):
                if self.data_dir.journal_path(target, run_id).exists():
                    continue  # unreadable (reported), or created after the journals were read
                elsewhere = any(not other.terminal for key, other in self.journals.items() if key[1] == run_id)
                if self._young(path) or elsewhere:
                    continue  # being created; or unfinished elsewhere: re-pointed above
                if self.data_dir.unborn_journal_path(target, run_id).exists():
                    continue  # a creation: live, or the server's recovery removes both
            if journal is not None:
                detail = "the run has ended"
            elif is_valid_id(target):
                detail = f"no journal of run {run_id} in journals/{target}/"
            else:
                detail = f"names {target!r}, not a session id"
            self.report.finding("stale-marker", self._subject(path), detail,
                                fix=lambda p=path, t=target, r=run_id: self._unmark(p, t, r))

    def _mark(self, session_id: str, run_id: str) -> str:
        with self._session_lock(session_id):
            if not self.data_dir.journal_path(session_id, run_id).exists():
                raise NotFixed("its journal is gone")
            atomic_symlink(session_id, self.store.active_index / run_id)
        return f"index/active/{run_id} -> {session_id}"

    def _unmark(self, path, target, run_id: str) -> str:
        with self._session_lock(target):
            if _readlink(path) != target:
                raise NotFixed("it changed meanwhile")
            if is_valid_id(target):
                journal_path = self.data_dir.journal_path(target, run_id)
                if journal_path.exists():
                    if self._live(target, run_id):
                        raise NotFixed("the run is live")
                    entries = read_entries(journal_path)
                    if not (entries and is_terminal(entries[-1][0])):
                        raise NotFixed("the run has not ended")
                elif self.data_dir.unborn_journal_path(target, run_id).exists():
                    raise NotFixed("the run is being created")
            unlink_quietly(path)
            fsync_dir(path.parent)
        return "removed"

    def _check_reserve(self) -> None:
        path = self.store.reserve_path
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        if size < RESERVE_BYTES:
            self.report.finding("missing-reserve", self._subject(path),
                                f"{size} of {RESERVE_BYTES} bytes kept for terminal records (given back when the disk "
                                "was full): a server allocates it again when a run starts",
                                fix=self._allocate_reserve)

    def _allocate_reserve(self) -> str:
        if not self.store.ensure_reserve():
            raise NotFixed("no room for it")
        return f"{RESERVE_BYTES} bytes allocated"

    # ------------------------------------------------------------ helpers

    def _session_lock(self, session_id):
        """The session's lock (held while a run starts or the session is deleted); none for
        an entry naming no session that exists (no run can start there: its lock file is
        not made for nothing)."""
        if is_valid_id(session_id) and self.data_dir.session_path(session_id).exists():
            return self.store.session_lock(session_id)
        return contextlib.nullcontext()

    def _holds(self, session_id: str, run_id: str) -> bool:
        """Whether the session holds the run now: its journal, one being created, or its
        transcript."""
        return (self.data_dir.journal_path(session_id, run_id).exists()
                or self.data_dir.unborn_journal_path(session_id, run_id).exists()
                or run_id in transcript_run_ids(self.data_dir.transcript_path(session_id)))

    def _live(self, session_id: str, run_id: str) -> bool:
        try:
            return writer_alive_at(self.data_dir.journal_path(session_id, run_id))
        except FileNotFoundError:
            return False

    def _young(self, path) -> bool:
        try:
            return os.lstat(path).st_mtime > self.now - CREATION_GRACE_SECONDS
        except OSError:
            return False


def _refuse(reason: str):
    raise NotFixed(reason)


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _names(directory) -> list:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _valid_names(directory) -> list:
    return sorted(name for name in _names(directory) if is_valid_id(name))


def _session_dirs(journals_root) -> list:
    return [name for name in _valid_names(journals_root) if os.path.isdir(os.path.join(journals_root, name))]


def check(data_dir, report, references, now: float = None) -> set:
    """Check the file store of ``data_dir``; the paths of live runs' journals."""
    return FileCheck(data_dir, report, references, now).run()
