"""What ``hermes-web doctor`` prints: one tab-separated line per finding, as it is found,
then one summary line; and the exit code (docs/doctor.md).

A finding is ``<kind>\\t<subject>\\t<detail>``: the kind is one of :data:`KINDS`, the subject
a path relative to the data dir (absolute outside it) or a Redis key. With ``--fix`` a
finding that can be repaired is repaired at once, and its line gets a fourth field:
``fixed: <what was done>`` or ``not fixed: <why>``.
"""

import collections
import os

# Every kind a finding can have, and what it means (docs/doctor.md repeats this table).
KINDS = {
    "unindexed-run": "a run its id does not locate: GET /api/runs/<id> cannot find it (fixed: indexed)",
    "misindexed-run": "the run index names another session than the one holding the run (fixed: re-pointed)",
    "misplaced-run": "a run whose id names another session than the one holding it",
    "duplicate-run": "one run id in two sessions",
    "stale-index": "an index entry of a run or session that does not exist (fixed: removed)",
    "stale-marker": "an active marker of a run that has ended or does not exist (fixed: removed)",
    "missing-marker": "an unfinished run that no active marker names (fixed: marked)",
    "unfinished-run": "a run without a terminal record whose writer is gone",
    "unlisted-session": "session metadata that the session list does not name (fixed: listed)",
    "orphaned-runs": "runs of a session that has no metadata",
    "torn-tail": "a journal whose last line has no newline",
    "damaged-line": "journal lines that do not decode to a record",
    "damaged-transcript": "transcript lines that do not decode to a message",
    "damaged-metadata": "session metadata that does not decode",
    "unreferenced-upload": "an upload that no message references",
    "loose-mode": "a file looser than 0600 or a directory looser than 0700 (fixed: tightened)",
    "low-space": "less free space than the reserve kept for terminal records",
    "missing-reserve": "the reserve kept for terminal records is not allocated",
    "damaged-stream": "a Durable Stream whose settings are missing or do not decode",
    "stray-stream-folder": "a folder a stream create or delete left behind (fixed: removed)",
    "unreadable": "something the check could not read",
}


class NotFixed(Exception):
    """A repair that was not made; the message says why (the run came alive, it changed)."""


class Report:
    """Prints findings as they come, tries their fixes with ``--fix``, and sums them up."""

    def __init__(self, out, fix: bool, root):
        self.out = out
        self.fixing = fix
        self.root = os.path.abspath(root)
        self.counts = collections.Counter()
        self.fixed = 0
        self.fixable = 0

    def subject(self, path) -> str:
        """``path`` as a finding names it: relative to the data dir when inside it."""
        path = os.path.abspath(path)
        if path == self.root:
            return "."
        if path.startswith(self.root + os.sep):
            return path[len(self.root) + 1:]
        return path

    def finding(self, kind: str, subject: str, detail: str, fix=None) -> None:
        """One finding. ``fix`` (a callable returning what it did, or raising NotFixed) is
        called with ``--fix``; without, the finding counts as fixable."""
        assert kind in KINDS, kind
        fields = [kind, _field(subject), _field(detail)]
        if fix is not None:
            if self.fixing:
                try:
                    fields.append("fixed: " + _field(fix()))
                    self.fixed += 1
                except NotFixed as reason:
                    fields.append(f"not fixed: {_field(str(reason))}")
                except OSError as error:
                    fields.append(f"not fixed: {_field(error.strerror or str(error))}")
            else:
                self.fixable += 1
        self.counts[kind] += 1
        self.print("\t".join(fields))

    def print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    @property
    def found(self) -> int:
        return sum(self.counts.values())

    @property
    def left(self) -> int:
        return self.found - self.fixed

    def summary(self, target: str) -> str:
        """``summary\\t<target>\\t<counts>``: the last line of every check."""
        if not self.found:
            return f"summary\t{_field(target)}\tno findings"
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.counts.items()))
        if self.fixing:
            outcome = f"{self.fixed} fixed, {self.left} left"
        else:
            outcome = f"{self.fixable} fixable with --fix"
        return f"summary\t{_field(target)}\t{self.found} finding(s): {kinds}; {outcome}"

    @property
    def exit_code(self) -> int:
        """0 when nothing is left to do (clean, or everything found was fixed), else 1."""
        return 1 if self.left else 0


def _field(text) -> str:
    """One field of a line: tabs and line breaks (a hand-made file name) become spaces."""
    return " ".join(str(text).replace("\t", " ").splitlines())
