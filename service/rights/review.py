"""Human review of one decision (PIPL Art. 24): a citizen may ask that a named perk's decision
about them not rest on the score alone.

A request names one perk (and, if the citizen has it from their access log, the partner
decision it contests). While it is `pending`, partners asking about that perk get `pending`;
every other perk is answered by the score as before. A reviewer decides with a reason the
citizen reads (`eligible` or `not_eligible`), and that outcome answers for the perk for
`DECISION_STANDS` after the decision; then the score decides again (a person's file changes,
and a reviewer's yes should not outlive the facts it was given on). The citizen may withdraw a
pending request. Requests, withdrawals and decisions all go to the audit log.

An id that is not the caller's is answered as one that does not exist (404).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from features.identity import redact_ids
from service.base.errors import ApiError
from service.rights import audit
from service.scoring.score import ensure_people
from service.store.tables import as_utc, is_hex_id, reviews

OUTCOMES = ("eligible", "not_eligible")
DECISION_STANDS = dt.timedelta(days=365)



def public(row: Any, *, with_person: bool = False) -> dict:
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    if not with_person:
        data.pop("person_key", None)
    data.pop("decided_by", None) if not with_person else None
    for name in ("requested_at", "decided_at"):
        data[name] = as_utc(data.get(name))
    return data


def answer_for(states: dict[str, tuple[str, str | None]], perk_id: str) -> tuple[str, str | None]:
    """(review state, outcome) for one perk from `states_for`'s map: `none` if never asked."""
    return states.get(perk_id, ("none", None))


def states_from_rows(rows: Iterable[Any], now: dt.datetime
                     ) -> dict[str, dict[str, tuple[str, str | None]]]:
    """person → perk → (state, outcome) from review rows (person_key, perk_id, state, outcome,
    requested_at, decided_at): the latest live request per perk; a decision older than
    `DECISION_STANDS` at `now` (the service's clock) no longer answers."""
    latest: dict[tuple[str, str], Any] = {}
    for row in rows:
        if row.state not in ("pending", "decided"):
            continue
        key = (row.person_key, row.perk_id)
        seen = latest.get(key)
        if seen is None or as_utc(row.requested_at) > as_utc(seen.requested_at):
            latest[key] = row
    out: dict[str, dict[str, tuple[str, str | None]]] = {}
    for (person, perk), row in latest.items():
        if row.state == "decided" and (row.decided_at is None
                                       or as_utc(row.decided_at) + DECISION_STANDS <= now):
            continue
        out.setdefault(person, {})[perk] = (row.state, row.outcome)
    return out


_LIVE = (reviews.c.person_key, reviews.c.perk_id, reviews.c.state, reviews.c.outcome,
         reviews.c.requested_at, reviews.c.decided_at)


def states_for(connection: Connection, person_keys: list[str], now: dt.datetime
               ) -> dict[str, dict[str, tuple[str, str | None]]]:
    """person → perk → (state, outcome), for partners' decisions and the perks page."""
    if not person_keys:
        return {}
    rows = connection.execute(select(*_LIVE).where(
        reviews.c.person_key.in_(person_keys), reviews.c.state.in_(("pending", "decided")))).all()
    return states_from_rows(rows, now)


def review_states(engine: Engine, person_key: str,
                  now: dt.datetime) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as connection:
        return states_for(connection, [person_key], now).get(person_key, {})


