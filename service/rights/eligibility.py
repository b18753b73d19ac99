"""Partners' eligibility decisions: consent checks, the perk's rule, and the audit row.

A question is answered only under a live consent: the token must be a valid consent token,
its consents row must exist, be unrevoked and unexpired, belong to the asking partner, and list
the perk, which must be one of that partner's perks. The answer comes from the person's latest
stored score and feature values (`Perk.decide`), or `pending` while a human review of that one
perk's decision is pending (`service.review`: other perks are answered as always).

Someone with a consent but no score yet is scored first, as a bureau would — an answer of "no"
for "not scored yet" would punish people for being new. Every answer, and every refusal whose
person is known, is appended to the audit log in one transaction before anything is returned,
so no decision is ever given without its row (`audit.append_committed`: committed before
`decide` returns). Many questions cost the same few round trips as one: one consents + people
+ latest-scores read, one multi-row audit append, and a scoring call only for people not yet
scored. On PostgreSQL the partner API passes one autocommit connection for the whole request
(its key lookup, this read and the append), so a decision costs a single pool checkout and no
BEGIN/ROLLBACK round trips, and the append is one insert that commits on its own (no shared
row: the sequencer, service/rights/sequencer.py, puts entries into the Merkle tree later).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

from flask import Flask
from sqlalchemy import Connection, bindparam, func, select

from service.base import clock
from service.base.clock import city_date
from service.base.errors import ApiError
from service.rights import audit
from service.rights.auth import decode_token
from service.rights.perks import CONDITIONS, Perk, PerkConfig
from service.rights.review import answer_for, states_for, states_from_rows
from service.scoring.score import score_people
from service.store.tables import as_utc, consents, disputes, people, scores

DECISION_TTL = dt.timedelta(hours=24)  # a partner asks again after this


@dataclass(frozen=True)
class Refusal:
    """Why a question is not answered: a stable code, a sentence, the single form's status."""

    code: str
    message: str
    status: int = 403

    def as_error(self) -> ApiError:
        headers = {"Retry-After": "3600"} if self.status == 429 else None
        return ApiError(self.status, self.message, code=self.code, headers=headers)


@dataclass
class _Question:
    perk_id: str
    perk: Perk | None = None
    consent_id: str | None = None
    refusal: Refusal | None = None
    row: dict | None = None  # consent + review state + latest score


def decide(app: Flask, partner: str, questions: list[tuple[str, str]],
           now: dt.datetime | None = None,
           connection: Connection | None = None) -> list[dict | Refusal]:
    """Answer `(consent_token, perk_id)` questions for `partner`, in order: each result is
    `{eligible, decision_id, expires_at}` or a `Refusal`. All are audited before returning.

    `connection`: an `audit.autocommit(engine)` connection to do it all on (PostgreSQL)."""
    now = now or clock.now(app)
    engine = app.extensions["osmanthus.engine"]
    asked = [_precheck(app, partner, token, perk_id) for token, perk_id in questions]
    wanted = sorted({q.consent_id for q in asked if q.consent_id})
    with nullcontext(connection) if connection is not None else engine.connect() as reading:
        found = _load(reading, wanted, now)
    for question in asked:
        if question.consent_id:
            question.row = found.get(question.consent_id)
            question.refusal = question.refusal or _consent_refusal(question, partner, now)
    _score_the_unscored(app, [q for q in asked if not q.refusal])
    results: list[dict | Refusal] = []
    entries = []
    for question in asked:
        result = question.refusal or _answer(question, now)
        if question.row is not None and isinstance(result, Refusal) \
                and question.row["partner_id"] != partner:  # another partner's consent
            result, entry = _limit_refusal(app, partner, question, result)
            results.append(result)
            if entry is not None:
                entries.append(entry)
            continue
        results.append(result)
        if question.row is not None:
            entries.append(_audit_entry(partner, question, result))
    audit.append_committed(engine, entries, at=now, connection=connection)
    return results


# Refusals of a partner asking with another partner's consent token (it holds no consent of
# this person): each is logged for the citizen, so replaying a token could flood their access
# log. The first REFUSALS_PER_HOUR per (partner, person) are logged one by one; then one
# summary entry says further ones are not, and the partner gets 429 for that person until the
# hour is over.
REFUSALS_PER_HOUR = 3
LIMITED = Refusal("rate_limited", "too many questions about this person without their "
                  "consent; ask again later", status=429)


def _limit_refusal(app: Flask, partner: str, question: _Question,
                   refusal: Refusal) -> tuple[Refusal, dict | None]:
    """(what the partner is told, the audit entry or None) for a no-consent refusal."""
    from limits import RateLimitItemPerHour

    limiter = app.extensions.get("osmanthus.limiter")
    person = question.row["person_key"]
    bucket = hashlib.sha256(f"{partner}\x00{person}".encode()).hexdigest()[:32]
    try:
        strategy = limiter.limiter
        if strategy.hit(RateLimitItemPerHour(REFUSALS_PER_HOUR), "refusal", bucket):
            return refusal, _audit_entry(partner, question, refusal)
        first_over = strategy.hit(RateLimitItemPerHour(1), "refusal-summary", bucket)
    except Exception:  # noqa: BLE001 - no limiter or its storage is down: log every one
        return refusal, _audit_entry(partner, question, refusal)
    if not first_over:
        return LIMITED, None
    return LIMITED, {"actor": f"partner:{partner}", "person_key": person,
                     "action": "eligibility_refusals_limited",
                     "detail": {"refused": refusal.code, "limit": f"{REFUSALS_PER_HOUR} per hour",
                                "note": "further refusals this hour are not logged one by one"}}


