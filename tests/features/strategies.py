"""Hypothesis strategies for typed records: random people and cities, for any layer's tests.

Rows are plain dicts of a source's typed columns (see `features.records.record_schema`);
`records_of` turns `{source: [rows]}` into `Records`. Every strategy takes the as-of date it
should be realistic around, so that records fall before, on and after it, and some are
repaired, disputed or closed.

    @given(data=st.data())
    def test_x(data):
        as_of = data.draw(as_of_dates())
        records = data.draw(cities(as_of, max_people=5))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from features.records import (
    COURT_STATUSES,
    PENALTY_CATEGORIES,
    POSITIVE_KINDS,
    RETENTION_MONTHS,
    SEVERITIES,
    Records,
    Source,
)
from features.rules import add_months

Row = dict[str, Any]
Rows = dict[str, list[Row]]

MONTHLY = (Source.SOCIAL_SECURITY, Source.TRANSIT)
EVENTS = (Source.COURT, Source.PENALTY, Source.POSITIVE)
HISTORY_MONTHS = 75  # how far back records reach: past the 60-month retention


def as_of_dates() -> st.SearchStrategy[dt.date]:
    return st.dates(min_value=dt.date(2021, 1, 1), max_value=dt.date(2027, 12, 31))


def person_keys() -> st.SearchStrategy[str]:
    """64 hex characters, the shape of an HMAC-SHA256 person key."""
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


def amounts(high: int = 5_000) -> st.SearchStrategy[float]:
    """Whole CNY: sums are exact, so results never depend on the order of addition."""
    return st.integers(0, high).map(float)


def dates_around(as_of: dt.date, months_before: int = HISTORY_MONTHS,
                 days_after: int = 120) -> st.SearchStrategy[dt.date]:
    return st.dates(min_value=add_months(as_of, -months_before),
                    max_value=as_of + dt.timedelta(days=days_after))


def months_around(as_of: dt.date) -> st.SearchStrategy[dt.date]:
    """The first day of a month from HISTORY_MONTHS before the as-of month to 2 after it."""
    first = as_of.replace(day=1)
    return st.integers(-2, HISTORY_MONTHS).map(lambda k: add_months(first, -k))


@st.composite
def states(draw: st.DrawFn, dated: dt.date, as_of: dt.date) -> Row:
    """Repair and dispute dates after the record's date (mostly none)."""
    after = st.dates(min_value=dated, max_value=max(dated, as_of) + dt.timedelta(days=90))
    row: Row = {"repaired_on": None, "dispute_opened_on": None, "dispute_closed_on": None,
                "dispute_due_on": None}
    if draw(st.integers(0, 9)) == 0:
        row["repaired_on"] = draw(after)
    if draw(st.integers(0, 9)) == 0:
        opened = draw(after)
        row["dispute_opened_on"] = opened
        row["dispute_due_on"] = opened + dt.timedelta(days=draw(st.integers(0, 30)))
        if draw(st.booleans()):
            row["dispute_closed_on"] = opened + dt.timedelta(days=draw(st.integers(0, 60)))
    return row


@st.composite
def social_security_row(draw: st.DrawFn, month: dt.date, as_of: dt.date) -> Row:
    kind = draw(st.integers(0, 5))
    missed = kind == 0
    return {"month": month, "status": "missed" if missed else "exempt" if kind == 1 else "paid",
            "contribution_base": draw(amounts(20_000)),
            "arrears": draw(amounts(3_000)) if missed or draw(st.integers(0, 9)) == 0 else 0.0,
            "paid_early": draw(st.sampled_from([None, 0, 1])),
            **draw(states(month, as_of))}


@st.composite
def transit_row(draw: st.DrawFn, month: dt.date, as_of: dt.date) -> Row:
    small = st.integers(0, 3).map(lambda n: max(n - 1, 0))  # mostly 0
    return {"month": month, "rides": draw(st.integers(0, 80)),
            "bike_rides": draw(st.integers(0, 20)), "overdue_returns": draw(small),
            "unpaid_fees": draw(st.sampled_from([0.0, 0.0, 0.0]) | amounts(300)),
            "fare_evasions": draw(small), "damage_incidents": draw(small),
            "paid_early": draw(st.sampled_from([None, 0, 1])),
            **draw(states(month, as_of))}


