"""Disputes (异议) as credit-information law writes them: a disputed record is labelled, not
frozen.

征信业管理条例 Art. 25: a disputed item is labelled "under dispute" and checked within 20 days;
FCRA §1681i: what cannot be verified in time is removed. So opening a dispute sets the record's
`dispute_opened_on` (the label) and `dispute_due_on` (today + `Config.dispute_due_days`, fixed
now so a later change of the setting moves no open dispute); the record keeps counting. Only a
dispute still unanswered after its due date stops the record counting, until it is answered —
a rule of `features.rules`, so the batch re-score applies it as of any date, point in time.
Upheld: the record is removed or corrected and the person re-scored. Rejected: it counts, and
the reviewer's reason is shown. The citizen may withdraw an open dispute (the record counts as
before). A one-line dispute therefore never unlocks a perk by itself.

Disputing a record that raises the score (a positive record, a paid month) can only cost the
citizen: if it is upheld, or goes unanswered, the record stops counting. Such a dispute (any
record of the positive source, or any other whose removal would lower the score) needs
`confirm: true`; without it the answer is a 422 on `confirm` that says how many points the
record is worth now (`whatif.record_worth`: the score re-computed without it).

Dates and times are the service's one clock (`service.base.clock`: the wall clock and the
city's calendar in production; the demo city's own clock in the demo), as for consents,
reviews, repairs and the audit log.

A dispute id that is not the caller's is answered exactly like one that does not exist (404),
so ids never reveal whether someone else has a dispute.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import polars as pl
from flask import Flask
from sqlalchemy import Connection, Engine, Table, delete, insert, select, update

from features.identity import redact_ids
from features.records import SCHEMAS, STATE_COLUMNS, Source, record_schema
from features.rules import reason as record_reason
from service.base import clock
from service.base.clock import city_date
from service.base.errors import ApiError
from service.rights import audit
from service.scoring.score import ensure_people, rescore
from service.scoring.whatif import record_worth
from service.store.records import load_records
from service.store.tables import RECORD_TABLES, disputes, is_hex_id

OUTCOMES = ("upheld", "rejected")
_PROTECTED = {"record_id", "person_key", *STATE_COLUMNS}


def _table(source: str) -> Table:
    try:
        return RECORD_TABLES[Source(source)]
    except ValueError:
        raise ApiError(422, "some fields are invalid",
                       errors={"source": [f"unknown source {source!r}"]}) from None


def _record(connection: Connection, table: Table, record_id: str, *, lock: bool = False):
    query = select(table).where(table.c.record_id == record_id)
    return connection.execute(query.with_for_update() if lock else query).first()


def public(row: Any, as_of: dt.date) -> dict:
    """A dispute as its citizen sees it (`overdue`: still open after its due date)."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    data.pop("person_key", None)
    data["overdue"] = data["state"] == "open" and as_of > data["due_on"]
    resolved_at = data.get("resolved_at")
    if resolved_at is not None and resolved_at.tzinfo is None:  # SQLite: naive UTC
        data["resolved_at"] = resolved_at.replace(tzinfo=dt.UTC)
    return data


def _open_on(connection: Connection, source: str, record_id: str):
    return connection.execute(
        select(disputes.c.dispute_id).where(disputes.c.source == source,
                                            disputes.c.record_id == record_id,
                                            disputes.c.state == "open")
    ).first()


def due_days(app: Flask) -> int:
    return int(getattr(app.extensions["osmanthus.config"], "dispute_due_days", 20))


def _check_worth(app: Flask, person_key: str, source: str, record_id: str,
                 received: dt.date, confirm: bool) -> None:
    """422 on `confirm` when the record raises the score and the citizen has not confirmed."""
    if confirm:
        return
    engine: Engine = app.extensions["osmanthus.engine"]
    records = load_records(engine, [person_key])
    if records.get(source).filter(pl.col("record_id") == record_id).is_empty():
        return  # not theirs: the transaction below answers 404
    worth = record_worth(app, records, source, record_id, received)
    if worth > 0.5 or source == Source.POSITIVE.value:
        what = (f"adds {round(worth)} points to your score now" if worth > 0.5 else
                "is a positive record (守信激励): it can only raise your score, by 0 points now")
        raise ApiError(422, "this record raises your score; confirm to dispute it", errors={
            "confirm": [f"this record {what}; if the dispute is upheld or goes unanswered it "
                        "stops counting and you lose its points. Send confirm: true to dispute "
                        "it anyway."]})


