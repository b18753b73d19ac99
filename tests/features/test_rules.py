"""Record rules, one by one, at their boundaries: the day before, the day of, the day after."""

from __future__ import annotations

import calendar
import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import rules
from features.records import DEFAULT_WINDOW_MONTHS, Source
from features.rules import (
    DISPUTE_OVERDUE,
    FULFILLED,
    MINOR,
    NOT_YET_KNOWN,
    OUTSIDE_WINDOW,
    PAST_RETENTION,
    REMOVED,
    REPAIRED,
    counts,
    explain_records,
    reason,
)
from tests.features import strategies as S

D = dt.date
DAY = dt.timedelta(days=1)
SS, TR, CT, PN, PO = (Source.SOCIAL_SECURITY, Source.TRANSIT, Source.COURT, Source.PENALTY,
                      Source.POSITIVE)


def ss(month: dt.date, **state) -> dict:
    return {"month": month, "status": "paid", "contribution_base": 5000.0, "arrears": 0.0, **state}


def tr(month: dt.date, **state) -> dict:
    return {"month": month, "rides": 3, "bike_rides": 1, "overdue_returns": 0,
            "unpaid_fees": 0.0, "fare_evasions": 0, "damage_incidents": 0, **state}


def pn(decided: dt.date, severity: str = "general", category: str = "other",
       window: int | None = None, **state) -> dict:
    return {"decision_no": "d1", "decided_on": decided, "category": category,
            "severity": severity, "fine": 100.0, "window_months": window, **state}


def ct(filed: dt.date, status: str = "active", closed: dt.date | None = None, **state) -> dict:
    return {"case_no": "c1", "filed_on": filed, "amount": 1000.0, "status": status,
            "closed_on": closed, **state}


def po(event: dt.date, **state) -> dict:
    return {"event_no": "e1", "event_on": event, "kind": "honour", "hours": 0.0, **state}


def around(day: dt.date, before, of, after, label: str, source, make) -> list:
    """Three cases: as of the day before `day`, the day itself and the day after."""
    return [pytest.param(source, make, day + delta, want, id=f"{label}-{name}")
            for name, delta, want in (("day-before", -DAY, before), ("day-of", 0 * DAY, of),
                                      ("day-after", DAY, after))]


