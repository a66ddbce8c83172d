"""Answering a run's approvals and clarifying questions from any device (PROTOCOL 1.1, docs/api.md)."""

from flask import Blueprint, jsonify

from hermes_web.core.services import service
from hermes_web.runs.decisions import (
    APPROVAL,
    QUESTION,
    AlreadySettled,
    DecisionExpired,
    DecisionNotFound,
    InvalidAnswer,
    NotJournaled,
)
from hermes_web.runs.manager import RunNotOwned
from hermes_web.store.metadata import NotFound
from hermes_web.web.errors import ApiError
from hermes_web.web.inputs import checked_id, json_body

blueprint = Blueprint("decisions", __name__, url_prefix="/api")

# kind -> (the body field, its error code, what it is called in messages, the 409 code)
_KINDS = {
    APPROVAL: ("choice", "invalid_choice", "approval", "already_resolved"),
    QUESTION: ("answer", "invalid_answer", "question", "already_answered"),
}


@blueprint.post("/runs/<run_id>/approvals/<approval_id>")
def answer_approval(run_id, approval_id):
    """``{"choice": ...}``, one of the request's choices: 200 once ``approval.resolved`` is journaled."""
    return _answer(run_id, APPROVAL, approval_id)


@blueprint.post("/runs/<run_id>/questions/<question_id>")
def answer_question(run_id, question_id):
    """``{"answer": "..."}``: 200 once ``question.answered`` is journaled."""
    return _answer(run_id, QUESTION, question_id)


def _answer(run_id: str, kind: str, decision_id: str):
    field, invalid_code, noun, settled_code = _KINDS[kind]
    checked_id(run_id, "run")
    checked_id(decision_id, noun)
    body = json_body()
    if field not in body:
        raise ApiError(400, invalid_code, f"the body must be a JSON object with {field!r}")
    redaction = service("redaction")
    try:
        record = service("runs").answer(run_id, kind, decision_id, body[field])
    except NotFound:
        raise ApiError(404, "run_not_found", f"no run {run_id}") from None
    except DecisionNotFound:
        raise ApiError(404, f"{noun}_not_found", f"run {run_id} asked no {noun} {decision_id}") from None
    except InvalidAnswer as error:
        raise ApiError(400, invalid_code, str(error)) from None
    except AlreadySettled as settled:
        record = redaction.value(_fields(settled.record))
        raise ApiError(409, settled_code, f"this {noun} was settled already (by {record.get('by')})", **record) from None
    except DecisionExpired:
        raise ApiError(409, "run_finished", f"the run ended before this {noun} was settled") from None
    except RunNotOwned:
        raise ApiError(409, "run_active_elsewhere", "another server process runs this turn", run_id=run_id) from None
    except NotJournaled:
        raise ApiError(503, "not_journaled", "the answer was taken but could not be recorded yet; reload to see it") from None
    # Always redacted: the answer echoes what a person typed.
    return jsonify(redaction.value(_fields(record)))


def _fields(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("type", "ts")}
