"""The builder, against expectations worked out by hand from records written here.

One person, "p1", as of 2025-07-15 (so last month, m_ago 1, is June 2025), with records of every
source chosen so that every feature has a value that is not its default, and records that must
not count mixed in. The comments derive each expected value.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.build import RECORDS_COUNTED, build_features
from features.catalog import BY_NAME, EARLY_DEFAULT, EARLY_PRIOR, FEATURE_NAMES, NEVER
from features.records import Records, Source
from tests.features import strategies as S
from tests.features.test_rules import ref_reason

AS_OF = dt.date(2025, 7, 15)
P1, P2, NOBODY, ONLY_MINOR = "p1" * 32, "p2" * 32, "p0" * 32, "pm" * 32


def month(k: int) -> dt.date:
    """The first day of the month k months before July 2025 (k = 1: June 2025)."""
    index = 2025 * 12 + 6 - k
    return dt.date(index // 12, index % 12 + 1, 1)


def ss_rows() -> list[dict]:
    # Months 1..40 except 5; missed in 3, 14, 30, 37; exempt (not liable, as on a pension) in
    # 8, which is good standing, not a gap; base 5000 up to month 6, 6000 after;
    # arrears 150 in month 1, 800 in month 3, 300 in month 14, 100 in month 25.
    rows = []
    for k in [k for k in range(1, 41) if k != 5]:
        status = "missed" if k in (3, 14, 30, 37) else "exempt" if k == 8 else "paid"
        rows.append({"month": month(k), "status": status,
                     "contribution_base": 5000.0 if k <= 6 else 6000.0,
                     "arrears": {1: 150.0, 3: 800.0, 14: 300.0, 25: 100.0}.get(k, 0.0),
                     # paid early in 2, 4, 6 and 8 (exempt: a pensioner's own dues count);
                     # also marked in 3 (missed) and 25 (outside 24 months), which do not
                     # count; 7 not reported
                     "paid_early": 1 if k in (2, 3, 4, 6, 8, 25) else (None if k == 7 else 0)})
    # Not counting: this month (not yet known), month 41 (disputed, unanswered past its due
    # date), month 61 (retention).
    rows.append({"month": month(0), "status": "missed", "contribution_base": 1.0,
                 "arrears": 9999.0})
    rows.append({"month": month(41), "status": "paid", "contribution_base": 1.0, "arrears": 0.0,
                 "dispute_opened_on": dt.date(2025, 6, 1), "dispute_due_on": dt.date(2025, 6, 21)})
    rows.append({"month": month(61), "status": "missed", "contribution_base": 1.0,
                 "arrears": 9999.0})
    return rows


SS_EXPECTED = {
    "ss_months_paid_12m": 10,  # months 1..12 minus 5 (absent) minus 3 (missed); 8 is exempt
    "ss_months_missed_12m": 1,  # month 3
    "ss_months_missed_36m": 3,  # months 3, 14, 30 (37 is outside)
    "ss_current_paid_streak": 2,  # months 1, 2 paid; 3 missed
    "ss_gaps_24m": 3,  # unpaid months after a paid one: 3 (after 4), 5 (after 6), 14 (after 15)
    "ss_arrears_latest": 150,  # month 1
    "ss_months_with_arrears_24m": 3,  # months 1, 3, 14 (25 is outside)
    "ss_months_of_history": 40,  # the overdue disputed month 41 does not count
    # within 24 months: 24 minus 5 (absent), 3 and 14 (missed), 7 (not reported) = 20 months
    # in good standing reported, 4 early: (4 + 2·0.55) / (20 + 2)
    "ss_paid_early_share_24m": (4 + 2 * 0.55) / (20 + 2),
}


def tr_rows() -> list[dict]:
    # Months 1..15, 20, 24, 25, 30: 10 rides and 2 bike rides each, except month 2 (none).
    extra = {4: {"overdue_returns": 1}, 20: {"overdue_returns": 2, "fare_evasions": 1},
             30: {"overdue_returns": 5}, 1: {"unpaid_fees": 30.0}, 6: {"unpaid_fees": 50.0},
             13: {"unpaid_fees": 80.0}, 10: {"fare_evasions": 1},
             25: {"fare_evasions": 3, "damage_incidents": 1}, 24: {"damage_incidents": 1}}
    rows = []
    for k in [*range(1, 16), 20, 24, 25, 30]:
        row = {"month": month(k), "rides": 0 if k == 2 else 10, "bike_rides": 0 if k == 2 else 2,
               "overdue_returns": 0, "unpaid_fees": 0.0, "fare_evasions": 0,
               "damage_incidents": 0}
        # paid early in months 3, 5, 7, 9 (of those that ended with nothing unpaid), and in
        # month 6, which ended with a fee unpaid (it does not count: not a clean month)
        row["paid_early"] = 1 if k in (3, 5, 6, 7, 9) else (None if k == 11 else 0)
        rows.append({**row, **extra.get(k, {})})
    # Not counting: this month (not yet known), and month 31, repaired the day before as_of.
    rows.append({"month": month(0), "rides": 99, "bike_rides": 99, "overdue_returns": 9,
                 "unpaid_fees": 999.0, "fare_evasions": 9, "damage_incidents": 9})
    rows.append({"month": month(31), "rides": 99, "bike_rides": 99, "overdue_returns": 9,
                 "unpaid_fees": 999.0, "fare_evasions": 9, "damage_incidents": 9,
                 "repaired_on": dt.date(2025, 7, 14)})
    return rows


TR_EXPECTED = {
    "tr_rides_12m": 110,  # 11 active months of 1..12, 10 rides each
    "tr_bike_rides_12m": 22,
    "tr_active_months_12m": 11,  # month 2 had no ride
    "tr_overdue_returns_12m": 1,  # month 4
    "tr_overdue_returns_24m": 3,  # months 4 and 20
    "tr_unpaid_fees_latest": 30,  # month 1
    "tr_max_unpaid_fees_12m": 50,  # month 6 (month 13's 80 is older than 12 months)
    "tr_months_with_unpaid_fees_12m": 2,  # months 1, 6
    "tr_fare_evasions_24m": 2,  # months 10, 20 (25 is outside)
    "tr_damage_incidents_24m": 1,  # month 24 (25 is outside)
    "tr_months_since_overdue": 4,
    "tr_months_of_history": 30,
    # within 24 months: 16 months (1..15, 20, 24 minus 2 unpaid: 1, 6, 13; minus 11, not
    # reported) = 13 clean reported months, 4 early: (4 + 2·0.55) / (13 + 2)
    "tr_paid_early_share_24m": (4 + 2 * 0.55) / (13 + 2),
}


def ct_rows() -> list[dict]:
    return [
        {"case_no": "A", "filed_on": dt.date(2023, 3, 10), "amount": 10000.0, "status": "active"},
        {"case_no": "B", "filed_on": dt.date(2025, 2, 1), "amount": 5000.0, "status": "active"},
        {"case_no": "E", "filed_on": dt.date(2016, 1, 5), "amount": 1000.0, "status": "active"},
        {"case_no": "G", "filed_on": dt.date(2023, 7, 1), "amount": 2000.0, "status": "active"},
        # not counting: fulfilled, removed, filed after as_of
        {"case_no": "C", "filed_on": dt.date(2024, 3, 1), "amount": 99999.0,
         "status": "fulfilled", "closed_on": dt.date(2025, 1, 1)},
        {"case_no": "D", "filed_on": dt.date(2024, 3, 1), "amount": 99999.0,
         "status": "removed", "closed_on": dt.date(2025, 7, 15)},
        {"case_no": "F", "filed_on": dt.date(2025, 7, 20), "amount": 99999.0, "status": "active"},
    ]


CT_EXPECTED = {
    "ct_active_listings": 4,  # A, B, E, G (E is ten years old but still active)
    "ct_active_amount": 18000,
    "ct_listings_filed_24m": 1,  # B (m_ago 5); G is m_ago 24, A 28: outside
    "ct_months_since_listing": 5,
}


def pn_rows() -> list[dict]:
    def p(no, decided, category, severity, fine, window=None, **state):
        return {"decision_no": no, "decided_on": decided, "category": category,
                "severity": severity, "fine": fine, "window_months": window, **state}
    return [
        p("1", dt.date(2025, 5, 1), "traffic", "general", 200.0),  # default 3: ends Aug 1
        p("2", dt.date(2024, 9, 10), "tax", "general", 500.0, 12),  # ends 2025-09-10
        p("3", dt.date(2024, 1, 20), "market", "serious", 3000.0),  # default 24: ends 2026
        p("4", dt.date(2025, 6, 1), "traffic", "minor", 50.0),  # never counts
        p("5", dt.date(2024, 12, 1), "market", "general", 700.0),  # default 6: ended Jun 1
        p("6", dt.date(2025, 1, 1), "tax", "serious", 900.0, repaired_on=dt.date(2025, 3, 1)),
        p("7", dt.date(2025, 3, 3), "environment", "general", 400.0,
          dispute_opened_on=dt.date(2025, 4, 1),
          dispute_due_on=dt.date(2025, 4, 21)),  # disputed, unanswered past its due date
        p("8", dt.date(2025, 2, 2), "environment", "general", 100.0,
          dispute_opened_on=dt.date(2025, 3, 1), dispute_closed_on=dt.date(2025, 4, 1)),
        p("9", dt.date(2025, 1, 20), "other", "general", 50.0, 12),  # m_ago 6: ends 2026
    ]


PN_EXPECTED = {
    "pn_general_counting": 4,  # 1, 2, 8, 9
    "pn_serious_counting": 1,  # 3
    "pn_recent_6m": 2,  # this month and the 5 before: 1 (m_ago 2), 8 (m_ago 5); not 9 (6)
    "pn_fines_counting": 3850,  # 200 + 500 + 3000 + 100 + 50
    "pn_categories_counting": 5,  # traffic, tax, market, environment, other
    "pn_months_since_latest": 2,
}


def po_rows() -> list[dict]:
    def e(no, day, kind, hours=0.0):
        return {"event_no": no, "event_on": day, "kind": kind, "hours": hours}
    return [
        e("v1", dt.date(2025, 7, 1), "volunteering", 5.0),  # m_ago 0
        e("v2", dt.date(2023, 8, 1), "volunteering", 7.0),  # m_ago 23
        e("v3", dt.date(2023, 7, 1), "volunteering", 11.0),  # m_ago 24: outside 24 months
        e("b1", dt.date(2022, 8, 10), "blood_donation"),  # m_ago 35
        e("b2", dt.date(2022, 7, 10), "blood_donation"),  # m_ago 36: outside 36 months
        e("b3", dt.date(2024, 1, 1), "blood_donation"),  # m_ago 18
        e("h1", dt.date(2021, 1, 1), "honour"),
        e("h2", dt.date(2020, 7, 15), "honour"),  # on as_of - 60 months: past retention
        e("x", dt.date(2025, 7, 16), "honour"),  # after as_of
    ]


PO_EXPECTED = {
    "po_volunteer_hours_24m": 12,  # 5 + 7
    "po_blood_donations_36m": 2,  # b1, b3
    "po_honours_60m": 1,  # h1
    "po_events_24m": 3,  # v1, v2, b3
}

DERIVED_EXPECTED = {"months_of_history": 40, "sources_reporting": 3}
# counting records: ss 39 + transit 19 + court 4 + penalty 5 + positive 7 (v1-3, b1-3, h1)
P1_COUNTED = 39 + 19 + 4 + 5 + 7


def with_key(rows: list[dict], key: str) -> list[dict]:
    return [{**row, "person_key": key} for row in rows]


def p1_rows(key: str = P1) -> dict[str, list[dict]]:
    return {Source.SOCIAL_SECURITY.value: with_key(ss_rows(), key),
            Source.TRANSIT.value: with_key(tr_rows(), key),
            Source.COURT.value: with_key(ct_rows(), key),
            Source.PENALTY.value: with_key(pn_rows(), key),
            Source.POSITIVE.value: with_key(po_rows(), key)}


@pytest.fixture(scope="module")
def built() -> pl.DataFrame:
    others = {
        # p2: only a ten-year-old active listing; months since is capped at 60
        Source.COURT.value: with_key([{"case_no": "Z", "filed_on": dt.date(2015, 1, 1),
                                       "amount": 10.0, "status": "active"}], P2),
        # only a minor penalty: present, but nothing counts
        Source.PENALTY.value: with_key([{"decision_no": "m", "decided_on": dt.date(2025, 1, 1),
                                         "category": "traffic", "severity": "minor",
                                         "fine": 10.0}], ONLY_MINOR),
    }
    return build_features(S.records_of(S.merge(p1_rows(), others)), AS_OF)


def row_of(frame: pl.DataFrame, key: str) -> dict:
    return frame.filter(pl.col("person_key") == key).row(0, named=True)


@pytest.mark.parametrize("expected", [SS_EXPECTED, TR_EXPECTED, CT_EXPECTED, PN_EXPECTED,
                                      PO_EXPECTED, DERIVED_EXPECTED],
                         ids=["social_security", "transit", "court", "penalty", "positive",
                              "derived"])
def test_p1_by_source(built: pl.DataFrame, expected: dict[str, float]) -> None:
    row = row_of(built, P1)
    assert {name: row[name] for name in expected} == pytest.approx(expected)


def test_every_feature_has_a_hand_computed_expectation() -> None:
    covered = {**SS_EXPECTED, **TR_EXPECTED, **CT_EXPECTED, **PN_EXPECTED, **PO_EXPECTED,
               **DERIVED_EXPECTED}
    assert set(covered) == set(FEATURE_NAMES)
    for name, value in covered.items():  # every expectation differs from the default
        assert value != BY_NAME[name].default, name


def test_records_counted(built: pl.DataFrame) -> None:
    assert row_of(built, P1)[RECORDS_COUNTED] == P1_COUNTED
    assert row_of(built, P2)[RECORDS_COUNTED] == 1
    assert row_of(built, ONLY_MINOR)[RECORDS_COUNTED] == 0


def test_old_active_listing_is_capped(built: pl.DataFrame) -> None:
    row = row_of(built, P2)
    assert row["ct_months_since_listing"] == 60 < NEVER
    assert row["ct_active_listings"] == 1


def _defaults(row: dict) -> None:
    for name in FEATURE_NAMES:  # derived features of all-default features are 0
        want = 0.0 if BY_NAME[name].source == "derived" else BY_NAME[name].default
        assert row[name] == want, name


def test_person_with_only_non_counting_records_gets_defaults(built: pl.DataFrame) -> None:
    _defaults(row_of(built, ONLY_MINOR))


def test_persons_with_no_records_get_defaults() -> None:
    out = build_features(S.records_of(p1_rows()), AS_OF, persons=[NOBODY, P1])
    assert out["person_key"].to_list() == sorted([NOBODY, P1])
    _defaults(row_of(out, NOBODY))
    assert row_of(out, NOBODY)[RECORDS_COUNTED] == 0
    empty = build_features(Records(), AS_OF, persons=[NOBODY])
    _defaults(row_of(empty, NOBODY))
    assert build_features(Records(), AS_OF).height == 0


def test_shape_order_and_dtypes(built: pl.DataFrame) -> None:
    assert built.columns == ["person_key", *FEATURE_NAMES, RECORDS_COUNTED]
    assert built["person_key"].to_list() == sorted([P1, P2, ONLY_MINOR])
    assert built["person_key"].is_unique().all()
    assert all(built.schema[name] == pl.Float64 for name in FEATURE_NAMES)
    assert built.schema[RECORDS_COUNTED] == pl.Int64
    assert built.select(pl.all().is_null().any()).row(0) == (False,) * built.width


def test_persons_argument_dedupes_and_sorts() -> None:
    out = build_features(S.records_of(p1_rows()), AS_OF, persons=[P1, NOBODY, P1])
    assert out["person_key"].to_list() == sorted([NOBODY, P1])


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_alone_equals_in_a_batch(data: st.DataObject) -> None:
    as_of = data.draw(S.as_of_dates())
    city = data.draw(S.cities(as_of, min_people=2, max_people=8))
    batch = build_features(city, as_of)
    assert batch["person_key"].to_list() == city.persons().to_list()
    for key in city.persons().to_list():
        alone = build_features(city.filter_persons([key]), as_of)
        assert_frame_equal(alone, batch.filter(pl.col("person_key") == key))


# An independent reference: every feature in plain Python, from the reference rules.

def _reference(rows: S.Rows, key: str, as_of: dt.date) -> dict[str, float]:
    def counting(source: Source) -> list[tuple[int, dict]]:
        date = {Source.SOCIAL_SECURITY: "month", Source.TRANSIT: "month", Source.COURT: "filed_on",
                Source.PENALTY: "decided_on", Source.POSITIVE: "event_on"}[source]
        full = {"repaired_on": None, "dispute_opened_on": None, "dispute_closed_on": None,
                "dispute_due_on": None, "window_months": None, "closed_on": None}
        out = []
        for row in rows.get(source.value, []):
            row = {**full, **row}
            if row["person_key"] == key and ref_reason(source, row, as_of) is None:
                d = row[date]
                out.append(((as_of.year * 12 + as_of.month) - (d.year * 12 + d.month), row))
        return out

    def latest(pairs: list, column: str, within: int) -> float:
        recent = [(m, r) for m, r in pairs if m <= within]
        return float(min(recent, key=lambda p: p[0])[1][column]) if recent else 0.0

    f: dict[str, float] = {}
    ss = counting(Source.SOCIAL_SECURITY)
    paid = {m for m, r in ss if r["status"] in ("paid", "exempt")}
    missed = [m for m, r in ss if r["status"] == "missed"]
    streak = 0
    while streak + 1 in paid and streak < 36:
        streak += 1
    f.update(
        ss_months_paid_12m=sum(1 for m in paid if m <= 12),
        ss_months_missed_12m=sum(1 for m in missed if m <= 12),
        ss_months_missed_36m=sum(1 for m in missed if m <= 36),
        ss_current_paid_streak=streak,
        ss_gaps_24m=sum(1 for m in range(1, 25) if m not in paid and m + 1 in paid),
        ss_arrears_latest=latest(ss, "arrears", 12),
        ss_months_with_arrears_24m=sum(1 for m, r in ss if r["arrears"] > 0 and m <= 24),
        ss_months_of_history=max((m for m, _ in ss), default=0),
    )
    early = [r["paid_early"] for m, r in ss if m <= 24 and r["status"] in ("paid", "exempt")
             and r.get("paid_early") is not None]
    f["ss_paid_early_share_24m"] = ((sum(early) + EARLY_PRIOR * EARLY_DEFAULT)
                                    / (len(early) + EARLY_PRIOR)) if ss else EARLY_DEFAULT
    tr = counting(Source.TRANSIT)

    def tsum(column: str, within: int) -> float:
        return sum(r[column] for m, r in tr if m <= within)
    overdue = [m for m, r in tr if r["overdue_returns"] > 0]
    f.update(
        tr_rides_12m=tsum("rides", 12), tr_bike_rides_12m=tsum("bike_rides", 12),
        tr_active_months_12m=sum(1 for m, r in tr if m <= 12 and r["rides"] + r["bike_rides"] > 0),
        tr_overdue_returns_12m=tsum("overdue_returns", 12),
        tr_overdue_returns_24m=tsum("overdue_returns", 24),
        tr_unpaid_fees_latest=latest(tr, "unpaid_fees", 12),
        tr_max_unpaid_fees_12m=max((r["unpaid_fees"] for m, r in tr if m <= 12), default=0.0),
        tr_months_with_unpaid_fees_12m=sum(1 for m, r in tr if m <= 12 and r["unpaid_fees"] > 0),
        tr_fare_evasions_24m=tsum("fare_evasions", 24),
        tr_damage_incidents_24m=tsum("damage_incidents", 24),
        tr_months_since_overdue=min(overdue, default=NEVER),
        tr_months_of_history=max((m for m, _ in tr), default=0),
    )
    clean = [r for m, r in tr if m <= 24 and r["unpaid_fees"] == 0
             and r.get("paid_early") is not None]
    f["tr_paid_early_share_24m"] = (
        (sum(r["paid_early"] for r in clean) + EARLY_PRIOR * EARLY_DEFAULT)
        / (len(clean) + EARLY_PRIOR)) if tr else EARLY_DEFAULT
    ct = counting(Source.COURT)
    f.update(
        ct_active_listings=len(ct), ct_active_amount=sum(r["amount"] for _, r in ct),
        ct_listings_filed_24m=sum(1 for m, _ in ct if m < 24),
        ct_months_since_listing=min(min(m for m, _ in ct), 60) if ct else NEVER,
    )
    pn = counting(Source.PENALTY)
    f.update(
        pn_general_counting=sum(1 for _, r in pn if r["severity"] == "general"),
        pn_serious_counting=sum(1 for _, r in pn if r["severity"] == "serious"),
        pn_recent_6m=sum(1 for m, _ in pn if m < 6),
        pn_fines_counting=sum(r["fine"] for _, r in pn),
        pn_categories_counting=len({r["category"] for _, r in pn}),
        pn_months_since_latest=min((m for m, _ in pn), default=NEVER),
    )
    po = counting(Source.POSITIVE)
    f.update(
        po_volunteer_hours_24m=sum(r["hours"] for m, r in po
                                   if r["kind"] == "volunteering" and m < 24),
        po_blood_donations_36m=sum(1 for m, r in po if r["kind"] == "blood_donation" and m < 36),
        po_honours_60m=sum(1 for _, r in po if r["kind"] == "honour"),
        po_events_24m=sum(1 for m, _ in po if m < 24),
    )
    positive = f["po_events_24m"] + f["po_honours_60m"] + f["po_blood_donations_36m"]
    f.update(
        months_of_history=max(f["ss_months_of_history"], f["tr_months_of_history"]),
        sources_reporting=(f["ss_months_of_history"] > 0) + (f["tr_months_of_history"] > 0)
        + (positive > 0),
        records_counted=len(ss) + len(tr) + len(ct) + len(pn) + len(po),
    )
    return {name: float(value) for name, value in f.items()}


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_matches_the_plain_python_reference(data: st.DataObject) -> None:
    as_of = data.draw(S.as_of_dates())
    rows = data.draw(S.city_rows(as_of, min_people=1, max_people=4))
    out = build_features(S.records_of(rows), as_of)
    for row in out.iter_rows(named=True):
        want = _reference(rows, row["person_key"], as_of)
        got = {name: float(row[name]) for name in want}
        assert got == pytest.approx(want), row["person_key"]
