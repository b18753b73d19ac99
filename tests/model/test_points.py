"""Points: the fast path equals pred_contrib and shap, points add up, one row equals batch."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from model.scorecard import BANDS, Calibration, PointsScale, Scorecard, band_of
from tests.model import make_people, small_scorecard

VALUE = st.one_of(st.integers(0, 70).map(float), st.floats(-5, 5000, allow_nan=False),
                  st.just(math.nan))
PERSON = st.fixed_dictionaries({name: VALUE for name in FEATURE_NAMES})
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def card() -> Scorecard:
    return small_scorecard()[0]


@pytest.fixture(scope="module")
def people() -> pl.DataFrame:
    return make_people(4000, 11)[0]


def test_scale_defaults_are_the_demo_anchor() -> None:
    scale = PointsScale()
    assert scale.factor == pytest.approx(42 / math.log(2))
    # 30:1 good:bad odds is 600 points, and doubling the odds adds PDO points
    assert scale.offset + scale.factor * math.log(30) == pytest.approx(600)
    assert scale.factor * math.log(60) - scale.factor * math.log(30) == pytest.approx(42)
    assert PointsScale.from_dict(scale.to_dict()) == scale


@pytest.mark.parametrize("score,band", [(0, "needs improvement"), (549.99, "needs improvement"),
                                        (550, "fair"), (599.9, "fair"), (600, "good"),
                                        (699.99, "good"), (700, "very good"),
                                        (749.5, "very good"), (750, "excellent"),
                                        (1000, "excellent")])
def test_bands(score: float, band: str) -> None:
    assert band_of(score) == band
    assert [name for _, name in BANDS][0] == "needs improvement"


def test_model_is_additive(card: Scorecard) -> None:
    for tree in card.booster.dump_model()["tree_info"]:
        used, stack = set(), [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                used.add(node["split_feature"])
                stack += [node["left_child"], node["right_child"]]
        assert len(used) <= 1
    assert card.additive


def _edges(card: Scorecard, people: pl.DataFrame) -> pl.DataFrame:
    """People whose values sit exactly on split thresholds, or are missing."""
    table = card.points_table().drop_nulls("upper").filter(pl.col("upper") < math.inf)
    rng = np.random.default_rng(3)
    frame = people.head(400).to_dicts()
    for person in frame:
        for name in rng.choice(FEATURE_NAMES, 8, replace=False):
            cuts = table.filter(pl.col("feature") == name)["upper"].to_list()
            person[name] = float(rng.choice(cuts)) if cuts and rng.random() < 0.8 else None
    return pl.DataFrame(frame)


def test_fast_path_equals_pred_contrib(card: Scorecard, people: pl.DataFrame) -> None:
    frame = pl.concat([people, _edges(card, people)], how="vertical_relaxed")
    fast = card.contributions(frame)
    slow = card.booster.predict(card.encode(frame), pred_contrib=True, num_threads=1)
    assert np.abs(fast - slow).max() <= 1e-9
    scored = card.score_frame(frame)
    factor, slope = card.scale.factor, card.calibration.slope
    assert np.abs(scored.points - (-factor * slope * slow[:, :-1])).max() <= 1e-9
    margin = card.booster.predict(card.encode(frame), raw_score=True, num_threads=1)
    expected = 1 / (1 + np.exp(-(card.calibration.intercept + slope * margin)))
    assert np.allclose(scored.probability, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier")
def test_fast_path_agrees_with_shap(card: Scorecard, people: pl.DataFrame) -> None:
    shap = pytest.importorskip("shap")
    x = card.encode(people.head(300))
    values = shap.TreeExplainer(card.booster).shap_values(x)
    values = values[1] if isinstance(values, list) else values
    assert np.abs(card.contributions(people.head(300))[:, :-1] - values).max() <= 1e-9


@SETTINGS
@given(people=st.lists(PERSON, min_size=1, max_size=20))
def test_points_add_up_to_the_score(people: list[dict]) -> None:
    card = small_scorecard()[0]
    scored = card.score_frame(pl.DataFrame(people))
    total = scored.base_points + scored.points.sum(axis=1)
    assert np.abs(scored.raw_score - total).max() <= 1e-6
    assert np.array_equal(scored.score, np.clip(scored.raw_score, 0, 1000))
    # the probability is the score read back through the scale
    logit = (card.scale.offset - scored.raw_score) / card.scale.factor
    assert np.allclose(scored.probability, 1 / (1 + np.exp(-logit)), rtol=1e-9)


@SETTINGS
@given(person=PERSON)
def test_one_row_equals_batch(person: dict) -> None:
    card = small_scorecard()[0]
    others, _ = make_people(3000, 5)
    batch = pl.concat([others.drop("person_key"), pl.DataFrame([person]).select(FEATURE_NAMES)],
                      how="vertical_relaxed")
    alone_dict = card.score_frame(person)
    alone_frame = card.score_frame(pl.DataFrame([person]))
    together = card.score_frame(batch)
    for alone in (alone_dict, alone_frame):
        assert np.array_equal(alone.points[0], together.points[-1])
        assert alone.raw_score[0] == together.raw_score[-1]
        assert alone.probability[0] == together.probability[-1]


def test_pandas_and_polars_agree(card: Scorecard, people: pl.DataFrame) -> None:
    a = card.score_frame(people.head(100))
    b = card.score_frame(people.head(100).to_pandas())
    assert np.array_equal(a.points, b.points)


def test_with_scale_moves_points_not_probabilities(card: Scorecard,
                                                   people: pl.DataFrame) -> None:
    other = card.with_scale(PointsScale(base_score=500, base_odds=20, pdo=20))
    a, b = card.score_frame(people.head(500)), other.score_frame(people.head(500))
    assert np.allclose(a.probability, b.probability, rtol=1e-9)
    assert np.allclose(b.points, a.points * 20 / card.scale.pdo)
    assert card.scale == PointsScale()  # the original is untouched


def test_parts_round_trip_is_json_and_identical(card: Scorecard, people: pl.DataFrame) -> None:
    import json

    text, meta = card.to_parts()
    again = Scorecard.from_parts(text, json.loads(json.dumps(meta)))
    a, b = card.score_frame(people), again.score_frame(people)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.score, b.score)
    assert again.directions == card.directions and again.info["n_rounds"] == meta["n_rounds"]


def test_fallback_without_additivity(card: Scorecard, people: pl.DataFrame) -> None:
    slow = Scorecard(card.booster, card.feature_names, card.calibration, card.scale,
                     card.directions)
    slow.additive = False  # as for a model with declared interactions
    a, b = card.score_frame(people.head(200)), slow.score_frame(people.head(200))
    assert np.abs(a.raw_score - b.raw_score).max() <= 1e-9


def test_calibration_dict_round_trip() -> None:
    c = Calibration(-1.25, 0.75)
    assert Calibration.from_dict(c.to_dict()) == c


def test_one_row_equals_batch_on_thresholds(card: Scorecard, people: pl.DataFrame) -> None:
    """Values exactly on a split threshold (or missing) take the same bin alone and in a batch,
    and the same bin as LightGBM."""
    edges = _edges(card, people).drop("person_key")
    batch = card.score_frame(pl.concat([edges, people.drop("person_key")]))
    slow = card.booster.predict(card.encode(edges), pred_contrib=True, num_threads=1)
    for i, person in enumerate(edges.head(120).iter_rows(named=True)):
        alone = card.score_frame(person)
        assert np.array_equal(alone.points[0], batch.points[i])
        assert np.abs(card.contributions(person)[0] - slow[i]).max() <= 1e-9
