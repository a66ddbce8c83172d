"""Decisions a person makes while a run waits: approvals and clarifying questions.

An agent asks through its request's ``decisions`` (:class:`RunDecisions`); the asking thread
blocks until the question is settled, by a person through the API (``by: "user"``), by the
timeout (``"timeout"``) or by a cancel (``"cancel"``). The run's journal says what was asked
(``approval.requested``, ``question.asked``) and how it was settled (``approval.resolved``,
``question.answered``): exactly one settling record per request, written before the API
answers, so every viewer on every device sees the same decision. Records: docs/journal-format.md.

Only the process that runs the run holds its ``RunDecisions``; the settling record is
written through the run's own writer (``emit``), so the journal keeps its single writer.
"""

import dataclasses
import secrets
import threading
import time

APPROVAL = "approval"
QUESTION = "question"
DENY = "deny"
# What a dangerous command is offered by default; a timeout or cancel always means DENY.
DEFAULT_APPROVAL_CHOICES = ("once", "session", "always", DENY)
DEFAULT_TIMEOUT_SECONDS = 300.0
MAX_ANSWER_CHARS = 4000
MAX_CHOICES = 16
MAX_CHOICE_CHARS = 200
# How often a waiting agent looks at its run's cancel flag (the Agent contract: 100 ms).
POLL_SECONDS = 0.1
# How long the API waits for the asking thread to journal a person's answer.
ANSWER_WAIT_SECONDS = 5.0

_RECORDS = {
    APPROVAL: ("approval.requested", "approval.resolved", "approval_id", "choice"),
    QUESTION: ("question.asked", "question.answered", "question_id", "answer"),
}


class DecisionNotFound(LookupError):
    """No approval or question of that id was asked in this run."""


class AlreadySettled(Exception):
    """The request was settled already; ``record`` is its settling record."""

    def __init__(self, record: dict):
        super().__init__(record)
        self.record = record


class InvalidAnswer(ValueError):
    """The answer is not one the request accepts (the message says which are)."""


class DecisionExpired(Exception):
    """The run ended (its server died) while the request was still waiting: nobody can
    answer it any more."""


class NotJournaled(Exception):
    """The answer was accepted but its record was not written in time (a stuck writer)."""


def new_decision_id(kind: str) -> str:
    """An id for an approval (``apr_…``) or a question (``q_…``) within a run."""
    return ("apr_" if kind == APPROVAL else "q_") + secrets.token_hex(6)


@dataclasses.dataclass(frozen=True)
class Settled:
    """How a request ended: the choice (or answer) and who made it."""

    value: str
    by: str


class _Pending:
    __slots__ = ("kind", "decision_id", "choices", "default", "woken", "written", "value", "by", "claimed")

    def __init__(self, kind, decision_id, choices, default):
        self.kind = kind
        self.decision_id = decision_id
        self.choices = choices
        self.default = default
        self.woken = threading.Event()  # settled: the asker may go on
        self.written = threading.Event()  # its settling record is in the journal
        self.value = None
        self.by = None
        self.claimed = False  # someone is writing the settling record


