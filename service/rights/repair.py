"""Credit repair (信用修复): a citizen applies to have an adverse record repaired; an admin for
the source approves or refuses with a reason; approval stops the record counting at once.

Who may apply, and from when, is `features.repair.terms` (the obligation fulfilled and the
minimum publication period passed); the application carries the citizen's statement (what was
paid or corrected, and when). Approving sets the record's `repaired_on` to today, so the record
rules stop counting it from today on (point in time), and re-scores the person in the same
request. Every application and decision goes to the audit log, as disputes do, and an id that
is not the caller's is answered as one that does not exist (404).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from sqlalchemy import Engine, insert, select, update

from features.identity import redact_ids
from features.records import Source
from features.repair import terms
from features.rules import reason as record_reason
from service.base import clock
from service.base.clock import city_date
from service.base.errors import ApiError
from service.rights import audit
from service.rights.review import checked_decision
from service.scoring.score import ensure_people, rescore
from service.store.tables import RECORD_TABLES, as_utc, is_hex_id, repairs

OUTCOMES = ("approved", "refused")



def public(row: Any, *, with_person: bool = False) -> dict:
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    if not with_person:
        data.pop("person_key", None)
        data.pop("resolved_by", None)
    data["resolved_at"] = as_utc(data.get("resolved_at"))
    return data


def _table(source: str):
    try:
        return RECORD_TABLES[Source(source)]
    except ValueError:
        raise ApiError(422, "some fields are invalid",
                       errors={"source": [f"unknown source {source!r}"]}) from None


def apply_for_repair(app: Flask, person_key: str, source: str, record_id: str,
                     statement: str) -> dict:
    """The citizen's application. 404 not their record, 409 one already open, 422 a record
    that does not count, is not adverse, cannot be repaired, or not yet (the date is given)."""
    engine: Engine = app.extensions["osmanthus.engine"]
    at = clock.now(app)
    received = city_date(at)
    table = _table(source)
    with engine.begin() as connection:
        record = connection.execute(select(table).where(table.c.record_id == record_id)
                                    .with_for_update()).first()
        if record is None or record.person_key != person_key:
            raise ApiError(404, "no such record")
        values = dict(record._mapping)
        why = record_reason(source, values, received)
        if why is not None:
            raise ApiError(422, "some fields are invalid", errors={
                "record_id": [f"this record does not count ({why}); there is nothing to repair"]})
        given = terms(source, values)
        if not given.adverse or not given.repairable:
            what = ("it is not an adverse record" if not given.adverse else
                    "a court listing is not repaired: fulfilling the judgment closes it")
            raise ApiError(422, "some fields are invalid",
                           errors={"record_id": [f"this record cannot be repaired: {what}"]})
        if received < given.repairable_from:
            raise ApiError(422, "some fields are invalid", errors={"record_id": [
                f"this record can be repaired from {given.repairable_from.isoformat()}, once "
                "its minimum publication period has passed"]})
        open_one = connection.execute(select(repairs.c.repair_id).where(
            repairs.c.source == source, repairs.c.record_id == record_id,
            repairs.c.state == "open")).first()
        if open_one is not None:
            raise ApiError(409, "this record already has an open repair application")
        row = {"repair_id": uuid.uuid4().hex, "person_key": person_key, "source": source,
               "record_id": record_id, "statement": redact_ids(statement),
               "received_on": received, "state": "open", "resolution": None,
               "resolved_at": None, "resolved_by": None}
        ensure_people(connection, [person_key])
        connection.execute(insert(repairs).values(**row))
        audit.append(connection, actor="citizen", action="repair_requested",
                     person_key=person_key, at=at,
                     detail={"repair_id": row["repair_id"], "source": source,
                             "record_id": record_id})
    return public(row)


def list_repairs(engine: Engine, person_key: str) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(repairs).where(repairs.c.person_key == person_key)
                                  .order_by(repairs.c.received_on.desc(),
                                            repairs.c.repair_id)).all()
    return [public(row) for row in rows]


def latest_by_record(engine: Engine, person_key: str) -> dict[tuple[str, str], dict]:
    """(source, record_id) → that record's latest repair application, for the records page."""
    with engine.connect() as connection:
        rows = connection.execute(select(repairs).where(repairs.c.person_key == person_key)
                                  .order_by(repairs.c.received_on, repairs.c.repair_id)).all()
    return {(row.source, row.record_id): public(row) for row in rows}


def get_repair(engine: Engine, repair_id: str, person_key: str | None = None) -> dict:
    if not is_hex_id(repair_id, 32):
        raise ApiError(404, "no such repair application")
    query = select(repairs).where(repairs.c.repair_id == repair_id)
    if person_key is not None:
        query = query.where(repairs.c.person_key == person_key)
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        raise ApiError(404, "no such repair application")
    return public(row, with_person=person_key is None)


def decide_repair(app: Flask, repair_id: str, outcome: str, reason: str, *, by: str) -> dict:
    """An admin (for the source) approves or refuses, with a reason the citizen reads; approval
    sets `repaired_on` to today and re-scores. Returns {"repair", "score"}. 422 bad outcome or
    no reason, 404 unknown, 409 already decided."""
    reason = checked_decision(outcome, reason, OUTCOMES)
    if not is_hex_id(repair_id, 32):
        raise ApiError(404, "no such repair application")
    engine: Engine = app.extensions["osmanthus.engine"]
    if outcome == "approved" and not app.extensions["osmanthus.model"].ready:
        raise ApiError(503, "no model is loaded, so the person cannot be re-scored now")
    at = clock.now(app)
    decided_on = city_date(at)
    with engine.begin() as connection:
        found = connection.execute(select(repairs).where(repairs.c.repair_id == repair_id)
                                   .with_for_update()).first()
        if found is None:
            raise ApiError(404, "no such repair application")
        if found.state != "open":
            raise ApiError(409, f"this application is already decided ({found.state})")
        if outcome == "approved":
            table = _table(found.source)
            connection.execute(update(table).where(table.c.record_id == found.record_id)
                               .values(repaired_on=decided_on))
        values = {"state": outcome, "resolution": reason,
                  "resolved_at": at, "resolved_by": by}
        connection.execute(update(repairs).where(repairs.c.repair_id == repair_id)
                           .values(**values))
        audit.append(connection, actor=by, action="repair_decided",
                     person_key=found.person_key, at=at,
                     detail={"repair_id": repair_id, "outcome": outcome, "reason": reason,
                             "source": found.source, "record_id": found.record_id})
    score = rescore(app, found.person_key) if outcome == "approved" else None
    return {"repair": public({**found._mapping, **values}, with_person=True), "score": score}
