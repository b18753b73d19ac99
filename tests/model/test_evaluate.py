"""Evaluation: metrics held against independent computations, PSI, fairness, the report."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from model.evaluate import (
    age_bands,
    calibration_table,
    evaluate,
    fairness,
    fairness_failures,
    fairness_notes,
    psi,
    snapshot,
    write_report,
)
from model.scorecard import BANDS
from tests.model.test_bundle import fitted, people_for


@dataclass
class _Scored:
    probability: np.ndarray
    score: np.ndarray

    @property
    def bands(self) -> list[str]:
        return ["low" if s < 600 else "high" for s in self.score]


class KnownScorecard:
    """Reads its probability from column `p`, so the metrics have a known input."""

    feature_names = ["x"]

    def score_frame(self, frame: pl.DataFrame) -> _Scored:
        p = frame["p"].to_numpy()
        return _Scored(p, 600 - 40 / np.log(2) * np.log(p / (1 - p) * 50))


def known(n: int = 2000, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.6, n)
    y = (rng.random(n) < p).astype(np.int64)
    return pl.DataFrame({"person_key": [f"k{i}" for i in range(n)], "p": p,
                         "x": rng.normal(size=n)}), y


def test_metrics_match_independent_computations():
    frame, y = known()
    p = frame["p"].to_numpy()
    result = evaluate(KnownScorecard(), frame, y, as_of=dt.date(2025, 1, 1))
    m = result["metrics"]
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["gini"] == pytest.approx(2 * roc_auc_score(y, p) - 1, abs=1e-12)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
    # KS: the largest gap between the bads' and goods' cumulative distributions
    grid = np.sort(np.unique(p))
    bad_cdf = np.searchsorted(np.sort(p[y == 1]), grid, side="right") / (y == 1).sum()
    good_cdf = np.searchsorted(np.sort(p[y == 0]), grid, side="right") / (y == 0).sum()
    assert m["ks"] == pytest.approx(np.max(np.abs(bad_cdf - good_cdf)), abs=1e-12)


def test_calibration_deciles_cover_everyone_in_risk_order():
    frame, y = known()
    p = frame["p"].to_numpy()
    table = calibration_table(y, p)
    assert [r["decile"] for r in table] == list(range(1, 11))
    assert sum(r["count"] for r in table) == len(y)
    order = np.argsort(p, kind="stable")
    top = order[-table[-1]["count"]:]
    assert table[-1]["predicted"] == pytest.approx(p[top].mean())
    assert table[-1]["observed"] == pytest.approx(y[top].mean())
    assert table[0]["max_probability"] <= table[1]["min_probability"]


def test_default_thresholds_are_the_band_floors():
    frame, y = known(300)
    result = evaluate(KnownScorecard(), frame, y, people=pl.DataFrame(
        {"person_key": frame["person_key"], "gender": ["F", "M"] * 150}))
    assert result["thresholds"] == {"fair": 550, "good": 600, "very good": 700,
                                    "excellent": 750}
    assert set(result["fairness"]) == set(result["thresholds"])


def test_true_pd_auc_is_reported_as_the_upper_bound():
    frame, y = known()
    truth = frame["p"].to_numpy()
    noisy = frame.with_columns(pl.Series("p", np.clip(truth + np.random.default_rng(1)
                                                      .normal(0, 0.2, len(y)), 0.01, 0.99)))
    result = evaluate(KnownScorecard(), noisy, y, true_pd=truth)
    assert result["true_pd"]["auc"] == pytest.approx(roc_auc_score(y, truth))
    assert result["true_pd"]["auc"] > result["metrics"]["auc"]


def test_psi_is_zero_for_identical_and_large_for_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, rng.normal(size=5000)) < 0.02
    assert psi(a, a + 1.5) > 0.25
    counts = rng.poisson(0.3, 5000).astype(float)  # mostly zeros
    assert psi(counts, counts) == pytest.approx(0.0, abs=1e-12)
    assert psi(counts, counts + 1) > 0.25


def test_psi_of_constant_and_text_features():
    same = np.zeros(1000)
    assert psi(same, same) == pytest.approx(0.0, abs=1e-12)
    assert psi(same, same + 1) > 0.25 and psi(same, same - 1) > 0.25
    assert np.isfinite(psi(same, same + 1))
    text = pl.Series(["a"] * 500 + ["b"] * 500)
    assert psi(text, text) == pytest.approx(0.0, abs=1e-12)
    assert psi(text, pl.Series(["a"] * 900 + ["c"] * 100)) > 0.25


def test_age_bands_at_the_as_of_date():
    born = pl.Series(["2000-03-02", "2000-03-01", "1981-01-01", "1966-01-01", "1960-01-01",
                      "2010-01-01", None]).str.to_date()
    bands = age_bands(born, dt.date(2030, 3, 1)).to_list()
    # 29 (birthday tomorrow), 30 today, 49, 64, 70, 20, unknown
    assert bands == ["18-29", "30-44", "45-59", "60+", "60+", "18-29", "unknown"]


def test_adverse_impact_ratio_is_lowest_over_highest_group():
    scores = np.array([700.0] * 60 + [500.0] * 40 + [700.0] * 30 + [500.0] * 70 + [700.0] * 5)
    groups = pl.DataFrame({"gender": ["F"] * 100 + ["M"] * 100 + ["X"] * 5})
    result = fairness(scores, groups, {"perk": 600.0}, min_group=30)
    detail = result["perk"]["attributes"]["gender"]
    rates = {g["group"]: g["rate"] for g in detail["groups"]}
    assert rates == {"F": 0.6, "M": 0.3, "X": 1.0}
    assert detail["air"] == pytest.approx(0.3 / 0.6)  # X is too small to count
    assert detail["lowest_group"] == "M"
    failures = fairness_failures({"fairness": result})
    assert len(failures) == 1 and "gender" in failures[0] and "perk" in failures[0]


def _two_groups(approved_a: int, approved_b: int, size: int) -> dict:
    scores = np.array([700.0] * approved_a + [500.0] * (size - approved_a)
                      + [700.0] * approved_b + [500.0] * (size - approved_b))
    groups = pl.DataFrame({"district": ["A"] * size + ["B"] * size})
    return {"fairness": fairness(scores, groups, {"perk": 600.0}, min_group=30)}


def test_a_low_ratio_on_a_handful_of_approvals_is_noted_not_failed():
    result = _two_groups(approved_a=3, approved_b=5, size=1000)  # AIR 0.6 on 8 approvals
    detail = result["fairness"]["perk"]["attributes"]["district"]
    assert detail["air"] == pytest.approx(0.6) and detail["p_value"] > 0.05
    assert fairness_failures(result) == []
    assert len(fairness_notes(result)) == 1 and "not significant" in fairness_notes(result)[0]


def test_the_same_ratio_on_many_approvals_fails():
    result = _two_groups(approved_a=300, approved_b=500, size=1000)  # AIR 0.6 on 800 approvals
    assert result["fairness"]["perk"]["attributes"]["district"]["p_value"] < 1e-6
    assert len(fairness_failures(result)) == 1 and fairness_notes(result) == []


def test_the_p_value_is_corrected_for_the_number_of_groups():
    scores = np.array([700.0] * 40 + [500.0] * 60 + [700.0] * 55 + [500.0] * 45
                      + [700.0] * 50 + [500.0] * 50)
    two = fairness(scores[:200], pl.DataFrame({"g": ["a"] * 100 + ["b"] * 100}), {"p": 600.0})
    three = fairness(scores, pl.DataFrame({"g": ["a"] * 100 + ["b"] * 100 + ["c"] * 100}),
                     {"p": 600.0})
    p_two = two["p"]["attributes"]["g"]["p_value"]
    assert three["p"]["attributes"]["g"]["p_value"] == pytest.approx(min(1.0, 3 * p_two))


def test_snapshot_joins_features_outcomes_and_truth():
    features = pl.DataFrame({"person_key": ["a", "b", "c", "a"], "x": [1.0, 2.0, 3.0, 9.0],
                             "snapshot": ["2024-01-01"] * 3 + ["2023-01-01"]})
    outcomes = pl.DataFrame({"person_key": ["c", "a", "a"], "defaulted": [1, 0, 1],
                             "snapshot": ["2024-01-01", "2024-01-01", "2023-01-01"]})
    truth = pl.DataFrame({"person_key": ["a", "c"], "true_pd": [0.1, 0.7],
                          "snapshot": ["2024-01-01"] * 2})
    frame, y, true_pd = snapshot(features, outcomes, dt.date(2024, 1, 1), truth)
    assert frame["person_key"].to_list() == ["a", "c"]
    assert frame["x"].to_list() == [1.0, 3.0]
    assert y.tolist() == [0, 1] and true_pd.tolist() == [0.1, 0.7]


def test_full_evaluation_of_a_trained_scorecard_and_its_report(tmp_path):
    scorecard, _, train, _, valid, vy = fitted()
    people = people_for(valid, 4)
    result = evaluate(scorecard, valid, vy, train_frame=train, people=people,
                      thresholds={"bike": 600, "library": 550}, as_of=dt.date(2025, 6, 30))
    scores = scorecard.score_frame(valid).score
    assert result["metrics"]["auc"] == pytest.approx(
        roc_auc_score(vy, scorecard.predict_proba(valid)))
    assert result["metrics"]["auc"] > 0.6
    assert sum(b["count"] for b in result["bands"]) == valid.height
    assert [b["band"] for b in result["bands"]] == [name for _, name in BANDS]
    assert result["bands"][0]["count"] == np.sum(scores < 550)
    assert set(result["stability"]["feature_psi"]) == set(scorecard.feature_names)
    assert 0 <= result["stability"]["score_psi"] < 0.25  # same population, same model
    bike = result["fairness"]["bike"]
    assert bike["approval_rate"] == pytest.approx(np.mean(scores >= 600))
    assert set(bike["attributes"]) == {"gender", "age_band", "district"}
    women = np.asarray(people["gender"].to_list()) == "F"
    rate_f = next(g["rate"] for g in bike["attributes"]["gender"]["groups"] if g["group"] == "F")
    assert rate_f == pytest.approx(np.mean(scores[women] >= 600))

    json_path, md_path = write_report(result, tmp_path / "report")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    text = md_path.read_text()
    assert "|  | AUC | KS | Gini | Brier |" in text
    assert f"{result['metrics']['auc']:.4f}" in text
    assert "### bike (score ≥ 600)" in text and "| district |" in text
    assert "Calibration by decile" in text and "Score PSI" in text
