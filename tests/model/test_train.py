"""Training: constraints, rounds by CV, determinism, Platt calibration, any tabular table."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.catalog import FEATURE_NAMES, directions
from model.train import (
    constraint_params,
    encode_target,
    fit_platt,
    read_table,
    train_scorecard,
)
from tests.model import make_people, small_scorecard


def test_constraints_follow_the_catalog() -> None:
    params = constraint_params(FEATURE_NAMES, directions())
    for name, constraint in zip(FEATURE_NAMES, params["monotone_constraints"], strict=True):
        assert constraint == -directions()[name]  # raising the score lowers P(bad)
    assert params["interaction_constraints"] == [[i] for i in range(len(FEATURE_NAMES))]
    pair = constraint_params(["a", "b", "c"], {}, [("a", "c")])["interaction_constraints"]
    assert [0, 2] in pair


def test_trained_model_carries_constraints_and_report() -> None:
    card, report = small_scorecard()
    params = card.info["params"]
    assert params["monotone_constraints"] == [-directions()[n] for n in FEATURE_NAMES]
    assert params["num_threads"] == 1 and params["objective"] == "binary"
    assert report["rounds"] == card.booster.num_trees() == card.info["n_rounds"]
    assert report["calibrated_on"] == "validation"
    assert 0.6 < report["cv_auc"] <= 1 and 0.6 < report["valid_auc"] <= 1
    assert card.directions == directions()


def test_rounds_come_from_cross_validation() -> None:
    """With strong early stopping the chosen rounds are where the CV loss stopped improving,
    not the maximum."""
    train, y = make_people(1500, 21)
    _, report = train_scorecard(train, y, None, seed=1, max_rounds=400, patience=5, nfold=3,
                                params={"learning_rate": 0.3})
    assert report["cv_folds"] == 3
    assert 0 < report["rounds"] < 400


def test_same_data_and_seed_give_identical_model_text() -> None:
    train, y = make_people(1200, 3)
    a, _ = train_scorecard(train, y, None, seed=7, max_rounds=60, patience=10)
    b, _ = train_scorecard(train, y, None, seed=7, max_rounds=60, patience=10)
    assert a.to_parts()[0] == b.to_parts()[0]
    assert a.to_parts()[1] == b.to_parts()[1]
    c, _ = train_scorecard(train, y, None, seed=8, max_rounds=60, patience=10)
    assert c.to_parts()[0] != a.to_parts()[0]


def test_out_of_fold_calibration_without_validation() -> None:
    card, report = small_scorecard(0, with_valid=False)
    assert report["calibrated_on"] == "out-of-fold"
    train, y = make_people(3000, 0)
    p = card.score_frame(train).probability
    # calibrated on held-out margins: the mean probability is close to the bad rate
    assert abs(p.mean() - y.mean()) < 0.03


def test_platt_matches_unpenalised_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    margin = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.4 + 1.7 * margin)))).astype(int)
    ours = fit_platt(margin, y)
    theirs = LogisticRegression(C=1e12, max_iter=1000).fit(margin[:, None], y)
    assert ours.slope == pytest.approx(theirs.coef_[0, 0], rel=1e-4)
    assert ours.intercept == pytest.approx(theirs.intercept_[0], rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="slope"):
        fit_platt(margin, 1 - y)  # ranks backwards


def test_target_encoding() -> None:
    assert encode_target(np.array([0, 1, 1])).tolist() == [0, 1, 1]
    assert encode_target(pl.Series([True, False])).tolist() == [1, 0]
    assert encode_target(pl.Series(["bad", "good", "bad"]), bad="bad").tolist() == [1, 0, 1]
    assert encode_target(pl.Series([1, 2, 2]), bad=2).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="which one"):
        encode_target(pl.Series(["bad", "good"]))
    with pytest.raises(ValueError, match="both"):
        encode_target(np.array([1, 1, 1]))


def _credit_table(n: int, seed: int) -> pl.DataFrame:
    """A modeller's own table: numbers, text, missing values, a text target."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(8, 0.5, n)
    purpose = rng.choice(["car", "house", "education", "other"], n)
    debt = rng.exponential(1, n)
    logit = -1 - 0.0002 * (income - 3000) + 0.8 * debt + (purpose == "education") * 0.9
    bad = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pl.DataFrame({"id": np.arange(n), "monthly income": income, "purpose": purpose,
                          "debt_ratio": debt, "status": np.where(bad, "default", "paid")})
    return frame.with_columns(
        pl.when(pl.Series(rng.random(n) < 0.1)).then(None).otherwise(pl.col("monthly income"))
        .alias("monthly income"),
        pl.when(pl.Series(rng.random(n) < 0.05)).then(None).otherwise(pl.col("purpose"))
        .alias("purpose"))