def open_dispute(app: Flask, person_key: str, source: str, record_id: str,
                 statement: str, confirm: bool = False) -> dict:
    """Open a dispute on one of the person's counting records: it is labelled "under dispute"
    and keeps counting; the dispute is due in `dispute_due_days`.

    404 when the record is not theirs (or does not exist), 409 when it already has an open
    dispute, 422 when it does not count anyway, or raises the score and `confirm` is not set."""
    engine: Engine = app.extensions["osmanthus.engine"]
    serving = app.extensions["osmanthus.model"]
    if not serving.ready:  # check before changing anything: the re-score must be possible
        raise ApiError(503, "no model is loaded, so a dispute cannot be re-scored now")
    at = clock.now(app)
    received = city_date(at)
    table = _table(source)
    _check_worth(app, person_key, source, record_id, received, confirm)
    with engine.begin() as connection:
        record = _record(connection, table, record_id, lock=True)
        if record is None or record.person_key != person_key:
            raise ApiError(404, "no such record")
        if _open_on(connection, source, record_id) is not None:
            raise ApiError(409, "this record already has an open dispute")
        why = record_reason(source, dict(record._mapping), received)
        if why is not None:
            raise ApiError(422, "some fields are invalid", errors={
                "record_id": [f"this record does not count ({why}); there is nothing to dispute"]})
        due = received + dt.timedelta(days=due_days(app))
        row = {
            "dispute_id": uuid.uuid4().hex, "person_key": person_key, "source": source,
            "record_id": record_id, "statement": redact_ids(statement), "received_on": received,
            "due_on": due, "state": "open",
            "resolution": None, "resolved_at": None,
        }
        ensure_people(connection, [person_key])
        connection.execute(insert(disputes).values(**row))
        connection.execute(update(table).where(table.c.record_id == record_id).values(
            dispute_opened_on=received, dispute_due_on=due, dispute_closed_on=None))
        audit.append(connection, actor="citizen", action="dispute_opened", person_key=person_key,
                     at=at,
                     detail={"dispute_id": row["dispute_id"], "source": source,
                             "record_id": record_id, "due_on": row["due_on"].isoformat()})
    score = rescore(app, person_key)
    return {"dispute": public(row, received), "score": score}


def withdraw_dispute(app: Flask, person_key: str, dispute_id: str) -> dict:
    """The citizen withdraws an open dispute of theirs: the label goes, and a record that had
    stopped counting (its dispute overdue) counts again; re-scored. 404 not theirs, 409 not
    open."""
    engine: Engine = app.extensions["osmanthus.engine"]
    at = clock.now(app)
    closed_on = city_date(at)
    if not is_id(dispute_id):
        raise ApiError(404, "no such dispute")
    with engine.begin() as connection:
        found = connection.execute(select(disputes).where(
            disputes.c.dispute_id == dispute_id, disputes.c.person_key == person_key)
            .with_for_update()).first()
        if found is None:
            raise ApiError(404, "no such dispute")
        if found.state != "open":
            raise ApiError(409, f"this dispute is no longer open ({found.state})")
        table = _table(found.source)
        connection.execute(update(table).where(table.c.record_id == found.record_id)
                           .values(dispute_closed_on=closed_on))
        resolved = {"state": "withdrawn", "resolution": None, "resolved_at": at}
        connection.execute(update(disputes).where(disputes.c.dispute_id == dispute_id)
                           .values(**resolved))
        audit.append(connection, actor="citizen", action="dispute_withdrawn",
                     person_key=person_key, at=at,
                     detail={"dispute_id": dispute_id, "source": found.source,
                             "record_id": found.record_id})
    score = rescore(app, person_key) if app.extensions["osmanthus.model"].ready else None
    return {"dispute": public({**found._mapping, **resolved}, closed_on), "score": score}


def list_disputes(engine: Engine, person_key: str, as_of: dt.date) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(disputes).where(disputes.c.person_key == person_key)
            .order_by(disputes.c.received_on.desc(), disputes.c.dispute_id)
        ).all()
    return [public(row, as_of) for row in rows]


def is_id(value: str) -> bool:
    """Dispute and consent ids are 32 hex digits (`store.tables.is_hex_id`)."""
    return is_hex_id(value, 32)


def get_dispute(engine: Engine, person_key: str, dispute_id: str, as_of: dt.date) -> dict:
    if not is_id(dispute_id):
        raise ApiError(404, "no such dispute")
    with engine.connect() as connection:
        row = connection.execute(select(disputes).where(
            disputes.c.dispute_id == dispute_id, disputes.c.person_key == person_key)).first()
    if row is None:
        raise ApiError(404, "no such dispute")
    return public(row, as_of)


