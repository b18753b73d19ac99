"""The one-person fast path of the builder gives exactly the row of the group-by path."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.build import _build_one, build_features
from features.records import Records, Source
from tests.features import strategies as S

AS_OF = dt.date(2025, 7, 15)


def by_group_by(records: Records, as_of: dt.date, key: str) -> pl.DataFrame:
    """The normal path for one person: a second person in `persons` keeps `build_features`
    off the fast path; then that person's row is dropped."""
    other = "0" * 64 if key != "0" * 64 else "1" * 64
    return build_features(records, as_of, [key, other]).filter(pl.col("person_key") == key)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(city=S.city_rows(AS_OF, 1, 4), pick=st.integers(0, 10), as_of=S.as_of_dates(),
       only_theirs=st.booleans())
def test_one_person_equals_the_group_by_path(city, pick, as_of, only_theirs) -> None:
    """Random people (records that count and records that do not, of every source, some
    sources empty), one of them or a stranger picked; their records alone (as the store
    loads them) or everyone's."""
    records = S.records_of(city)
    keys = sorted(records.persons().to_list()) + ["f" * 64]
    key = keys[pick % len(keys)]
    if only_theirs:
        records = Records(**{s.value: records.get(s).filter(pl.col("person_key") == key)
                             for s in Source})
    fast = build_features(records, as_of, [key])
    assert_frame_equal(fast, _build_one(records, as_of, key), check_exact=True)
    assert_frame_equal(fast, by_group_by(records, as_of, key), check_exact=True)


def test_one_person_of_the_hand_worked_example() -> None:
    """The hand-worked person p1 (every feature off its default, records that must not count
    mixed in) and the person whose records all fail the rules, with others' records around."""
    from tests.features.test_build import AS_OF as HAND
    from tests.features.test_build import NOBODY, ONLY_MINOR, P1, P2, p1_rows

    every = S.records_of(S.merge(p1_rows(), p1_rows(P2)))
    for key in (P1, NOBODY, ONLY_MINOR):
        assert_frame_equal(build_features(every, HAND, [key]), by_group_by(every, HAND, key),
                           check_exact=True)