class RunDecisions:
    """One run's approvals and questions.

    ``emit(record)`` appends a record to the run's journal (thread-safe); ``cancel`` is the
    run's cancel flag; a request not settled within ``timeout_seconds`` is settled by the
    timeout (an approval as ``deny``, a question with an empty answer).
    """

    def __init__(self, emit, cancel: threading.Event, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS):
        self._emit = emit
        self._cancel = cancel
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._pending = {}  # decision_id -> _Pending
        self._settled = {}  # decision_id -> (kind, settling record)
        self._closed = False

    # ------------------------------------------------------------ the agent's side

    def ask_approval(self, title: str, detail: str = "", choices=DEFAULT_APPROVAL_CHOICES, call_id: str = None) -> str:
        """Ask a person to approve something; block until settled; return the choice.

        ``deny`` is always among the choices: it is what a timeout or a cancel decides.
        """
        choices = _checked_choices(choices)
        if DENY not in choices:
            choices.append(DENY)
        record = {"title": _text(title, MAX_ANSWER_CHARS), "detail": _text(detail, MAX_ANSWER_CHARS), "choices": choices}
        return self._ask(APPROVAL, record, choices, DENY, call_id).value

    def ask_question(self, question: str, choices=(), call_id: str = None) -> str:
        """Ask a clarifying question; block until settled; return the answer ("" when the
        timeout or a cancel settled it). A person may answer with any text, not only a choice."""
        choices = _checked_choices(choices)
        record = {"question": _text(question, MAX_ANSWER_CHARS), "choices": choices}
        return self._ask(QUESTION, record, choices, "", call_id).value

    def _ask(self, kind: str, fields: dict, choices: list, default: str, call_id) -> Settled:
        asked_type, _, id_field, _ = _RECORDS[kind]
        pending = _Pending(kind, new_decision_id(kind), choices, default)
        with self._lock:
            if self._closed or self._cancel.is_set():
                return Settled(default, "cancel")  # the run is ending: nothing is asked any more
            self._pending[pending.decision_id] = pending
        record = {"type": asked_type, id_field: pending.decision_id}
        if call_id:
            record["call_id"] = call_id
        record.update(fields)
        try:
            self._emit(record)
        except BaseException:
            with self._lock:
                self._pending.pop(pending.decision_id, None)
            raise
        deadline = time.monotonic() + self.timeout_seconds
        while not pending.woken.wait(POLL_SECONDS):
            if self._cancel.is_set():
                self._settle(pending, default, "cancel")
            elif time.monotonic() >= deadline:
                self._settle(pending, default, "timeout")
        self._write_settled(pending)
        return Settled(pending.value, pending.by)

    # ------------------------------------------------------------ a person's side

    def answer(self, kind: str, decision_id: str, value, wait_seconds: float = ANSWER_WAIT_SECONDS) -> dict:
        """Settle a pending request with a person's answer; return its settling record once
        it is journaled.

        Raises DecisionNotFound, AlreadySettled (with the record), InvalidAnswer, or
        NotJournaled when the record could not be written within ``wait_seconds``.
        """
        with self._lock:
            pending = self._pending.get(decision_id)
            if pending is None or pending.kind != kind:
                settled = self._settled.get(decision_id)
                if settled is not None and settled[0] == kind:
                    raise AlreadySettled(settled[1])
                raise DecisionNotFound(decision_id)
            value = _checked_answer(pending, value)
            if pending.by is not None:
                won = False
            else:
                pending.value, pending.by, won = value, "user", True
                pending.woken.set()
        if not won:
            pending.written.wait(wait_seconds)
            raise AlreadySettled(self._settling_record(pending))
        if not pending.written.wait(wait_seconds):
            raise NotJournaled(decision_id)
        return self._settling_record(pending)

    def pending(self) -> list:
        """Ids of the requests still waiting for a decision."""
        with self._lock:
            return [decision_id for decision_id, pending in self._pending.items() if pending.by is None]

    def close(self) -> None:
        """Settle every pending request as cancelled and journal it (the run is ending; called
        before its terminal record). Nothing may be asked afterwards."""
        with self._lock:
            self._closed = True
            waiting = list(self._pending.values())
        for pending in waiting:
            self._settle(pending, pending.default, "cancel")
            self._write_settled(pending)

    # ------------------------------------------------------------ settling

    def _settle(self, pending: _Pending, value: str, by: str) -> None:
        with self._lock:
            if pending.by is None:
                pending.value, pending.by = value, by
        pending.woken.set()

    def _write_settled(self, pending: _Pending) -> None:
        """Journal the settling record once, whichever thread gets here first."""
        with self._lock:
            if pending.claimed:
                mine = False
            else:
                pending.claimed = mine = True
        if not mine:
            return
        record = self._settling_record(pending)
        try:
            self._emit(dict(record))
        finally:
            with self._lock:
                self._pending.pop(pending.decision_id, None)
                self._settled[pending.decision_id] = (pending.kind, record)
            pending.written.set()

    @staticmethod
    def _settling_record(pending: _Pending) -> dict:
        _, settled_type, id_field, value_field = _RECORDS[pending.kind]
        return {"type": settled_type, id_field: pending.decision_id, value_field: pending.value, "by": pending.by}


class NoDecisions:
    """For an agent run without a person to ask (a request built outside a run): every
    approval is denied and every question goes unanswered, at once."""

    def ask_approval(self, title, detail="", choices=DEFAULT_APPROVAL_CHOICES, call_id=None) -> str:
        return DENY

    def ask_question(self, question, choices=(), call_id=None) -> str:
        return ""


def _checked_choices(choices) -> list:
    if isinstance(choices, str) or not all(isinstance(choice, str) and choice for choice in choices):
        raise ValueError("choices must be a list of non-empty strings")
    checked = list(dict.fromkeys(choice[:MAX_CHOICE_CHARS] for choice in choices))
    if len(checked) > MAX_CHOICES:
        raise ValueError(f"at most {MAX_CHOICES} choices")
    return checked


def _checked_answer(pending: _Pending, value) -> str:
    if pending.kind == APPROVAL:
        if not isinstance(value, str) or value not in pending.choices:
            raise InvalidAnswer(f"choice must be one of: {', '.join(pending.choices)}")
        return value
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ANSWER_CHARS:
        raise InvalidAnswer(f"answer must be a non-empty string of at most {MAX_ANSWER_CHARS} characters")
    return value


def _text(value, limit: int) -> str:
    return (value if isinstance(value, str) else str(value or ""))[:limit]


def settled_in_view(assistant: dict, kind: str, decision_id: str) -> dict:
    """For a finished run: raise what answering ``decision_id`` meets, from the run's folded
    assistant message (AlreadySettled with its record, DecisionExpired, DecisionNotFound)."""
    _, settled_type, id_field, value_field = _RECORDS[kind]
    for entry in assistant.get("approvals" if kind == APPROVAL else "questions") or ():
        if entry.get("id") == decision_id:
            if entry.get("status") == "expired":
                raise DecisionExpired(decision_id)
            raise AlreadySettled({"type": settled_type, id_field: decision_id, value_field: entry.get(value_field),
                                  "by": entry.get("by")})
    raise DecisionNotFound(decision_id)