@st.composite
def court_row(draw: st.DrawFn, as_of: dt.date, filed_on: dt.date | None = None) -> Row:
    filed = filed_on or draw(dates_around(as_of, months_before=120))
    status = draw(st.sampled_from(COURT_STATUSES))
    closed = None
    if status != "active":
        closed = filed + dt.timedelta(days=draw(st.integers(0, 1500)))
    return {"case_no": f"c{draw(st.integers(0, 10**9))}", "filed_on": filed,
            "amount": draw(amounts(100_000)), "status": status, "closed_on": closed,
            **draw(states(filed, as_of))}


@st.composite
def penalty_row(draw: st.DrawFn, as_of: dt.date, decided_on: dt.date | None = None) -> Row:
    decided = decided_on or draw(dates_around(as_of, months_before=48))
    severity = draw(st.sampled_from(SEVERITIES))
    window = None
    if severity == "general" and draw(st.booleans()):
        window = draw(st.integers(3, 12))
    elif severity == "serious" and draw(st.booleans()):
        window = draw(st.integers(12, 36))
    return {"decision_no": f"d{draw(st.integers(0, 10**9))}", "decided_on": decided,
            "category": draw(st.sampled_from(PENALTY_CATEGORIES)), "severity": severity,
            "fine": draw(amounts(10_000)), "window_months": window,
            **draw(states(decided, as_of))}


@st.composite
def positive_row(draw: st.DrawFn, as_of: dt.date, event_on: dt.date | None = None) -> Row:
    kind = draw(st.sampled_from(POSITIVE_KINDS))
    event = event_on or draw(dates_around(as_of))
    return {"event_no": f"e{draw(st.integers(0, 10**9))}", "event_on": event, "kind": kind,
            "hours": float(draw(st.integers(1, 40))) if kind == "volunteering" else 0.0,
            **draw(states(event, as_of))}


def row_of(source: Source, as_of: dt.date, dated: dt.date | None = None) -> st.SearchStrategy[Row]:
    """One row of a source, dated `dated` when given (a month's first day for monthly ones)."""
    if source is Source.SOCIAL_SECURITY:
        return (st.just(dated) if dated else months_around(as_of)).flatmap(
            lambda month: social_security_row(month, as_of))
    if source is Source.TRANSIT:
        return (st.just(dated) if dated else months_around(as_of)).flatmap(
            lambda month: transit_row(month, as_of))
    if source is Source.COURT:
        return court_row(as_of, dated)
    if source is Source.PENALTY:
        return penalty_row(as_of, dated)
    return positive_row(as_of, dated)


@st.composite
def person_rows(draw: st.DrawFn, as_of: dt.date, person_key: str | None = None,
                max_events: int = 4) -> Rows:
    """One person's records of all five sources; months of a monthly source are distinct."""
    key = person_key or draw(person_keys())
    rows: Rows = {}
    for source in MONTHLY:
        offsets = draw(st.sets(st.integers(-2, HISTORY_MONTHS), max_size=40))
        first = as_of.replace(day=1)
        rows[source.value] = [draw(row_of(source, as_of, add_months(first, -k)))
                              for k in sorted(offsets)]
    for source in EVENTS:
        rows[source.value] = draw(st.lists(row_of(source, as_of), max_size=max_events))
    for source_rows in rows.values():
        for row in source_rows:
            row["person_key"] = key
    return rows


def merge(*many: Mapping[str, list[Row]]) -> Rows:
    out: Rows = {s.value: [] for s in Source}
    for rows in many:
        for source, source_rows in rows.items():
            out[source].extend(source_rows)
    return out


def records_of(rows: Mapping[str, list[Row]]) -> Records:
    """Typed `Records` from rows; record ids are made up, unique within the call."""
    import polars as pl

    from features.records import record_schema

    frames = {}
    for source, source_rows in rows.items():
        schema = record_schema(source)
        typed = [{**{name: None for name in schema}, **row,
                  "record_id": row.get("record_id") or f"{source}-{i}"}
                 for i, row in enumerate(source_rows)]
        frames[source] = pl.DataFrame(typed, schema=schema)
    return Records(**frames)


@st.composite
def city_rows(draw: st.DrawFn, as_of: dt.date, min_people: int = 1, max_people: int = 6) -> Rows:
    keys = draw(st.lists(person_keys(), min_size=min_people, max_size=max_people, unique=True))
    return merge(*(draw(person_rows(as_of, key)) for key in keys))


