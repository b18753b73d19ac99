"""Whole points a citizen can check with a pencil (model/shown.py): for any person, base +
Σ shown points + clip = shown score, every shown number within 1 of its exact value, and
"smaller factors" never larger than the smallest named reason."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from features.build import build_features
from model.explain import NO_RECORD, explain, explain_frame
from model.scorecard import PointsScale
from model.shown import apportion, select
from tests.features import strategies as S
from tests.model import small_scorecard

AS_OF = dt.date(2026, 1, 1)
POINTS = st.floats(-80, 80, allow_nan=False, width=64)


@st.composite
def point_matrices(draw) -> tuple[np.ndarray, float]:
    """(points (n, k), base points): ties, zeros, exact halves and integers included."""
    n, k = draw(st.integers(1, 6)), draw(st.integers(0, 40))
    cell = st.one_of(POINTS, st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -2.0, 3.25]))
    points = draw(hnp.arrays(np.float64, (n, k), elements=cell))
    return points, draw(st.floats(-50, 1100, allow_nan=False))


def check(points: np.ndarray, base: float, raw: np.ndarray, score: np.ndarray,
          lo: float = 0.0, hi: float = 1000.0) -> None:
    shown = apportion(points, base, raw, score)
    assert np.array_equal(shown.score, np.floor(score).astype(np.int64))
    assert np.array_equal(shown.base + shown.points.sum(axis=1) + shown.clip, shown.score)
    assert shown.base == math.floor(base)
    assert np.all(np.abs(shown.points - points) <= 1 + 1e-9)
    inside = (raw >= lo) & (raw < hi)
    assert np.all(shown.clip[inside] == 0)  # only a score off the scale has a clip line
    order = np.argsort(points, axis=1, kind="stable")  # exact order sorts the shown points
    assert np.all(np.diff(np.take_along_axis(shown.points, order, axis=1), axis=1) >= 0)


@settings(max_examples=300, deadline=None)
@given(data=point_matrices())
def test_whole_points_add_up_for_any_points(data) -> None:
    points, base = data
    raw = np.full(points.shape[0], base)
    for j in range(points.shape[1]):
        raw += points[:, j]
    check(points, base, raw, np.clip(raw, 0.0, 1000.0))


@settings(max_examples=200, deadline=None)
@given(data=point_matrices(), top=st.sampled_from([4, 4, 1, 0, 30]),
       min_points=st.sampled_from([0.5, 0.5, 3.0]), skip=st.booleans())
def test_smaller_factors_never_outweigh_the_smallest_named_reason(data, top, min_points,
                                                                  skip) -> None:
    points, base = data
    n, k = points.shape
    raw = base + points.sum(axis=1)
    shown = apportion(points, base, raw, np.clip(raw, 0, 1000)).points
    order, low, high, other = select(points, shown, np.full(n, skip), top, min_points)
    for i in range(n):
        ranking = order[i].tolist()
        named = set(ranking[:low[i]]) | set(ranking[::-1][:high[i]])
        if skip:
            assert not named and other[i] == 0
            continue
        assert other[i] == sum(shown[i, j] for j in range(k) if j not in named)
        sizes = [abs(shown[i, j]) for j in named]
        assert abs(other[i]) <= (min(sizes) if sizes else 0)
        assert all(shown[i, j] <= 0 for j in ranking[:low[i]])
        assert all(shown[i, j] >= 0 for j in ranking[::-1][:high[i]])
        firsts = sum(1 for j in ranking if points[i, j] <= -min_points
                     and shown[i, j] <= -min_points)
        assert low[i] >= min(top, firsts) if top >= 0 else True  # `top` is a floor


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(records=S.cities(AS_OF, 1, 5),
       scale=st.sampled_from([PointsScale(), PointsScale(base_score=990.0, pdo=80.0),
                              PointsScale(base_score=15.0, pdo=60.0),
                              PointsScale(base_score=640.0, base_odds=20.0, pdo=25.0)]))
def test_any_person_sees_whole_points_that_add_up(records, scale) -> None:
    """People drawn by the features strategies, their features built as the service builds
    them, explained one by one (the API) and all at once (the batch): the same integers, and
    base + Σ shown points + clip = shown score = floor(score), each within 1 of exact."""
    card = small_scorecard()[0].with_scale(scale)
    table = build_features(records, AS_OF)
    batch = explain_frame(card, table)
    for row, stored in zip(table.iter_rows(named=True), batch, strict=True):
        one = explain(card, row).to_dict()
        assert one == stored
        whole, exact = stored["points_shown"], stored["points"]
        assert stored["base_shown"] + sum(whole.values()) + stored["clip_shown"] == (
            stored["score_shown"]) == math.floor(stored["score"])
        assert abs(stored["base_shown"] - stored["base_points"]) < 1
        assert all(abs(whole[f] - exact[f]) <= 1 for f in exact)
        named = stored["reasons_lowering"] + stored["reasons_raising"]
        if stored["no_record"]:
            (reason,) = named
            assert reason["feature"] == NO_RECORD and stored["other_shown"] == 0
            assert reason["points_shown"] == sum(whole.values())
            continue
        assert all(r["points_shown"] == whole[r["feature"]] for r in named)
        rest = sum(v for f, v in whole.items() if f not in {r["feature"] for r in named})
        assert rest == stored["other_shown"]
        assert abs(rest) <= min((abs(r["points_shown"]) for r in named), default=0)


def test_a_score_off_the_scale_shows_the_clip_as_its_own_line() -> None:
    card = small_scorecard()[0]
    # Anchors inside the range (the scale refuses others) whose points run past its ends.
    high = card.with_scale(PointsScale(base_score=1000.0, base_odds=1.0, pdo=200.0))
    low = card.with_scale(PointsScale(base_score=0.0, base_odds=1e6, pdo=200.0))
    person = pl.DataFrame([{name: 0.0 for name in card.feature_names}])
    for scorecard, clipped in ((high, 1000), (low, 0)):
        result = explain(scorecard, person)
        assert result.score_shown == clipped and result.clip_shown != 0
        assert result.clip_shown == clipped - math.floor(result.raw_score)
        assert (result.base_shown + sum(result.points_shown.values()) + result.clip_shown
                == clipped)