def _precheck(app: Flask, partner: str, token: str, perk_id: str) -> _Question:
    """What can be refused without the database: the perk, and the token itself."""
    question = _Question(perk_id)
    perk_config: PerkConfig = app.extensions["osmanthus.perks"]
    try:
        question.perk = perk_config.perk(perk_id)
    except KeyError:
        question.perk = None
    if question.perk is None or question.perk.partner_id != partner:
        # only a configured perk id is quoted back: the caller's own text may hold an ID number
        question.refusal = Refusal("not_your_perk", "no such perk" if question.perk is None
                                   else f"perk {perk_id!r} is not one of this partner's perks")
    try:
        claims = decode_token(app.extensions["osmanthus.config"], token, "consent")
    except ApiError as error:
        question.refusal = question.refusal or Refusal(
            "consent_invalid", f"the consent token is not valid ({error.message})")
        return question
    question.consent_id = str(claims["sub"])  # looked up even if refused, to audit the attempt
    if claims.get("partner") != partner and not question.refusal:
        question.refusal = Refusal("consent_other_partner",
                                   "this consent was given to another partner")
    return question


_IDS = bindparam("consent_ids", expanding=True)
_LATEST = (select(scores.c.person_key, func.max(scores.c.id).label("score_id"))
           .where(scores.c.person_key.in_(select(consents.c.person_key)
                                          .where(consents.c.consent_id.in_(_IDS))))
           .group_by(scores.c.person_key).subquery())
# Only the features some perk condition reads: a decision needs no more, and parsing every
# feature of every person was a tenth of a batch's time.
_CONDITION_FEATURES = sorted({feature for feature, *_ in CONDITIONS.values()})
# The latest score still counts a record whose dispute went unanswered past its due date
# (service/rights/overdue.py): such a person is re-scored before the answer, like the unscored.
_STALE = (select(disputes.c.dispute_id)
          .where(disputes.c.person_key == consents.c.person_key, disputes.c.state == "open",
                 disputes.c.due_on < bindparam("today"), disputes.c.due_on >= scores.c.as_of)
          .exists())
_LOAD = (
    select(consents.c.consent_id, consents.c.person_key, consents.c.partner_id,
           consents.c.perks, consents.c.expires_at, consents.c.revoked_at, scores.c.score,
           _STALE.label("stale"),
           *[scores.c.reasons[("features", name)].label(f"feature_{i}")
             for i, name in enumerate(_CONDITION_FEATURES)])
    .select_from(consents)
    .join(people, people.c.person_key == consents.c.person_key)
    .outerjoin(_LATEST, _LATEST.c.person_key == consents.c.person_key)
    .outerjoin(scores, scores.c.id == _LATEST.c.score_id)
    .where(consents.c.consent_id.in_(_IDS))
)  # built once: constructing it per request cost more than running it


_PG_LOAD = f"""
SELECT c.consent_id, c.person_key, c.partner_id, c.perks, c.expires_at, c.revoked_at,
       (SELECT json_agg(json_build_array(r.perk_id, r.state, r.outcome, r.requested_at,
                                         r.decided_at))
        FROM reviews r WHERE r.person_key = c.person_key
        AND r.state IN ('pending', 'decided')) AS reviews, s.score,
       EXISTS (SELECT 1 FROM disputes d WHERE d.person_key = c.person_key AND d.state = 'open'
               AND d.due_on < %(today)s AND d.due_on >= s.as_of) AS stale,
       {", ".join(f"(s.features ->> '{name}')::float8" for name in _CONDITION_FEATURES)}
FROM consents c
JOIN people p ON p.person_key = c.person_key
LEFT JOIN LATERAL (SELECT score, as_of, reasons -> 'features' AS features FROM scores
                   WHERE scores.person_key = c.person_key
                   ORDER BY scores.id DESC LIMIT 1) s ON true
WHERE c.consent_id = ANY(%(ids)s)
"""  # the same rows as _LOAD in one round trip through the driver (and the stored JSON parsed
#     once for all the features, not once per feature)
_COLUMNS = ("consent_id", "person_key", "partner_id", "perks", "expires_at", "revoked_at",
            "reviews", "score", "stale")


