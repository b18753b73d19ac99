"""Citizens: /v1/me/... — a citizen's own score, reasons, records, perks, disputes, review,
consents and access log.

Every route takes the person key from the citizen's token (`citizen_key()`, read once per
request, before any input), never from the path, so a token reaches only its own person's
data; an id of someone else's dispute or consent is a 404, exactly as if it did not exist.
The citizen's own reads are not audited (the log is of reads by others); what they change —
disputes, consents, review requests — is.

The score page is the one page everyone opens, so a cached one is answered in front of Flask
(`CachedScorePages`, a WSGI layer this blueprint installs on its app): with a citizen token that
PyJWT accepts and a page in the cache, the bytes go straight out — the same status,
body and Content-Type the route gives, without Flask's request context, the limiter's checks
(no limit applies to citizens) and flask-smorest's wrappers, which were most of a cached
page's cost. Anything else (no or odd token, no cached page, HEAD, a query the route would
refuse) goes to Flask unchanged, which answers it as always.
"""

from __future__ import annotations

import json

from flask import Response, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.limits import CITIZEN_COUNTED
from service.api.me_advice_schemas import AdvicePageSchema
from service.api.me_schemas import (
    AccessLogQuerySchema,
    ConsentGrantedSchema,
    ConsentInSchema,
    ConsentSchema,
    DisputeInSchema,
    DisputeOpenedSchema,
    DisputeSchema,
    ExplanationSchema,
    LanguageHeaderSchema,
    PerksPageSchema,
    RecordsPageSchema,
    RepairInSchema,
    RepairSchema,
    ReviewInSchema,
    ReviewSchema,
    ScorePageSchema,
)
from service.api.schemas import ErrorEnvelopeSchema
from service.api.transparency_schemas import AccessLogSchema
from service.base import clock
from service.base.cache import page_key
from service.base.errors import ApiError
from service.rights import consents, disputes, pages, repair, review
from service.rights.auth import citizen_key, citizen_of

blp = Blueprint("me", __name__, url_prefix="/v1/me",
                description="A citizen's own data (a citizen token; no person id in any path)")

LANGUAGES = ("zh", "en")
PAGE_TTL = 60  # seconds; a re-score deletes the page at once, the TTL only bounds a stale one
ERRORS = {
    401: "No valid citizen token", 403: "A token, but not a citizen's",
}
SIGN_IN_DOWN = ("The city's OpenID Connect provider cannot be reached to check its token "
                "(only with a provider configured; `Retry-After` says when to try again)")


def _errors(*statuses: int, **described: str):
    """Document the error answers of a route (all in the one error envelope)."""
    texts = {**ERRORS, 404: "Not found (or not yours)", 409: "Conflicts with the current state",
             422: "Invalid input; `errors` names each field",
             503: f"No model is loaded; or: {SIGN_IN_DOWN[0].lower()}{SIGN_IN_DOWN[1:]}"}

    def wrap(view):
        for status in (401, 403, *statuses):
            view = blp.alt_response(status, schema=ErrorEnvelopeSchema, description=described.get(
                f"s{status}", texts[status]))(view)
        if 503 not in statuses:  # every route checks the token, and a provider's may be down
            view = blp.alt_response(503, schema=ErrorEnvelopeSchema,
                                    description=SIGN_IN_DOWN)(view)
        return view

    return wrap


