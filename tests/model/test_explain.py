"""Explanations: reasons in points with the person's own values; no record; monotone; the
vectorised explainer gives exactly the per-row explanations."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.catalog import BY_NAME, FEATURE_NAMES, FEATURES, NO_RECORD_EN, NO_RECORD_ZH
from model.explain import NO_RECORD, explain, explain_frame, gc_paused, python_rows
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
        assert lowering == sorted(lowering) and raising == sorted(raising, reverse=True)
        assert all(r.points_shown <= -1 for r in result.reasons_lowering)
        assert all(r.points_shown >= 1 for r in result.reasons_raising)
        negative = sorted(p for p in result.points.values() if p < 0)
        assert lowering == negative[:len(lowering)]  # the features that lowered it most
        assert len(lowering) >= min(4, sum(p <= -1.5 for p in negative))
        # whole points that add up, and "smaller factors" no larger than any named reason
        named = result.reasons_lowering + result.reasons_raising
        assert result.base_shown + sum(result.points_shown.values()) + result.clip_shown == (
            result.score_shown) == int(np.floor(result.score))
        rest = sum(v for f, v in result.points_shown.items() if f not in {r.feature for r in named})
        assert rest == result.other_shown
        assert abs(rest) <= min(abs(r.points_shown) for r in named)
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


# --- the vectorised explainer equals the per-row one, exactly ---------------------------------
# Few distinct values, so that people share reasons (the texts are built once per distinct
# value) and points tie; NaN, null, −0.0 (equal to 0.0, printed differently) and a value far
# outside the training range included.
CELL = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0, 7.0, 12.0, 61.0, 250.5, 1e7, -0.0, -3.0,
                                  float("nan"), None]),
                 st.floats(-10, 5000, allow_nan=False, width=32))
COUNTED = st.sampled_from([0, 0, 1, 5, None])


def exact(value) -> str:
    """Exact, order-sensitive identity of JSON-like data: key order, int vs float, −0.0 vs
    0.0, NaN vs None all show (plain `==` would call NaN unequal and ignore key order)."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def per_row(card, table: pl.DataFrame, **options) -> list[dict]:
    """The reference: one `explain` per row, as `score_rows` did before the batch path."""
    return [explain(card, row, row.get("records_counted"), **options).to_dict()
            for row in table.iter_rows(named=True)]


@cache
def card_with_dead_features():
    """A scorecard whose last features were constant in training: they never split, so every
    person has the same zero points on each of them — ties."""
    from model.train import train_scorecard

    train, y = make_people(2000, 5)
    dead = [f.name for f in FEATURES[-6:]]
    return train_scorecard(train.with_columns(pl.lit(0.0).alias(c) for c in dead), y, seed=0,
                           num_threads=1, max_rounds=60, patience=10,
                           params={"learning_rate": 0.3})[0]


@st.composite
def tables(draw, names: list[str]) -> tuple[pl.DataFrame, int]:
    """(a features table, its period): 1–12 people, sometimes tiled past 2,048 rows (the
    scorecard's other lookup path), a few columns as integers, sometimes one column missing,
    and `records_counted` with no-record people, or absent."""
    n = draw(st.integers(1, 12))
    columns = {name: draw(st.lists(CELL, min_size=n, max_size=n)) for name in names}
    table = pl.DataFrame(columns, schema={name: pl.Float64 for name in names})
    as_int = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    table = table.with_columns(pl.col(c).fill_nan(None).round().clip(-5, 100).cast(pl.Int64)
                               for c in as_int)
    if draw(st.booleans()):
        table = table.with_columns(records_counted=pl.Series(
            draw(st.lists(COUNTED, min_size=n, max_size=n)), dtype=pl.Int64))
    if draw(st.integers(0, 4)) == 0:
        table = table.drop(draw(st.sampled_from(names)))
    if draw(st.integers(0, 4)) == 0:
        table = pl.concat([table] * (2100 // n + 1))
    return table, n


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(data=st.data(), lang=st.sampled_from(["both", "zh", "en"]),
       top=st.sampled_from([4, 4, 1, 0, 30]), min_points=st.sampled_from([0.5, 0.5, 0.0, 3.0]),
       dead=st.booleans())
def test_explain_frame_equals_explain_row_by_row(data, lang, top, min_points, dead) -> None:
    card = card_with_dead_features() if dead else small_scorecard()[0]
    table, period = data.draw(tables(card.feature_names))
    options = {"lang": lang, "top": top, "min_points": min_points}
    batch = explain_frame(card, table, **options)
    reference = per_row(card, table.head(period), **options)  # a tiled table repeats these
    assert len(batch) == table.height
    for i, row in enumerate(batch):
        # exact (JSON text) on the first and last copies of a tiled table; `==` between
        # (there is no NaN left to compare unequal) keeps a 2,100-row example quick
        if i < period or i >= len(batch) - period:
            assert exact(row) == exact(reference[i % period])
        else:
            assert row == reference[i % period]
    for row in batch[:period]:  # the points add up to the score
        assert row["base_points"] + sum(row["points"].values()) == pytest.approx(
            row["raw_score"], abs=1e-6)


def test_explain_frame_equals_explain_on_a_city_like_table(card, people) -> None:
    """Real-looking people (many shared values, ties at zero points), no-record people and a
    NaN among them; both lookup paths of the scorecard (under and over 2,048 rows)."""
    table = people.with_columns(
        records_counted=pl.when(pl.int_range(pl.len()) % 7 == 0).then(0).otherwise(4),
        tr_fare_evasions_24m=pl.when(pl.int_range(pl.len()) == 3).then(float("nan"))
        .otherwise(pl.col("tr_fare_evasions_24m")))
    reference = per_row(card, table)
    assert [exact(r) for r in explain_frame(card, table)] == [exact(r) for r in reference]
    big = pl.concat([table] * 8)
    assert [exact(r) for r in explain_frame(card, big)] == [exact(r) for r in reference] * 8
    assert any(r["no_record"] for r in reference) and not all(r["no_record"] for r in reference)


def test_explain_frame_keeps_tied_points_in_catalog_order(people) -> None:
    """Every feature a reason, zero points included: the tied features come in catalog order
    among the lowering reasons and in reverse among the raising ones, as `explain` sorts."""
    card = card_with_dead_features()
    everything = {"top": 40, "min_points": 0.0}
    table = people.head(30)
    reference = per_row(card, table, **everything)
    assert [exact(r) for r in explain_frame(card, table, **everything)] == [
        exact(r) for r in reference]
    assert all(len({p["points"] for p in r["reasons_raising"]}) < len(r["reasons_raising"])
               for r in reference)  # there are ties


def test_explain_frame_refuses_an_unknown_language(card, people) -> None:
    with pytest.raises(ValueError, match="lang"):
        explain_frame(card, people, lang="fr")


def test_python_rows_are_iter_rows() -> None:
    frame = pl.DataFrame({"a": [1.0, float("nan"), None, -0.0], "b": [1.5, 2.0, 3.0, 4.0]})
    assert exact(python_rows(frame)) == exact([list(r) for r in frame.iter_rows()])
    assert exact(python_rows(frame.drop_nulls())) == exact(
        [list(r) for r in frame.drop_nulls().iter_rows()])


def test_gc_paused_restores_the_collector() -> None:
    import gc

    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