def list_reviews(engine: Engine, person_key: str) -> list[dict]:
    """The person's requests, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(select(reviews).where(reviews.c.person_key == person_key)
                                  .order_by(reviews.c.requested_at.desc(),
                                            reviews.c.review_id)).all()
    return [public(row) for row in rows]


def request_review(engine: Engine, perk_ids: Iterable[str], person_key: str, perk_id: str,
                   reason: str, decision_id: str | None = None, *, now: dt.datetime) -> dict:
    """Ask for human review of one perk's decision at `now` (the service's clock). 422 unknown
    perk or decision id, 409 when one is already pending for that perk."""
    if perk_id not in set(perk_ids):
        raise ApiError(422, "some fields are invalid", errors={"perk_id": ["no such perk"]})
    if decision_id is not None and not is_hex_id(decision_id, 32):
        raise ApiError(422, "some fields are invalid",
                       errors={"decision_id": ["not a decision id (32 hexadecimal digits)"]})
    row = {"review_id": uuid.uuid4().hex, "person_key": person_key, "perk_id": perk_id,
           "decision_id": decision_id, "reason": redact_ids(reason), "requested_at": now,
           "state": "pending", "outcome": None, "outcome_reason": None, "decided_at": None,
           "decided_by": None}
    with engine.begin() as connection:
        ensure_people(connection, [person_key])
        pending = connection.execute(select(reviews.c.review_id).where(
            reviews.c.person_key == person_key, reviews.c.perk_id == perk_id,
            reviews.c.state == "pending").with_for_update()).first()
        if pending is not None:
            raise ApiError(409, "a human review of this perk is already pending")
        connection.execute(insert(reviews).values(**row))
        audit.append(connection, actor="citizen", action="review_requested",
                     person_key=person_key, at=now,
                     detail={"review_id": row["review_id"], "perk_id": perk_id,
                             "decision_id": decision_id, "reason": row["reason"]})
    return public(row)


def _one(connection: Connection, review_id: str, person_key: str | None = None):
    if not is_hex_id(review_id, 32):
        return None
    query = select(reviews).where(reviews.c.review_id == review_id)
    if person_key is not None:
        query = query.where(reviews.c.person_key == person_key)
    return connection.execute(query.with_for_update()).first()


def get_review(engine: Engine, review_id: str, person_key: str | None = None) -> dict:
    with engine.connect() as connection:
        row = _one(connection, review_id, person_key)
    if row is None:
        raise ApiError(404, "no such review")
    return public(row, with_person=person_key is None)


def withdraw_review(engine: Engine, person_key: str, review_id: str, *,
                    now: dt.datetime) -> dict:
    """The citizen withdraws a pending request: the perk is answered by the score again."""
    with engine.begin() as connection:
        row = _one(connection, review_id, person_key)
        if row is None:
            raise ApiError(404, "no such review")
        if row.state != "pending":
            raise ApiError(409, f"this review is no longer pending ({row.state})")
        connection.execute(update(reviews).where(reviews.c.review_id == review_id)
                           .values(state="withdrawn"))
        audit.append(connection, actor="citizen", action="review_withdrawn",
                     person_key=person_key, at=now,
                     detail={"review_id": review_id, "perk_id": row.perk_id})
    return public({**row._mapping, "state": "withdrawn"})


def checked_decision(outcome: str, reason: str | None, outcomes: tuple[str, ...]) -> str:
    """A person's request decided by a human (a review, a repair application) needs a known
    outcome and a reason the citizen can read: 422 naming each bad field; returns the reason,
    ID numbers redacted."""
    errors = {}
    if outcome not in outcomes:
        errors["outcome"] = [f"must be one of {', '.join(outcomes)}"]
    reason = redact_ids((reason or "").strip())
    if not reason:
        errors["reason"] = ["a decision needs a reason the citizen can read"]
    if errors:
        raise ApiError(422, "some fields are invalid", errors=errors)
    return reason


def decide_review(engine: Engine, review_id: str, outcome: str, reason: str, *, by: str,
                  now: dt.datetime) -> dict:
    """A reviewer's decision with its reason (the admin side): 422 bad outcome or no reason,
    404 unknown review, 409 when it is not pending."""
    reason = checked_decision(outcome, reason, OUTCOMES)
    with engine.begin() as connection:
        row = _one(connection, review_id)
        if row is None:
            raise ApiError(404, "no such review")
        if row.state != "pending":
            raise ApiError(409, f"this review is not pending ({row.state})")
        values = {"state": "decided", "outcome": outcome, "outcome_reason": reason,
                  "decided_at": now, "decided_by": by}
        connection.execute(update(reviews).where(reviews.c.review_id == review_id)
                           .values(**values))
        audit.append(connection, actor=by, action="review_decided", person_key=row.person_key,
                     at=now,
                     detail={"review_id": review_id, "perk_id": row.perk_id,
                             "outcome": outcome, "reason": reason})
    return public({**row._mapping, **values}, with_person=True)