def test_any_tabular_table_trains(tmp_path) -> None:
    table = _credit_table(2000, 1)
    path = tmp_path / "credit.csv"
    table.write_csv(path)
    frame = read_table(path)
    features = ["monthly income", "purpose", "debt_ratio"]
    card, report = train_scorecard(frame, "status", None, bad="default", features=features,
                                   directions={"monthly income": 1, "debt_ratio": -1},
                                   seed=0, max_rounds=150, patience=15)
    assert card.categories == {"purpose": ["car", "education", "house", "other"]}
    assert report["cv_auc"] > 0.6
    slow = card.booster.predict(card.encode(frame), pred_contrib=True, num_threads=1)
    assert np.abs(card.contributions(frame) - slow).max() <= 1e-9
    # an unseen category and a missing one score like "missing"
    probe = pl.DataFrame({"monthly income": [3000.0] * 3, "purpose": ["boat", None, "car"],
                          "debt_ratio": [1.0] * 3})
    points = card.score_frame(probe).points[:, 1]
    assert points[0] == points[1]
    # monotone directions hold on the modeller's own columns
    grid = pl.DataFrame({"monthly income": np.linspace(0, 20000, 200), "purpose": ["car"] * 200,
                         "debt_ratio": np.linspace(0, 5, 200)})
    pts = card.score_frame(grid).points
    assert np.all(np.diff(pts[:, 0]) >= -1e-9) and np.all(np.diff(pts[:, 2]) <= 1e-9)


def test_text_column_cannot_have_a_direction() -> None:
    table = _credit_table(300, 2)
    with pytest.raises(ValueError, match="text columns"):
        train_scorecard(table, "status", bad="default", features=["purpose"],
                        directions={"purpose": 1}, max_rounds=5)


def test_train_and_score_commands(tmp_path) -> None:
    """`osmanthus train --table` then `osmanthus score`: per row probability, score, band and
    every feature's points, the id column kept, the same numbers as the library."""
    from click.testing import CliRunner

    from model.bundle import load_model
    from service.cli.main import main

    table = _credit_table(1500, 4)
    table.head(1000).write_csv(tmp_path / "train.csv")
    table.tail(500).write_parquet(tmp_path / "later.parquet")
    (tmp_path / "dirs.json").write_text('{"monthly income": 1, "debt_ratio": -1}')
    runner = CliRunner()
    result = runner.invoke(main, [
        "train", "--table", str(tmp_path / "train.csv"), "--target", "status", "--bad", "default",
        "--catalog", str(tmp_path / "dirs.json"), "--valid-table", str(tmp_path / "later.parquet"),
        "--id-column", "id", "--out", str(tmp_path / "model"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    card = load_model(tmp_path / "model").scorecard
    assert card.feature_names == ["monthly income", "purpose", "debt_ratio"]
    assert card.directions == {"monthly income": 1, "purpose": 0, "debt_ratio": -1}
    result = runner.invoke(main, ["score", "--model", str(tmp_path / "model"), "--table",
                                  str(tmp_path / "later.parquet"), "--out",
                                  str(tmp_path / "scores.csv"), "--keep", "id"])
    assert result.exit_code == 0, result.output
    scores = pl.read_csv(tmp_path / "scores.csv")
    assert scores.columns == ["id", "probability", "score", "band", "base_points",
                              "points_monthly income", "points_purpose", "points_debt_ratio"]
    assert set(scores["base_points"].to_list()) == {card.base_points}
    summed = scores.select(pl.sum_horizontal(pl.exclude("id", "probability", "score", "band")))
    assert np.allclose(summed.to_series().to_numpy(), scores["score"].to_numpy(), atol=1e-6)
    expected = card.score_frame(table.tail(500))
    assert scores["id"].to_list() == table.tail(500)["id"].to_list()
    assert np.allclose(scores["score"].to_numpy(), expected.score, rtol=0, atol=1e-9)
    assert scores["band"].to_list() == expected.bands
    again = runner.invoke(main, ["train", "--table", str(tmp_path / "train.csv"), "--target",
                                 "status", "--out", str(tmp_path / "model")])
    assert again.exit_code != 0 and "not empty" in again.output