CASES = [
    # Nothing dated on or after as_of counts (a month is dated on its last day).
    *around(D(2025, 3, 10), NOT_YET_KNOWN, NOT_YET_KNOWN, None, "event-dated",
            PO, po(D(2025, 3, 10))),
    *around(D(2025, 3, 10), NOT_YET_KNOWN, NOT_YET_KNOWN, None, "penalty-decided",
            PN, pn(D(2025, 3, 10))),
    *around(D(2025, 3, 10), NOT_YET_KNOWN, NOT_YET_KNOWN, None, "court-filed",
            CT, ct(D(2025, 3, 10))),
    *around(D(2025, 6, 30), NOT_YET_KNOWN, NOT_YET_KNOWN, None, "ss-month-end",
            SS, ss(D(2025, 6, 1))),
    *around(D(2024, 2, 29), NOT_YET_KNOWN, NOT_YET_KNOWN, None, "transit-leap-month-end",
            TR, tr(D(2024, 2, 1))),
    # Minor penalties never count, however recent.
    *around(D(2025, 3, 11), NOT_YET_KNOWN, MINOR, MINOR, "minor", PN,
            pn(D(2025, 3, 10), "minor", window=12)),
    # A general penalty counts for its own window, ending on decided_on + window months.
    *around(D(2025, 9, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "general-own-6",
            PN, pn(D(2025, 3, 10), "general", window=6)),
    *around(D(2025, 6, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "general-own-3",
            PN, pn(D(2025, 3, 10), "general", window=3)),
    *around(D(2026, 3, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "general-own-12",
            PN, pn(D(2025, 3, 10), "general", window=12)),
    # ... or its category's default when the decision states none.
    *around(D(2025, 6, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "general-traffic-default",
            PN, pn(D(2025, 3, 10), "general", "traffic")),
    *around(D(2026, 3, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "general-tax-default",
            PN, pn(D(2025, 3, 10), "general", "tax")),
    # A serious one for 12–36 months.
    *around(D(2026, 3, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "serious-own-12",
            PN, pn(D(2025, 3, 10), "serious", window=12)),
    *around(D(2028, 3, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "serious-own-36",
            PN, pn(D(2025, 3, 10), "serious", window=36)),
    *around(D(2027, 3, 10), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "serious-market-default",
            PN, pn(D(2025, 3, 10), "serious", "market")),
    # Month arithmetic clamps to the month's end: Aug 31 + 6 months is Feb 28.
    *around(D(2025, 2, 28), None, OUTSIDE_WINDOW, OUTSIDE_WINDOW, "window-clamped",
            PN, pn(D(2024, 8, 31), "general", window=6)),
    # A court listing counts while active, and stops on the day it is fulfilled or removed.
    *around(D(2025, 5, 20), None, FULFILLED, FULFILLED, "court-fulfilled",
            CT, ct(D(2024, 1, 5), "fulfilled", D(2025, 5, 20))),
    *around(D(2025, 5, 20), None, REMOVED, REMOVED, "court-removed",
            CT, ct(D(2024, 1, 5), "removed", D(2025, 5, 20))),
    pytest.param(CT, ct(D(2024, 1, 5), "fulfilled", None), D(2025, 5, 20), FULFILLED,
                 id="court-fulfilled-without-date"),
    # Repaired: stops counting from its repair date.
    *around(D(2025, 4, 2), None, REPAIRED, REPAIRED, "repaired-penalty",
            PN, pn(D(2025, 1, 10), "serious", repaired_on=D(2025, 4, 2))),
    *around(D(2025, 4, 2), None, REPAIRED, REPAIRED, "repaired-ss-month",
            SS, ss(D(2025, 1, 1), repaired_on=D(2025, 4, 2))),
    *around(D(2025, 4, 2), None, REPAIRED, REPAIRED, "repaired-court",
            CT, ct(D(2024, 1, 5), repaired_on=D(2025, 4, 2))),
    # Disputed: it keeps counting while the dispute is checked, up to and on its due date ...
    *around(D(2025, 4, 2), None, None, None, "dispute-opened",
            TR, tr(D(2025, 1, 1), dispute_opened_on=D(2025, 4, 2),
                   dispute_due_on=D(2025, 4, 22))),
    # ... stops counting the day after an unanswered dispute's due date ...
    *around(D(2025, 4, 23), None, DISPUTE_OVERDUE, DISPUTE_OVERDUE, "dispute-overdue",
            TR, tr(D(2025, 1, 1), dispute_opened_on=D(2025, 4, 2),
                   dispute_due_on=D(2025, 4, 22))),
    # ... and counts again from the day an overdue dispute is answered (rejected).
    *around(D(2025, 5, 2), DISPUTE_OVERDUE, None, None, "dispute-answered-late",
            PN, pn(D(2025, 1, 10), "serious", dispute_opened_on=D(2025, 4, 2),
                   dispute_due_on=D(2025, 4, 22), dispute_closed_on=D(2025, 5, 2))),
    # A dispute answered in time never stops the record counting.
    pytest.param(PN, pn(D(2025, 1, 10), "serious", dispute_opened_on=D(2025, 4, 2),
                        dispute_due_on=D(2025, 4, 22), dispute_closed_on=D(2025, 4, 20)),
                 D(2025, 6, 1), None, id="dispute-answered-in-time"),
    # Retention: nothing dated on or before as_of - 60 months counts ...
    *around(D(2025, 7, 15), None, PAST_RETENTION, PAST_RETENTION, "retention-event",
            PO, po(D(2020, 7, 15))),
    *around(D(2025, 7, 31), None, PAST_RETENTION, PAST_RETENTION, "retention-month",
            SS, ss(D(2020, 7, 1))),
    # ... except an active court listing, which counts while active.
    pytest.param(CT, ct(D(2015, 1, 5)), D(2025, 7, 15), None, id="court-active-10-years"),
    pytest.param(CT, ct(D(2015, 1, 5), "fulfilled", D(2025, 7, 16)), D(2025, 7, 15), None,
                 id="court-fulfilled-later-still-active"),
    # The first rule that applies gives the reason.
    pytest.param(PN, pn(D(2025, 1, 10), "minor", repaired_on=D(2025, 2, 1),
                        dispute_opened_on=D(2025, 3, 1), dispute_due_on=D(2025, 3, 21)),
                 D(2025, 4, 1), DISPUTE_OVERDUE, id="order-overdue-dispute-first"),
    pytest.param(CT, ct(D(2024, 1, 5), "removed", D(2025, 1, 1), repaired_on=D(2025, 2, 1)),
                 D(2025, 4, 1), REPAIRED, id="order-repaired-before-closed"),
]


@pytest.mark.parametrize(("source", "record", "as_of", "want"), CASES)
def test_rule(source: Source, record: dict, as_of: dt.date, want: str | None) -> None:
    assert reason(source, record, as_of) == want
    assert counts(source, record, as_of) is (want is None)


def test_default_windows_fit_their_severity() -> None:
    for severity, (low, high) in (("general", (3, 12)), ("serious", (12, 36))):
        assert all(low <= months <= high for months in DEFAULT_WINDOW_MONTHS[severity].values())


def test_explain_records_on_a_frame() -> None:
    as_of = D(2025, 7, 15)
    rows = [
        pn(D(2025, 5, 1), "general", "traffic"),  # default 3 months: ends Aug 1, counts
        pn(D(2025, 1, 1), "general", "traffic"),  # ended Apr 1
        pn(D(2025, 6, 1), "minor"),
        pn(D(2025, 7, 15), "serious"),  # dated on as_of
        pn(D(2025, 2, 1), "serious", repaired_on=D(2025, 7, 15)),
        pn(D(2025, 2, 1), "serious", dispute_opened_on=D(2025, 6, 1),
           dispute_due_on=D(2025, 6, 21)),
        pn(D(2025, 2, 1), "serious", dispute_opened_on=D(2025, 7, 1),
           dispute_due_on=D(2025, 7, 21)),  # under dispute, in time: counts
    ]
    for i, row in enumerate(rows):
        row.update(decision_no=f"d{i}", person_key="p")
    frame = S.records_of({PN.value: rows}).penalty
    out = explain_records(PN, frame, as_of)
    assert out.columns == [*frame.columns, "reason", "under_dispute", "counts"]
    assert out["reason"].to_list() == [None, OUTSIDE_WINDOW, MINOR, NOT_YET_KNOWN, REPAIRED,
                                       DISPUTE_OVERDUE, None]
    assert out["counts"].to_list() == [True, False, False, False, False, False, True]
    assert out["under_dispute"].to_list() == [False] * 5 + [True, True]
    assert rules.counting(PN, frame, as_of)["decision_no"].to_list() == ["d0", "d6"]
    lazy = rules.counting(PN, frame.lazy(), as_of)
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect().height == 2


# An independent reference: the rules as DESIGN.md and the README state them, in plain Python.

def ref_add_months(day: dt.date, months: int) -> dt.date:
    year, month = day.year + (day.month - 1 + months) // 12, (day.month - 1 + months) % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def ref_reason(source: Source, row: dict, as_of: dt.date) -> str | None:
    if source in S.MONTHLY:
        month = row["month"]
        known = month.replace(day=calendar.monthrange(month.year, month.month)[1])
    else:
        known = row[{CT: "filed_on", PN: "decided_on", PO: "event_on"}[source]]
    if known >= as_of:
        return NOT_YET_KNOWN
    opened, closed, due = row["dispute_opened_on"], row["dispute_closed_on"], row["dispute_due_on"]
    if (opened is not None and opened <= as_of and (closed is None or closed > as_of)
            and due is not None and due < as_of):
        return DISPUTE_OVERDUE
    if row["repaired_on"] is not None and row["repaired_on"] <= as_of:
        return REPAIRED
    if source is CT:
        if row["closed_on"] is not None and row["closed_on"] <= as_of:
            return FULFILLED if row["status"] == "fulfilled" else REMOVED
        return None
    if source is PN:
        if row["severity"] == "minor":
            return MINOR
        window = row["window_months"] or DEFAULT_WINDOW_MONTHS[row["severity"]][row["category"]]
        if ref_add_months(row["decided_on"], window) <= as_of:
            return OUTSIDE_WINDOW
    if known <= ref_add_months(as_of, -60):
        return PAST_RETENTION
    return None


@st.composite
def _rows_of_one_source(draw: st.DrawFn) -> tuple[Source, dt.date, list[dict]]:
    as_of = draw(S.as_of_dates())
    source = draw(st.sampled_from(list(Source)))
    rows = draw(st.lists(S.row_of(source, as_of), min_size=1, max_size=30))
    return source, as_of, rows


@settings(max_examples=60, deadline=None)
@given(case=_rows_of_one_source())
def test_rules_match_the_plain_python_reference(case) -> None:
    source, as_of, rows = case
    for row in rows:
        row["person_key"] = "p"
    frame = S.records_of({source.value: rows}).get(source)
    out = explain_records(source, frame, as_of)
    assert out["reason"].to_list() == [ref_reason(source, row, as_of) for row in rows]
    # the boolean fast path agrees with the reasons
    assert frame.select(rules.counts_expr(source, as_of))[:, 0].to_list() == out["counts"].to_list()


@given(day=st.dates(min_value=D(1990, 1, 1), max_value=D(2040, 12, 31)),
       months=st.integers(-100, 100))
def test_add_months_matches_polars(day: dt.date, months: int) -> None:
    polars_day = pl.select(pl.lit(day).dt.offset_by(f"{months}mo")).item()
    assert rules.add_months(day, months) == polars_day == ref_add_months(day, months)
