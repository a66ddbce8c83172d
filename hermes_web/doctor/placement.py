"""What both stores' checks judge the same way: where each run is held (its log or a
transcript) against where its id leads a lookup, and what a damaged transcript means.
Pure: the stores' checks gather the facts and carry out the fixes."""

from hermes_web.core.ids import is_valid_id, session_of_run


class Holders:
    """The sessions holding each run: by its log (journal, stream) or its transcript."""

    def __init__(self):
        self.sessions = {}  # run_id -> set of session ids

    def add(self, run_id: str, session_id: str) -> None:
        self.sessions.setdefault(run_id, set()).add(session_id)

    def add_transcript(self, session_id: str, transcript) -> None:
        for run_id in transcript.by_run:
            if is_valid_id(run_id):
                self.add(run_id, session_id)

    def __contains__(self, run_id) -> bool:
        return run_id in self.sessions

    def get(self, run_id: str) -> set:
        return self.sessions.get(run_id, set())

    def items(self):
        return sorted(self.sessions.items())


def placement(run_id: str, session_ids: set, located, index_name: str):
    """None when a lookup of ``run_id`` leads to the one session holding it; else
    ``(kind, session_id, detail)``. ``duplicate-run`` and ``misplaced-run`` (an id naming
    another session) cannot be indexed away; ``unindexed-run`` and ``misindexed-run`` are
    fixed by pointing ``index_name``'s entry at ``session_id``."""
    if located in session_ids and len(session_ids) == 1:
        return None
    session_id, *others = sorted(session_ids)
    if others:
        found = f"the one in {located}" if located else "none"
        return "duplicate-run", session_id, f"held by sessions {', '.join(sorted(session_ids))}; " \
                                            f"GET /api/runs/{run_id} finds {found}"
    carried = session_of_run(run_id)
    if carried is not None:
        return "misplaced-run", session_id, f"held by session {session_id}, but its id names session {carried}, " \
                                            f"where GET /api/runs/{run_id} looks for it"
    if located is None:
        return "unindexed-run", session_id, f"not in {index_name}: GET /api/runs/{run_id} cannot find it"
    return "misindexed-run", session_id, f"{index_name} names session {located}"


def damaged_transcript(transcript, cut: bool = False):
    """The detail of a transcript with lines that are not messages (None when whole)."""
    if not transcript.damaged:
        return None
    last = "; its last line has no newline" if cut else ""
    return f"{transcript.damaged} line(s) that do not decode to a message{last}: the view skips them, " \
           "compaction leaves the session alone"