def cities(as_of: dt.date, min_people: int = 1, max_people: int = 6) -> st.SearchStrategy[Records]:
    """Records of a few random people."""
    return city_rows(as_of, min_people, max_people).map(records_of)


# Records that never count as of `as_of`, by the rule that excludes them.

def not_yet_known(as_of: dt.date) -> st.SearchStrategy[tuple[Source, Row]]:
    """A record of any source dated on or after the as-of date (a month: its month or later)."""
    def dated(source: Source) -> st.SearchStrategy[tuple[Source, Row]]:
        if source in MONTHLY:
            day = st.integers(0, 3).map(lambda k: add_months(as_of.replace(day=1), k))
        else:
            day = st.integers(0, 400).map(lambda d: as_of + dt.timedelta(days=d))
        return day.flatmap(lambda d: row_of(source, as_of, d).map(lambda r: (source, r)))
    return st.sampled_from(list(Source)).flatmap(dated)


def _cutoff_month(as_of: dt.date) -> dt.date:
    """The first day of the latest month whose records are past retention."""
    cutoff = add_months(as_of, -RETENTION_MONTHS)
    return add_months((cutoff + dt.timedelta(days=1)).replace(day=1), -1)


@st.composite
def outside_window(draw: st.DrawFn, as_of: dt.date) -> tuple[Source, Row]:
    """A record dated before the as-of date that does not count by some other rule."""
    before = st.dates(min_value=add_months(as_of, -HISTORY_MONTHS),
                      max_value=as_of - dt.timedelta(days=1))
    kind = draw(st.sampled_from(["minor", "expired", "repaired", "disputed", "closed court",
                                 "retention event", "retention month"]))
    if kind == "retention month":
        source = draw(st.sampled_from(MONTHLY))
        latest = _cutoff_month(as_of)
        month = add_months(latest, -draw(st.integers(0, 12)))
        return source, draw(row_of(source, as_of, month))
    if kind == "retention event":
        source = draw(st.sampled_from([Source.PENALTY, Source.POSITIVE]))
        day = add_months(as_of, -RETENTION_MONTHS) - dt.timedelta(days=draw(st.integers(0, 400)))
        return source, draw(row_of(source, as_of, day))
    if kind in ("minor", "expired"):
        row = draw(penalty_row(as_of, draw(before)))
        if kind == "minor":
            row["severity"] = "minor"
        else:
            bounds = {"general": (3, 12), "serious": (12, 36)}
            row["severity"] = draw(st.sampled_from(sorted(bounds)))
            low, _ = bounds[row["severity"]]
            elapsed = 0
            while add_months(row["decided_on"], elapsed + 1) <= as_of:
                elapsed += 1
            if elapsed < low:  # too recent to have expired: move it back
                row["decided_on"] = add_months(as_of, -low)
                elapsed = low
            row["window_months"] = draw(st.integers(low, min(elapsed, bounds[row["severity"]][1])))
        return Source.PENALTY, row
    if kind == "closed court":
        row = draw(court_row(as_of, draw(before)))
        row["status"] = draw(st.sampled_from(["fulfilled", "removed"]))
        row["closed_on"] = draw(st.dates(min_value=row["filed_on"], max_value=as_of))
        return Source.COURT, row
    source = draw(st.sampled_from(list(Source)))
    if source in MONTHLY:
        row = draw(row_of(source, as_of, add_months(as_of.replace(day=1), -draw(st.integers(1, 40)))))
    else:
        row = draw(row_of(source, as_of, draw(before)))
    dated = row.get("month") or row.get("filed_on") or row.get("decided_on") or row["event_on"]
    state = st.dates(min_value=dated, max_value=as_of)
    if kind == "repaired":
        row["repaired_on"] = draw(state)
    else:  # a dispute unanswered past its due date
        row["dispute_opened_on"] = draw(st.dates(min_value=dated,
                                                 max_value=max(dated, as_of - dt.timedelta(days=1))))
        row["dispute_due_on"] = draw(st.dates(min_value=row["dispute_opened_on"],
                                              max_value=max(row["dispute_opened_on"],
                                                            as_of - dt.timedelta(days=1))))
        row["dispute_closed_on"] = draw(st.none() | st.dates(
            min_value=as_of + dt.timedelta(days=1), max_value=as_of + dt.timedelta(days=60)))
    return source, row