class CachedScorePages:
    """WSGI: `GET /v1/me/score` with a cached page → that page; anything else → `wrapped`."""

    PATH = "/v1/me/score"
    MISSED = "osmanthus.page_missed"  # environ key: the page key just found missing

    def __init__(self, app, wrapped) -> None:
        self.app, self.wrapped = app, wrapped

    def __call__(self, environ, start_response):
        body = self._cached(environ) if environ.get("PATH_INFO") == self.PATH else None
        if body is None:
            return self.wrapped(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def _cached(self, environ) -> bytes | None:
        header = environ.get("HTTP_AUTHORIZATION") or ""
        if environ.get("REQUEST_METHOD") != "GET" or header[:7].lower() != "bearer ":
            return None
        extensions = self.app.extensions
        try:
            person_key = citizen_of(extensions["osmanthus.config"], header)
        except ApiError:
            return None  # Flask refuses it, and says why
        count = extensions.get("osmanthus.citizen_limit")
        if count is not None:
            wait = environ[CITIZEN_COUNTED] = count(header)  # Flask does not count it again
            if wait:
                return None  # Flask answers the 429
        cache = extensions["osmanthus.cache"]
        if not cache.healthy:
            return None  # Redis in trouble: let the route alone wait on it, not twice
        key = page_key(extensions["osmanthus.model"].version or "-", person_key,
                       clock.today(self.app))
        body = cache.get(key)
        if body is None:
            environ[self.MISSED] = key  # the route need not ask Redis again
        return body


@blp.record_once
def _install_cached_pages(state) -> None:
    state.app.wsgi_app = CachedScorePages(state.app, state.app.wsgi_app)


@blp.before_request
def _authenticate() -> None:
    """Who is asking, before any input is read: an anonymous request is a 401 even when its
    body is also bad."""
    g.person_key = citizen_key()


def me() -> str:
    """The person key of the citizen whose token came with this request."""
    return g.person_key


def language() -> str:
    """`zh` or `en` from Accept-Language, by q-value; a regional tag (zh-CN, en-GB) counts as
    its language; anything else, or nothing, means zh."""
    for value, quality in request.accept_languages:  # highest quality first
        if quality <= 0:
            continue
        tag = value.split("-", 1)[0].lower()
        if tag in LANGUAGES:
            return tag
        if tag == "*":
            return "zh"
    return "zh"


def _app():
    return current_app._get_current_object()  # noqa: SLF001 - the app, not its proxy


def _engine():
    return current_app.extensions["osmanthus.engine"]


def _today():
    return clock.today(_app())


def _now():
    return clock.now(_app())


@blp.route("/score")
@blp.response(200, ScorePageSchema)
@_errors(503)
def get_score():
    """Your score, its band, the model version, the as-of date, and your trend."""
    person_key = me()
    cache = current_app.extensions["osmanthus.cache"]
    key = page_key(current_app.extensions["osmanthus.model"].version or "-", person_key,
                   _today())
    body = None if request.environ.get(CachedScorePages.MISSED) == key else cache.get(key)
    if body is None:
        page = ScorePageSchema().dump(pages.score_page(_app(), person_key))
        body = json.dumps(page, ensure_ascii=False).encode()
        cache.set(key, body, ttl=PAGE_TTL)
    return Response(body, status=200, mimetype="application/json")


@blp.route("/explanation")
@blp.arguments(LanguageHeaderSchema, location="headers", as_kwargs=True)
@blp.response(200, ExplanationSchema)
@_errors(503)
def get_explanation(**_headers):
    """Why: base points and each reason's points, in Chinese and English."""
    return pages.explanation(_app(), me(), language())


@blp.route("/records")
@blp.arguments(LanguageHeaderSchema, location="headers", as_kwargs=True)
@blp.response(200, RecordsPageSchema)
@_errors()
def get_records(**_headers):
    """Every record of yours, whether it counts, and if not, why."""
    return pages.records_page(_app(), me(), language())


@blp.route("/perks")
@blp.response(200, PerksPageSchema)
@_errors(503)
def get_perks():
    """Which perks you have; for a locked one, the points it needs and which of your records,
    if cleared, would unlock it."""
    return pages.perks_page(_app(), me())


@blp.route("/advice")
@blp.arguments(LanguageHeaderSchema, location="headers", as_kwargs=True)
@blp.response(200, AdvicePageSchema)
@_errors(503)
def get_advice(**_headers):
    """What to do about each adverse record (and the exact points it would restore, and when it
    stops counting by itself), and for each locked perk whether it is within reach this year."""
    from service.rights.advice import advice

    return advice(_app(), me(), language())


@blp.route("/disputes")
class Disputes(MethodView):
    @blp.response(200, DisputeSchema(many=True))
    @_errors()
    def get(self):
        """Your disputes, newest first."""
        return disputes.list_disputes(_engine(), me(), _today())

    @blp.arguments(DisputeInSchema)
    @blp.response(201, DisputeOpenedSchema)
    @_errors(404, 409, 422, 503, s404="No such record of yours",
             s409="The record already has an open dispute",
             s422="Invalid input, or the record raises your score and `confirm` is not true")
    def post(self, data):
        """Dispute one of your counting records: it is labelled "under dispute" and keeps
        counting while it is checked; due in `dispute_due_days` (default 20). Unanswered by
        then, it stops counting until answered."""
        result = disputes.open_dispute(_app(), me(), data["source"], data["record_id"],
                                       data["statement"], confirm=data["confirm"])
        return {"dispute": result["dispute"], "score": pages.score_brief(result["score"])}


@blp.route("/disputes/<string:dispute_id>")
class DisputeById(MethodView):
    @blp.response(200, DisputeSchema)
    @_errors(404, s404="No such dispute of yours")
    def get(self, dispute_id: str):
        """One of your disputes, with its state, due date and resolution."""
        return disputes.get_dispute(_engine(), me(), dispute_id, _today())

    @blp.response(200, DisputeSchema)
    @_errors(404, 409, s404="No such dispute of yours", s409="The dispute is no longer open")
    def delete(self, dispute_id: str):
        """Withdraw your open dispute: the label goes and the record counts as before."""
        return disputes.withdraw_dispute(_app(), me(), dispute_id)["dispute"]


@blp.route("/review")
class Review(MethodView):
    @blp.response(200, ReviewSchema(many=True))
    @_errors()
    def get(self):
        """Your requests for human review, newest first, with the reviewers' outcomes and
        reasons."""
        return review.list_reviews(_engine(), me())

    @blp.arguments(ReviewInSchema)
    @blp.response(201, ReviewSchema)
    @_errors(409, 422, s409="A review of this perk is already pending")
    def post(self, data):
        """Ask for human review of one perk's decision (PIPL Art. 24): partners get `pending`
        for that perk until a reviewer decides; your other perks are untouched."""
        perk_ids = [perk.perk_id for perk in current_app.extensions["osmanthus.perks"].perks]
        return review.request_review(_engine(), perk_ids, me(), data["perk_id"],
                                     data["reason"].strip(), data["decision_id"], now=_now())


@blp.route("/review/<string:review_id>")
class ReviewById(MethodView):
    @blp.response(200, ReviewSchema)
    @_errors(404, s404="No such review of yours")
    def get(self, review_id: str):
        """One of your review requests."""
        return review.get_review(_engine(), review_id, me())

    @blp.response(200, ReviewSchema)
    @_errors(404, 409, s404="No such review of yours", s409="The review is no longer pending")
    def delete(self, review_id: str):
        """Withdraw a pending request: the perk is answered by the score again."""
        return review.withdraw_review(_engine(), me(), review_id, now=_now())


@blp.route("/repairs")
class Repairs(MethodView):
    @blp.response(200, RepairSchema(many=True))
    @_errors()
    def get(self):
        """Your credit-repair applications, newest first."""
        return repair.list_repairs(_engine(), me())

    @blp.arguments(RepairInSchema)
    @blp.response(201, RepairSchema)
    @_errors(404, 409, 422, s404="No such record of yours",
             s409="The record already has an open application")
    def post(self, data):
        """Apply for credit repair (信用修复) of an adverse record whose obligation you have
        fulfilled and whose minimum publication period has passed; an admin for the source
        decides. Approved, it stops counting at once."""
        return repair.apply_for_repair(_app(), me(), data["source"], data["record_id"],
                                       data["statement"])


@blp.route("/repairs/<string:repair_id>")
@blp.response(200, RepairSchema)
@_errors(404, s404="No such application of yours")
def get_repair(repair_id: str):
    """One of your credit-repair applications."""
    return repair.get_repair(_engine(), repair_id, me())


@blp.route("/consents")
class Consents(MethodView):
    @blp.response(200, ConsentSchema(many=True))
    @_errors()
    def get(self):
        """Your consents, newest first: active, expired and revoked."""
        return consents.list_consents(_engine(), me(), _now())

    @blp.arguments(ConsentInSchema)
    @blp.response(201, ConsentGrantedSchema)
    @_errors(409, 422, s409="The idempotency key was used for another grant")
    def post(self, data):
        """Let a partner ask about some of its perks until a date; hand it the token."""
        return consents.grant(_engine(), current_app.extensions["osmanthus.config"],
                              current_app.extensions["osmanthus.perks"], me(),
                              data["partner_id"], data["perks"], data["until"],
                              data["idempotency_key"])


@blp.route("/consents/<string:consent_id>")
class ConsentById(MethodView):
    @blp.response(200, ConsentSchema)
    @_errors(404, s404="No such consent of yours")
    def delete(self, consent_id: str):
        """Revoke a consent: the partner's token stops working at once."""
        return consents.revoke(_engine(), me(), consent_id, _now())


@blp.route("/access-log")
@blp.arguments(AccessLogQuerySchema, location="query")
@blp.response(200, AccessLogSchema, headers={"X-Next-Before": {
    "description": "present when older entries remain: pass it as `before`",
    "schema": {"type": "integer"}}})
@_errors()
def get_access_log(query: dict):
    """Who asked about you or acted on your file, when, for which perk, and the answer, newest
    first, 200 at a time; `X-Next-Before` pages back through all of it. Each sealed entry comes
    with its inclusion proof against the signed tree head beside them, so that you (or the
    citizen page, in your browser) can check it is in the signed audit log."""
    log = pages.access_log(_app(), me(), before=query["before"], limit=query["limit"])
    headers = {}
    if len(log["entries"]) == query["limit"]:
        headers["X-Next-Before"] = str(log["entries"][-1]["id"])
    return log, 200, headers