def _load(connection: Connection, consent_ids: list[str],
          now: dt.datetime) -> dict[str, dict]:
    """Consent rows with their person's review state, latest score and the feature values
    perk conditions read (`features`; None when never scored), in one query. `stale`: the
    latest score predates a passed due date of an open dispute (`overdue`)."""
    if not consent_ids:
        return {}
    found, width = {}, len(_COLUMNS)
    if connection.dialect.name == "postgresql":
        rows = audit.driver_connection(connection).execute(
            _PG_LOAD, {"ids": consent_ids, "today": city_date(now)})
        for row in rows:
            data = dict(zip(_COLUMNS, row[:width], strict=True))
            data["reviews"] = _review_states(data["person_key"], data["reviews"] or [], now)
            values = row[width:]
            data["features"] = (None if data["score"] is None
                                else dict(zip(_CONDITION_FEATURES, values, strict=True)))
            found[data["consent_id"]] = data
        return found
    for row in connection.execute(_LOAD, {"consent_ids": consent_ids, "today": city_date(now)}):
        data = dict(row._mapping)
        values = [data.pop(f"feature_{i}") for i in range(len(_CONDITION_FEATURES))]
        data["features"] = (None if data["score"] is None
                            else dict(zip(_CONDITION_FEATURES, values, strict=True)))
        found[data["consent_id"]] = data
    asked = states_for(connection, sorted({d["person_key"] for d in found.values()}), now)
    for data in found.values():
        data["reviews"] = asked.get(data["person_key"], {})
    return found


class _ReviewRow(NamedTuple):
    person_key: str
    perk_id: str
    state: str
    outcome: str | None
    requested_at: dt.datetime
    decided_at: dt.datetime | None


def _review_states(person_key: str, rows: list, now: dt.datetime) -> dict:
    """PostgreSQL's json_agg of review rows → perk → (state, outcome), as `states_for` gives."""
    return states_from_rows([
        _ReviewRow(person_key, perk_id, state, outcome, dt.datetime.fromisoformat(requested),
                   dt.datetime.fromisoformat(decided) if decided else None)
        for perk_id, state, outcome, requested, decided in rows], now).get(person_key, {})


def _consent_refusal(question: _Question, partner: str, now: dt.datetime) -> Refusal | None:
    row = question.row
    if row is None:
        return Refusal("consent_not_found", "no such consent")
    if row["partner_id"] != partner:
        return Refusal("consent_other_partner", "this consent was given to another partner")
    if row["revoked_at"] is not None:
        return Refusal("consent_revoked", "the citizen has revoked this consent")
    if as_utc(row["expires_at"]) <= now:
        return Refusal("consent_expired", "this consent has expired")
    if question.perk_id not in (row["perks"] or []):
        return Refusal("perk_not_consented",
                       f"this consent does not cover perk {question.perk_id!r}")
    return None


def _score_the_unscored(app: Flask, questions: list[_Question]) -> None:
    """Score, once, everyone asked about who has no score yet (or refuse with 503), and
    everyone whose score is stale (`overdue`: it still counts a record whose dispute went
    unanswered past its due date; with no model loaded, the stored score answers)."""
    unscored = sorted({q.row["person_key"] for q in questions
                       if q.row["score"] is None or q.row.get("stale")})
    if not unscored:
        return
    serving = app.extensions["osmanthus.model"]
    if not serving.ready:
        for question in questions:
            if question.row["score"] is None:
                question.refusal = Refusal("not_scored", "this person has no score yet and "
                                           "none can be computed now; ask again later", 503)
        return
    from service.base.cache import page_key

    engine, day = app.extensions["osmanthus.engine"], clock.today(app)
    rows = {row["person_key"]: row for row in score_people(engine, serving, unscored, day)}
    app.extensions["osmanthus.cache"].delete(
        *[page_key(serving.version or "-", key, day) for key in unscored])
    for question in questions:
        fresh = rows.get(question.row["person_key"])
        if fresh is not None:
            question.row["score"] = fresh["score"]
            question.row["features"] = fresh["reasons"]["features"]


def _answer(question: _Question, now: dt.datetime) -> dict:
    row, perk = question.row, question.perk
    features = {name: value for name, value in (row["features"] or {}).items()
                if value is not None}
    state, outcome = answer_for(row["reviews"], perk.perk_id)
    return {
        "eligible": perk.decide(row["score"], features, state, outcome),
        "decision_id": uuid.uuid4().hex,
        "expires_at": min(now + DECISION_TTL, as_utc(row["expires_at"])),
    }


UNKNOWN_PERK = "unknown perk"


def _audit_entry(partner: str, question: _Question, result: dict | Refusal) -> dict:
    entry = {"actor": f"partner:{partner}", "person_key": question.row["person_key"]}
    if isinstance(result, Refusal):
        # only what the service chose: a configured perk id, never the caller's own text
        # (the log is append-only, and a partner could type an ID number into perk_id)
        perk = question.perk.perk_id if question.perk is not None else UNKNOWN_PERK
        return {**entry, "action": "eligibility_refused",
                "detail": {"perk": perk, "refused": result.code,
                           "consent_id": question.consent_id}}
    return {**entry, "action": "eligibility",
            "detail": {"perk": question.perk_id, "policy_version": question.perk.policy_version,
                       "answer": result["eligible"], "decision_id": result["decision_id"],
                       "consent_id": question.consent_id}}
