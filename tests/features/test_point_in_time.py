"""Point-in-time, as properties: what must not change a person's features as of a date."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.build import build_features
from features.records import Source
from tests.features import strategies as S

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEY = "a" * 64


def _features(rows: S.Rows, as_of: dt.date, key: str = KEY) -> pl.DataFrame:
    return build_features(S.records_of(rows), as_of, persons=[key])


def _with(rows: S.Rows, source: Source, row: S.Row, key: str = KEY) -> S.Rows:
    return S.merge(rows, {source.value: [{**row, "person_key": key}]})


@SETTINGS
@given(data=st.data())
def test_records_dated_on_or_after_as_of_change_nothing(data: st.DataObject) -> None:
    as_of = data.draw(S.as_of_dates())
    rows = data.draw(S.person_rows(as_of, KEY))
    before = _features(rows, as_of)
    extra = data.draw(st.lists(S.not_yet_known(as_of), min_size=1, max_size=3))
    after = rows
    for source, row in extra:
        after = _with(after, source, row)
    assert_frame_equal(_features(after, as_of), before)


@SETTINGS
@given(data=st.data())
def test_records_outside_their_window_change_nothing(data: st.DataObject) -> None:
    """Minor penalties, expired windows, repaired, disputed, closed court listings and records
    past retention."""
    as_of = data.draw(S.as_of_dates())
    rows = data.draw(S.person_rows(as_of, KEY))
    before = _features(rows, as_of)
    source, row = data.draw(S.outside_window(as_of))
    assert_frame_equal(_features(_with(rows, source, row), as_of), before)


@SETTINGS
@given(data=st.data())
def test_features_never_depend_on_another_persons_records(data: st.DataObject) -> None:
    as_of = data.draw(S.as_of_dates())
    mine = data.draw(S.person_rows(as_of, KEY))
    others = data.draw(S.city_rows(as_of, min_people=1, max_people=4))
    others = {source: [r for r in rows if r["person_key"] != KEY] for source, rows in others.items()}
    assert_frame_equal(_features(S.merge(mine, others), as_of), _features(mine, as_of))


@SETTINGS
@given(data=st.data())
def test_the_property_strategies_are_not_vacuous(data: st.DataObject) -> None:
    """The same record dated inside its window would count: the properties above test the rule,
    not a record that could never matter."""
    as_of = data.draw(S.as_of_dates())
    source = data.draw(st.sampled_from(list(Source)))
    row = data.draw(S.row_of(source, as_of))
    for state in ("repaired_on", "dispute_opened_on", "dispute_closed_on"):
        row[state] = None
    if source in S.MONTHLY:
        row["month"] = S.add_months(as_of.replace(day=1), -1)
    elif source is Source.COURT:
        row.update(filed_on=as_of - dt.timedelta(days=1), status="active", closed_on=None)
    elif source is Source.PENALTY:
        row.update(decided_on=as_of - dt.timedelta(days=1), severity="serious")
    else:
        row["event_on"] = as_of - dt.timedelta(days=1)
    counted = _features(_with({}, source, row), as_of)["records_counted"].item()
    assert counted == 1
