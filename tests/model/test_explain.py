"""Explanations: reasons in points with the person's own values; no record; monotone."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.catalog import BY_NAME, FEATURE_NAMES, FEATURES, NO_RECORD_EN, NO_RECORD_ZH
from model.explain import NO_RECORD, explain
from model.scorecard import band_of
from tests.model import make_people, small_scorecard

MONOTONE = [f.name for f in FEATURES if f.direction]
VALUE = st.one_of(st.integers(0, 70).map(float), st.floats(0, 5000, allow_nan=False))
PERSON = st.fixed_dictionaries({name: VALUE for name in FEATURE_NAMES})


@pytest.fixture(scope="module")
def card():
    return small_scorecard()[0]


@pytest.fixture(scope="module")
def people() -> pl.DataFrame:
    return make_people(300, 31)[0].with_columns(records_counted=pl.lit(12))


def test_explanation_adds_up_and_orders_reasons(card, people) -> None:
    for i in range(0, 300, 15):
        row = people.slice(i, 1)
        result = explain(card, row)
        scored = card.score_frame(row)
        assert result.score == scored.score[0] and result.band == band_of(result.score)
        assert result.base_points + sum(result.points.values()) == pytest.approx(
            result.raw_score, abs=1e-6)
        lowering = [r.points for r in result.reasons_lowering]
        raising = [r.points for r in result.reasons_raising]
        assert len(lowering) <= 4 and len(raising) <= 4
        assert lowering == sorted(lowering) and raising == sorted(raising, reverse=True)
        assert all(p <= -0.5 for p in lowering) and all(p >= 0.5 for p in raising)
        negative = sorted(p for p in result.points.values() if p <= -0.5)[:4]
        assert lowering == negative  # the features that lowered the score most
        json.dumps(result.to_dict(), ensure_ascii=False)


def test_reason_texts_use_the_persons_values(card, people) -> None:
    row = people.row(0, named=True)
    row.update(tr_overdue_returns_12m=7.0)
    result = explain(card, row, records_counted=5)
    for reason in result.reasons_lowering + result.reasons_raising:
        feature = BY_NAME[reason.feature]
        assert reason.value == row[reason.feature]
        assert reason.text_en == feature.text(row[reason.feature], reason.points, "en")
        assert reason.text_zh == feature.text(row[reason.feature], reason.points, "zh")
    overdue = [r for r in result.reasons_lowering if r.feature == "tr_overdue_returns_12m"]
    assert overdue, "7 overdue returns should be among this person's main lowering reasons"
    assert "7 overdue bike returns" in overdue[0].text_en and "逾期还车7次" in overdue[0].text_zh
    assert overdue[0].line("en").endswith(" points") and "−" in overdue[0].line("en")
    only_en = explain(card, row, records_counted=5, lang="en")
    assert all(r.text_zh is None and r.text_en for r in only_en.reasons_lowering)


def test_no_record_gets_the_empty_file_score_and_one_reason(card) -> None:
    empty = {f.name: f.default for f in FEATURES}
    result = explain(card, empty, records_counted=0)
    batch = card.score_frame(pl.DataFrame([empty]))
    assert result.no_record
    assert result.score == batch.score[0]  # the same number as batch scoring and perks
    reasons = result.reasons_lowering + result.reasons_raising
    assert len(reasons) == 1 and reasons[0].feature == NO_RECORD
    assert reasons[0].text_zh == NO_RECORD_ZH and reasons[0].text_en == NO_RECORD_EN
    assert result.base_points + reasons[0].points == pytest.approx(result.raw_score, abs=1e-6)
    # read from the row's own records_counted column too
    assert explain(card, {**empty, "records_counted": 0}).no_record
    assert not explain(card, {**empty, "records_counted": 3}).no_record


def test_explain_one_row_only(card, people) -> None:
    with pytest.raises(ValueError, match="one person"):
        explain(card, people.head(2))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(person=PERSON, feature=st.sampled_from(MONOTONE),
       step=st.floats(0.01, 3000, allow_nan=False))
def test_monotone_feature_never_moves_the_score_the_wrong_way(person, feature, step) -> None:
    card = small_scorecard()[0]
    raised = {**person, feature: person[feature] + step}
    before = card.score_frame(person).raw_score[0]
    after = card.score_frame(raised).raw_score[0]
    direction = BY_NAME[feature].direction
    assert (after - before) * direction >= -1e-9


def test_monotone_along_every_threshold(card) -> None:
    """Walk each monotone feature across all its bins with everything else fixed."""
    table = card.points_table()
    base = {f.name: f.default for f in FEATURES}
    for name in MONOTONE:
        cuts = table.filter((pl.col("feature") == name) & pl.col("upper").is_finite())["upper"]
        grid = sorted({-1.0, *cuts.to_list(), *(np.array(cuts.to_list()) + 1e-6).tolist(),
                       1e6})
        frame = pl.DataFrame([{**base, name: v} for v in grid])
        scores = card.score_frame(frame).raw_score
        assert np.all(np.diff(scores) * BY_NAME[name].direction >= -1e-9), name
