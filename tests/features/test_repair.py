"""Credit-repair terms agree with the record rules: a record stops counting by itself exactly on
its `expires_on`, and is repairable only after its minimum publication period."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from features.records import Source
from features.repair import MIN_PUBLICATION_MONTHS, is_adverse, terms
from features.rules import add_months, counts
from tests.features import strategies as S

DAY = dt.timedelta(days=1)
NO_STATE = {"repaired_on": None, "dispute_opened_on": None, "dispute_closed_on": None,
            "dispute_due_on": None}


@st.composite
def expiring(draw: st.DrawFn) -> tuple[Source, dict]:
    """A record that counts by its own columns and stops by time alone (no repair, no
    dispute, no court listing, no minor penalty)."""
    as_of = draw(S.as_of_dates())
    source = draw(st.sampled_from([Source.SOCIAL_SECURITY, Source.TRANSIT, Source.PENALTY,
                                   Source.POSITIVE]))
    row = {**draw(S.row_of(source, as_of)), **NO_STATE}
    if source is Source.PENALTY and row["severity"] == "minor":
        row["severity"] = "general"
        row["window_months"] = None
    return source, row


@settings(max_examples=150, deadline=None)
@given(case=expiring())
def test_a_record_stops_counting_exactly_on_its_expiry(case) -> None:
    source, row = case
    expires = terms(source, row).expires_on
    assert expires is not None
    assert counts(source, row, expires - DAY)
    assert not counts(source, row, expires)


@settings(max_examples=100, deadline=None)
@given(case=expiring())
def test_repair_waits_for_the_minimum_publication_period(case) -> None:
    source, row = case
    given_terms = terms(source, row)
    assert given_terms.adverse == is_adverse(source, row)
    if not given_terms.adverse:
        assert not given_terms.repairable and given_terms.repairable_from is None
        return
    key = f"penalty:{row['severity']}" if source is Source.PENALTY else source.value
    dated = row.get("decided_on") or add_months(row["month"].replace(day=1), 1) - DAY
    assert given_terms.repairable_from == add_months(dated, MIN_PUBLICATION_MONTHS[key])
    assert given_terms.obligation_en and given_terms.obligation_zh


def test_an_active_court_listing_is_closed_by_fulfilment_not_repair() -> None:
    listing = {"case_no": "c", "filed_on": dt.date(2024, 1, 1), "amount": 1.0,
               "status": "active", "closed_on": None, **NO_STATE}
    given_terms = terms(Source.COURT, listing)
    assert given_terms.adverse and not given_terms.repairable
    assert given_terms.expires_on is None and "court" in given_terms.obligation_en
