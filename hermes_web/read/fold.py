"""The fold: journal records -> session-view messages. Pure; the one used everywhere.

The session view, compaction and the tests all fold with :class:`RunFold`, so a run looks
the same live, after a reload and after compaction. Record types: PROTOCOL 1.1 and
docs/journal-format.md.
"""

from hermes_web.core.attachment_markers import legacy_attachment_chips
from hermes_web.core.records import TERMINAL_TYPES
from hermes_web.read.branches import RunTree, with_versions

TERMINAL_STATUS = {
    "run.completed": "completed",
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "run.interrupted": "interrupted",
}


_ANY_CALL = object()


def attachment_url(session_id: str, attachment_id: str) -> str:
    return f"/api/sessions/{session_id}/attachments/{attachment_id}"


class _Text:
    """Appended text, joined lazily so folding N deltas stays O(N) overall."""

    __slots__ = ("_parts",)

    def __init__(self):
        self._parts = []

    def append(self, text: str) -> None:
        if text:
            self._parts.append(text)

    def value(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""


class RunFold:
    """Accumulates one run's records; :meth:`messages` snapshots its user and assistant turn.

    Incremental: applying records one by one and reading :meth:`messages` at any point
    gives the same result as folding that prefix from scratch.
    """

    def __init__(self, run_id: str = None, session_id: str = None):
        # Seeded from where the journal lives, so a run whose first line is damaged still
        # shows as a turn of its own.
        self.run_id = run_id
        self.session_id = session_id
        self.started = None
        self.status = None
        self.title = None
        self.error = None
        self.reason = None
        self.cancelled_by = None
        self.usage = None
        self.finished_at = None
        self.text = _Text()
        self.reasoning = _Text()
        self.tool_calls = {}  # call_id -> dict, insertion-ordered: the order they began
        self.approvals = {}  # approval_id -> dict, in the order they were asked
        self.questions = {}  # question_id -> dict, likewise
        self.activity = None  # what the running turn waits on now (the last status record)
        self.records = 0
        self.damaged = 0
        self.offset = 0

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status != "running"

    def apply(self, record, end_offset: int) -> None:
        """Fold one record that ends at journal byte ``end_offset``.

        Unknown types are ignored (forward compatibility); ``None`` (or the stream's
        ``record.damaged`` frame) stands for a damaged line (PROTOCOL 1.4), which is skipped
        and counted.
        """
        self.records += 1
        self.offset = end_offset
        if record is None or record.get("type") == "record.damaged":
            self.damaged += 1
            if self.status is None:
                self.status = "running"
            return
        kind = record.get("type")
        if kind == "run.started":
            self.run_id = record.get("run_id") or self.run_id
            self.session_id = record.get("session_id") or self.session_id
            self.started = record
            if self.status is None:
                self.status = "running"
        elif kind == "text.delta":
            self.text.append(record.get("text", ""))
        elif kind == "reasoning.delta":
            self.reasoning.append(record.get("text", ""))
        elif kind == "tool.started":
            call_id = record.get("call_id")
            self.tool_calls[call_id] = {
                "id": call_id,
                "name": record.get("name"),
                "args": record.get("args"),
                "status": "running",
                "result": None,
                "is_error": False,
                "duration_ms": None,
            }
        elif kind == "status":
            state = record.get("state")
            if isinstance(state, str) and state:
                detail = record.get("detail")
                self.activity = {"state": state, "detail": detail if isinstance(detail, str) else "",
                                 "call_id": record.get("call_id"), "since": record.get("ts")}
        elif kind == "tool.output":
            call = self.tool_calls.get(record.get("call_id"))
            if call is not None:
                call["result"] = (call["result"] or "") + record.get("text", "")
        elif kind == "tool.finished":
            self._settle_activity("running_tool", record.get("call_id"))
            call = self.tool_calls.get(record.get("call_id"))
            if call is not None:
                is_error = bool(record.get("is_error"))
                call.update(
                    status="error" if is_error else "done",
                    result=record.get("result"),
                    is_error=is_error,
                    duration_ms=record.get("duration_ms"),
                )
        elif kind == "approval.requested":
            approval_id = record.get("approval_id")
            self.approvals[approval_id] = {
                "id": approval_id,
                "call_id": record.get("call_id"),
                "title": record.get("title"),
                "detail": record.get("detail"),
                "choices": _strings(record.get("choices")),
                "status": "pending",
                "choice": None,
                "by": None,
            }
        elif kind == "approval.resolved":
            self._settle_activity("waiting_for_approval")
            approval = self.approvals.get(record.get("approval_id"))
            if approval is not None:
                approval.update(status="resolved", choice=record.get("choice"), by=record.get("by"))
        elif kind == "question.asked":
            question_id = record.get("question_id")
            self.questions[question_id] = {
                "id": question_id,
                "call_id": record.get("call_id"),
                "question": record.get("question"),
                "choices": _strings(record.get("choices")),
                "status": "pending",
                "answer": None,
                "by": None,
            }
        elif kind == "question.answered":
            self._settle_activity("waiting_for_answer")
            question = self.questions.get(record.get("question_id"))
            if question is not None:
                question.update(status="resolved", answer=record.get("answer"), by=record.get("by"))
        elif kind == "title":
            self.title = record.get("title")
        elif kind == "usage":
            self.usage = {
                "input_tokens": record.get("input_tokens"),
                "output_tokens": record.get("output_tokens"),
            }
        elif kind in TERMINAL_TYPES:
            self.status = TERMINAL_STATUS[kind]
            self.finished_at = record.get("ts")
            if kind == "run.failed":
                self.error = record.get("error")
            elif kind == "run.interrupted":
                self.reason = record.get("reason")
            elif kind == "run.cancelled":
                self.cancelled_by = record.get("by")
        if self.finished:
            self.activity = None  # nothing is awaited any more
            # A terminal run has no running tool left: the card shows how it ended.
            for call in self.tool_calls.values():
                if call["status"] == "running":
                    call["status"] = "error"
                    call["is_error"] = True
                    if call["result"] is None:
                        call["result"] = f"not finished: run {self.status}"
            # Nobody can answer a request of a run that ended (its server died) any more.
            for request in (*self.approvals.values(), *self.questions.values()):
                if request["status"] == "pending":
                    request["status"] = "expired"

    def _settle_activity(self, state: str, call_id=_ANY_CALL) -> None:
        """The wait the activity names is over (a tool finished, a person decided)."""
        activity = self.activity
        if activity is not None and activity["state"] == state and (call_id is _ANY_CALL or activity["call_id"] == call_id):
            self.activity = None

    def messages(self) -> list:
        """The run as ``[user_message, assistant_message]`` (fresh dicts)."""
        if self.started is None and not (self.damaged and self.run_id):
            return []
        started = self.started or {}
        user = started.get("user") or {}
        run_id = self.run_id
        session_id = self.session_id
        attachments = [
            {
                "id": item.get("id"),
                "name": item.get("name"),
                "mime": item.get("mime"),
                "size": item.get("size"),
                "url": attachment_url(session_id, item.get("id")),
            }
            for item in user.get("attachments") or []
            if isinstance(item, dict)
        ]
        # Older transcripts name their files only in a marker in the text: show those too.
        attachments.extend(legacy_attachment_chips(session_id, user.get("text")))
        user_message = {
            "id": user.get("id") or f"{run_id}-user",
            "role": "user",
            "run_id": run_id,
            "text": user.get("text", ""),
            "attachments": attachments,
            "created_at": started.get("ts"),
        }
        if started.get("replaces"):
            user_message["replaces"] = started["replaces"]
        assistant_message = {
            "id": f"{run_id}-assistant",
            "role": "assistant",
            "run_id": run_id,
            "status": self.status,
            "text": self.text.value(),
            "reasoning": self.reasoning.value(),
            "tool_calls": [dict(call) for call in self.tool_calls.values()],
            "agent": started.get("agent"),
            "error": self.error,
            "reason": self.reason,
            "usage": self.usage,
            "created_at": started.get("ts"),
            "finished_at": self.finished_at,
            # The journal position this message reflects; survives compaction, so the
            # session view's cursor is the same before and after it.
            "cursor": f"{run_id}:{self.offset}",
        }
        if self.approvals:
            assistant_message["approvals"] = [dict(item, choices=list(item["choices"])) for item in self.approvals.values()]
        if self.questions:
            assistant_message["questions"] = [dict(item, choices=list(item["choices"])) for item in self.questions.values()]
        if self.damaged:
            assistant_message["damaged"] = self.damaged
        if self.activity is not None:
            assistant_message["activity"] = dict(self.activity)
        return [user_message, assistant_message]


def _strings(value) -> list:
    """A record's ``choices``: its strings, in order (anything else is not a choice)."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def fold(entries) -> list:
    """Fold ``(record, end_offset)`` pairs of one or more consecutive runs into messages.

    Each run begins with ``run.started``; offsets are positions in that run's journal.
    """
    return [message for run in _runs_of(entries) for message in run.messages()]


def fold_session(entries) -> list:
    """Like :func:`fold`, for a session: only its active branch, each turn with other
    versions marked (PROTOCOL 1.6). What a session view shows of the same runs."""
    runs = {run.run_id: run for run in _runs_of(entries)}
    tree = RunTree((run_id, (run.started or {}).get("replaces")) for run_id, run in runs.items())
    return [message for run_id in tree.active for message in with_versions(runs[run_id].messages(), tree.versions(run_id))]


def _runs_of(entries) -> list:
    runs = []
    for record, end_offset in entries:
        if record is not None and record.get("type") == "run.started":
            runs.append(RunFold())
        if runs:
            runs[-1].apply(record, end_offset)
    return runs
