"""Branches (PROTOCOL 1.6): which runs a session's conversation consists of. Pure.

Runs are taken in start order; a run that ``replaces`` R cuts the active list at R (R
included) and is then appended, so the active branch always ends with the latest run.
Every run also has a parent: the run before it in the list when it was appended. Runs with
the same parent are versions of one turn (the "< 2/3 >" a client pages through).
"""


class RunTree:
    """The branch structure of one session's runs."""

    def __init__(self, runs):
        """``runs``: ``(run_id, replaces_or_None)`` pairs in start order."""
        self.order = []
        self.parent = {}
        self.children = {}  # parent run id (None: the first turn) -> [run_id, ...] in start order
        active = []
        position = {}
        for run_id, replaces in runs:
            if run_id in position or run_id in self.parent:
                continue  # a run listed twice (transcript and journal) counts once
            if replaces is not None and replaces in position:
                cut = position[replaces]
                for dropped in active[cut:]:
                    del position[dropped]
                del active[cut:]
            parent = active[-1] if active else None
            self.parent[run_id] = parent
            self.children.setdefault(parent, []).append(run_id)
            position[run_id] = len(active)
            active.append(run_id)
            self.order.append(run_id)
        self.active = active

    def __contains__(self, run_id) -> bool:
        return run_id in self.parent

    def versions(self, run_id: str) -> list:
        """The runs that are versions of the same turn as ``run_id`` (itself included)."""
        return self.children.get(self.parent.get(run_id), [run_id])

    def branch_through(self, run_id: str) -> list:
        """The branch that passes through ``run_id``: its ancestors, itself, then at each
        step the latest child (so the active branch is the branch through the last run)."""
        path = []
        node = run_id
        while node is not None:
            path.append(node)
            node = self.parent.get(node)
        path.reverse()
        node = run_id
        while self.children.get(node):
            node = self.children[node][-1]
            path.append(node)
        return path

    def before(self, run_id: str) -> list:
        """The active branch an agent sees before its run ``run_id`` (the last run)."""
        branch = self.branch_through(run_id)
        return branch[: branch.index(run_id)]


def page(branch: list, limit: int, before: str = None):
    """``(run_ids, has_more)``: the last ``limit`` runs of ``branch`` before ``before``.

    ValueError when ``before`` is not on the branch.
    """
    end = len(branch) if before is None else branch.index(before)
    start = max(0, end - limit)
    return branch[start:end], start > 0


def with_versions(messages: list, versions: list) -> list:
    """Mark a turn that has other versions: its user message lists them, itself included,
    in start order (``alternatives``)."""
    if len(versions) < 2 or not messages:
        return messages
    user = dict(messages[0], alternatives=list(versions))
    return [user, *messages[1:]]
