"""Human review (PIPL Art. 24): a citizen may ask that decisions about them not rest on the
score alone.

While a request is `pending`, every partner gets `pending` for that person (`Perk.decide`).
A reviewer then decides (`eligible` or `not_eligible`) and the state becomes `decided`. The
request and the decision both go to the audit log, so the citizen's access log shows them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select, update

from features.identity import redact_ids
from service.base.errors import ApiError
from service.rights import audit
from service.scoring.score import ensure_people
from service.store.tables import people

OUTCOMES = ("eligible", "not_eligible")


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def review_state(engine: Engine, person_key: str) -> dict:
    """{state, requested_at, outcome}; `none` for a person never seen."""
    with engine.connect() as connection:
        row = connection.execute(
            select(people.c.review_state, people.c.review_requested_at, people.c.review_outcome)
            .where(people.c.person_key == person_key)
        ).first()
    if row is None:
        return {"state": "none", "requested_at": None, "outcome": None}
    return {"state": row.review_state, "requested_at": _utc(row.review_requested_at),
            "outcome": row.review_outcome}


def request_review(engine: Engine, person_key: str, reason: str) -> dict:
    """Ask for human review (409 if one is already pending). The reason is kept in the audit
    log for the reviewer, not shown to partners."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        ensure_people(connection, [person_key])
        state = connection.execute(
            select(people.c.review_state).where(people.c.person_key == person_key)
            .with_for_update()
        ).scalar_one()
        if state == "pending":
            raise ApiError(409, "a human review is already pending")
        connection.execute(update(people).where(people.c.person_key == person_key).values(
            review_state="pending", review_requested_at=now, review_outcome=None))
        audit.append(connection, actor="citizen", action="review_requested",
                     person_key=person_key, detail={"reason": redact_ids(reason)})
    return review_state(engine, person_key)


def decide_review(engine: Engine, person_key: str, outcome: str, *, by: str) -> dict:
    """A reviewer's decision (the admin side): 422 bad outcome, 404 unknown person, 409 when no
    review is pending."""
    if outcome not in OUTCOMES:
        raise ApiError(422, "some fields are invalid",
                       errors={"outcome": [f"must be one of {', '.join(OUTCOMES)}"]})
    with engine.begin() as connection:
        state = connection.execute(
            select(people.c.review_state).where(people.c.person_key == person_key)
            .with_for_update()
        ).scalar_one_or_none()
        if state is None:
            raise ApiError(404, "no such person")
        if state != "pending":
            raise ApiError(409, "no human review is pending for this person")
        connection.execute(update(people).where(people.c.person_key == person_key).values(
            review_state="decided", review_outcome=outcome))
        audit.append(connection, actor=by, action="review_decided", person_key=person_key,
                     detail={"outcome": outcome})
    return review_state(engine, person_key)
