"""Partners: /v1/partner/... — with a citizen's consent, "does this person qualify for perk P?"

An API key (header `X-API-Key`) names the partner. The answer is yes / no / pending, a decision
id and when to ask again; never a score, band, reason, record or person key. Every answer is in
the audit log, which the citizen can read. Rate-limited per key (service/api/limits.py).
"""

from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import Blueprint

from service.api.partner_front import DecisionsInFront
from service.api.partner_schemas import (
    BatchRequestSchema,
    BatchResponseSchema,
    EligibilityRequestSchema,
    EligibilitySchema,
)
from service.api.schemas import ErrorEnvelopeSchema
from service.rights import audit
from service.rights.auth import partner_id
from service.rights.eligibility import Refusal, decide

blp = Blueprint("partner", __name__, url_prefix="/v1/partner",
                description="Partners ask, with a citizen's consent, whether a perk applies")

_ERRORS = {
    401: "No API key, or not a valid one",
    429: "Too many requests for this API key; see Retry-After",
}


@blp.record_once
def _install_decisions_in_front(state) -> None:
    """A single decision is answered in front of Flask when it can be (`api.partner_front`)."""
    state.app.wsgi_app = DecisionsInFront(state.app, state.app.wsgi_app)


@blp.before_request
def _authenticate() -> None:
    """The key is checked before the body, so an anonymous caller learns nothing from a 422.

    On PostgreSQL the request takes one autocommit connection here and keeps it: the key
    lookup (when the worker does not remember the key: `auth.partner_id`), the consents read
    and the audit append all use it (one checkout, no BEGIN/ROLLBACK). SQLite takes a
    connection per step, as its transactions lock the file.

    It runs once a request: the app-wide hook (`authenticate_before_body`) comes first, and
    this blueprint's own hook, which Flask runs after it, finds the work done."""
    if "partner_id" in g:
        return
    engine = current_app.extensions["osmanthus.engine"]
    if engine.dialect.name == "postgresql":
        g.partner_connection = audit.autocommit(engine).connect()
    g.partner_id = partner_id(g.get("partner_connection"))


def authenticate_before_body() -> None:
    """The app-wide hook (service/app.py) that checks a partner's key before anything reads
    the body: the rate limiter counts a batch's questions, which means parsing it."""
    if request.blueprint == blp.name:
        _authenticate()


@blp.teardown_request
def _release(_error: BaseException | None) -> None:
    connection = g.pop("partner_connection", None)
    if connection is not None:
        connection.close()


def _document_errors(*statuses: int):
    def decorate(view):
        for status in statuses:
            view = blp.alt_response(status, schema=ErrorEnvelopeSchema,
                                    description=_ERRORS.get(status, ""))(view)
        return view
    return decorate


@blp.route("/eligibility", methods=["POST"])
@blp.arguments(EligibilityRequestSchema)
@blp.response(200, EligibilitySchema)
@blp.alt_response(403, schema=ErrorEnvelopeSchema, description=(
    "No valid consent for this perk: the token is not valid or has expired, the consent was "
    "revoked, expired or given to another partner, it does not cover this perk, or the perk is "
    "not this partner's. `code` says which."))
@blp.alt_response(503, schema=ErrorEnvelopeSchema,
                  description="The person has no score yet and none can be computed now")
@_document_errors(401, 429)
def eligibility(question: dict):
    """Whether the person behind a consent token qualifies for one of this partner's perks."""
    result = decide(current_app, g.partner_id,
                    [(question["consent_token"], question["perk_id"])],
                    connection=g.get("partner_connection"))[0]
    if isinstance(result, Refusal):
        raise result.as_error()
    return result


@blp.route("/eligibility/batch", methods=["POST"])
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema)
@_document_errors(401, 429)
def eligibility_batch(batch: dict):
    """Up to 1,000 questions at once; each result is an answer or `error: {code, message}`
    (the single form's codes), in the order asked. Each question counts against the limit."""
    questions = [(item["consent_token"], item["perk_id"]) for item in batch["requests"]]
    results = decide(current_app, g.partner_id, questions,
                     connection=g.get("partner_connection"))
    return {"results": [
        {"error": {"code": r.code, "message": r.message}} if isinstance(r, Refusal) else r
        for r in results
    ]}