def latest_by_record(engine: Engine, person_key: str) -> dict[tuple[str, str], dict]:
    """(source, record_id) → that record's most recent dispute, for the records page."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(disputes.c.dispute_id, disputes.c.source, disputes.c.record_id,
                   disputes.c.state, disputes.c.due_on, disputes.c.resolution)
            .where(disputes.c.person_key == person_key)
            .order_by(disputes.c.received_on, disputes.c.dispute_id)
        ).all()
    return {(row.source, row.record_id): dict(row._mapping) for row in rows}


def _out_of_bounds(value: object) -> str | None:
    """The bounds every stored record keeps (features/validate.py): a correction of "nan",
    "inf", 1e308 or year 1 would be committed and then fail every later re-score."""
    from features.validate import EARLIEST_RECORD_DATE, MAX_ABS_NUMBER

    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, int | float) and abs(value) > MAX_ABS_NUMBER:
        return f"must be within ±{MAX_ABS_NUMBER:,.0f}"
    if isinstance(value, dt.date) and not EARLIEST_RECORD_DATE <= value <= dt.date(2100, 1, 1):
        return f"must be a date from {EARLIEST_RECORD_DATE.year} on"
    if isinstance(value, str) and ("\x00" in value or len(value) > 200):
        return "must be text of at most 200 characters, without NUL"
    return None


def _coerce(source: str, correction: dict) -> dict:
    """Correction columns typed as the record table holds them (422 names each bad one)."""
    schema, spec = record_schema(source), SCHEMAS[Source(source)]
    out, errors = {}, {}
    for name, value in correction.items():
        field = f"correction.{name}"
        if name not in schema or name in _PROTECTED:
            errors[field] = ["not a correctable column of this source"]
            continue
        dtype = str(schema[name])
        try:
            if value is None:
                column = spec.column(name) if name in spec.column_names else None
                if column is not None and column.required:
                    raise ValueError("is required")
                out[name] = None
            elif dtype == "Date":
                out[name] = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
            elif dtype == "Float64":
                out[name] = float(value)
            elif dtype == "Int64":
                out[name] = int(value)
            else:
                out[name] = str(value)
        except (TypeError, ValueError, OverflowError):
            errors[field] = [f"not a valid {dtype.lower()} value"]  # never echo the value
            continue
        problem = _out_of_bounds(out[name])
        if problem:
            errors[field] = [problem]
            continue
        if name in spec.column_names:
            allowed = spec.column(name).allowed
            if allowed and out[name] not in allowed:
                errors[field] = [f"must be one of {', '.join(allowed)}"]
    if errors:
        raise ApiError(422, "some fields are invalid", errors=errors)
    return out


def resolve_dispute(engine: Engine, app: Flask, dispute_id: str, outcome: str, note: str, *,
                    by: str, correction: dict | None = None) -> dict:
    """Close an open dispute (the admin side) and re-score the person.

    upheld: the record is removed, or corrected with `correction` (column → value; it then
    counts as corrected); rejected: the record counts again from today, and `note` is shown to
    the citizen. Returns {"dispute", "score"}. 404 unknown dispute, 409 already resolved, 422
    bad outcome, missing note on a rejection, or a bad correction."""
    if outcome not in OUTCOMES:
        raise ApiError(422, "some fields are invalid",
                       errors={"outcome": [f"must be one of {', '.join(OUTCOMES)}"]})
    note = redact_ids((note or "").strip())
    if outcome == "rejected" and not note:
        raise ApiError(422, "some fields are invalid",
                       errors={"note": ["a rejection needs a reason the citizen can read"]})
    if outcome == "rejected" and correction:
        raise ApiError(422, "some fields are invalid",
                       errors={"correction": ["only an upheld dispute corrects its record"]})
    at = clock.now(app)
    closed_on = city_date(at)
    if not is_id(dispute_id):
        raise ApiError(404, "no such dispute")
    with engine.begin() as connection:
        found = connection.execute(
            select(disputes).where(disputes.c.dispute_id == dispute_id).with_for_update()
        ).first()
        if found is None:
            raise ApiError(404, "no such dispute")
        if found.state != "open":
            raise ApiError(409, f"this dispute is already resolved ({found.state})")
        table = _table(found.source)
        where = table.c.record_id == found.record_id
        action = "rejected"
        if outcome == "rejected":
            connection.execute(update(table).where(where).values(dispute_closed_on=closed_on))
        elif correction:
            values = _coerce(found.source, correction)
            connection.execute(update(table).where(where).values(
                **values, dispute_closed_on=closed_on, updated_at=at))
            action = "corrected"
        else:
            connection.execute(delete(table).where(where))
            action = "removed"
        resolved = {"state": outcome, "resolution": note or None, "resolved_at": at}
        connection.execute(update(disputes).where(disputes.c.dispute_id == dispute_id)
                           .values(**resolved))
        audit.append(connection, actor=by, action="dispute_resolved",
                     person_key=found.person_key, at=at,
                     detail={"dispute_id": dispute_id, "outcome": outcome, "record": action,
                             "source": found.source, "record_id": found.record_id})
    score = rescore(app, found.person_key)
    return {"dispute": public({**found._mapping, **resolved}, closed_on), "score": score}
