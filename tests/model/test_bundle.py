"""A model directory: round trip, determinism, checksums, catalog check, no pickle."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import polars as pl
import pytest

import model.bundle as bundle
from features.catalog import FEATURE_NAMES
from model.bundle import ModelRefused, frame_hash, load_model, save_model
from model.evaluate import evaluate
from model.train import train_scorecard

FAST = {"num_threads": 1, "nfold": 3, "max_rounds": 150, "patience": 20}


def city(n: int, seed: int, *, harmful_honours: bool = False) -> tuple[pl.DataFrame, np.ndarray]:
    """Random people with every catalog feature; defaults driven by a few of them, in the
    catalog's directions (or, with `harmful_honours`, honours *raising* the risk)."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.poisson(1.0, n).astype(float) for name in FEATURE_NAMES}
    columns["ss_months_missed_12m"] = rng.integers(0, 8, n).astype(float)
    columns["tr_unpaid_fees_latest"] = rng.exponential(50, n).round()
    columns["po_honours_60m"] = rng.integers(0, 4, n).astype(float)
    logit = (-2.0 + 0.45 * columns["ss_months_missed_12m"]
             + 0.01 * columns["tr_unpaid_fees_latest"]
             + (0.6 if harmful_honours else -0.3) * columns["po_honours_60m"])
    target = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pl.DataFrame({"person_key": [f"p{seed}-{i}" for i in range(n)], **columns})
    return frame, target


def people_for(frame: pl.DataFrame, seed: int, gender: np.ndarray | None = None) -> pl.DataFrame:
    """Gender, birth date and district for each row, at random unless `gender` is given."""
    rng = np.random.default_rng(seed)
    n = frame.height
    births = [f"{y}-06-15" for y in rng.integers(1940, 2005, n)]
    return pl.DataFrame({
        "person_key": frame["person_key"],
        "gender": gender if gender is not None else rng.choice(["F", "M"], n),
        "birth_date": pl.Series(births).str.to_date(),
        "district": rng.choice(["east", "west", "north"], n)})


@cache
def fitted(kind: str = "champion"):
    """(scorecard, report, train frame, train target, valid frame, valid target), trained once
    per kind: `champion`; `weaker` (its strongest feature shuffled); `broken` (honours free
    and harmful, against the catalog's +1)."""
    train, y = city(1500, 1, harmful_honours=kind == "broken")
    valid, vy = city(1500, 2)
    if kind == "weaker":
        shuffled = np.random.default_rng(9).permutation(train["ss_months_missed_12m"].to_numpy())
        train = train.with_columns(pl.Series("ss_months_missed_12m", shuffled))
    directions = None
    if kind == "broken":
        from features.catalog import directions as catalog_directions
        directions = {**catalog_directions(), "po_honours_60m": 0}
        valid, vy = city(1500, 2, harmful_honours=True)
    scorecard, report = train_scorecard(train, y, valid, vy, features=list(FEATURE_NAMES),
                                        directions=directions, seed=0, **FAST)
    return scorecard, report, train, y, valid, vy


@pytest.fixture
def saved(tmp_path):
    scorecard, report, train, y, valid, vy = fitted()
    evaluation = evaluate(scorecard, valid, vy, train_frame=train, people=people_for(valid, 3))
    directory = save_model(scorecard, tmp_path / "m", report=report, evaluation=evaluation,
                           training_data_hash=frame_hash(train, y))
    return directory, scorecard, valid


def test_round_trip_scores_identically(saved):
    directory, scorecard, valid = saved
    loaded = load_model(directory)
    before, after = scorecard.score_frame(valid), loaded.scorecard.score_frame(valid)
    assert np.array_equal(before.score, after.score)
    assert np.array_equal(before.probability, after.probability)
    assert np.array_equal(before.points, after.points)
    assert loaded.metadata["features"] == FEATURE_NAMES
    assert loaded.metadata["catalog_hash"] is not None


def test_metadata_records_what_the_model_depends_on(saved):
    directory, scorecard, _ = saved
    meta = json.loads((directory / "metadata.json").read_text())
    for key in ("catalog_hash", "training_data_hash", "parameters", "seed", "metrics",
                "points_scaling", "calibration", "created_at"):
        assert meta[key] is not None, key
    assert set(meta["library_versions"]) >= {"lightgbm", "numpy", "polars", "sklearn", "python"}
    assert meta["calibration"] == scorecard.calibration.to_dict()
    assert meta["points_scaling"]["pdo"] == scorecard.scale.pdo
    sums = (directory / "SHA256SUMS").read_text()
    for name in ("model.txt", "metadata.json", "MODEL_CARD.md", "evaluation.json"):
        assert f"  {name}\n" in sums


def test_same_model_and_timestamp_give_byte_identical_files(tmp_path):
    scorecard, report, train, y, *_ = fitted()
    a = save_model(scorecard, tmp_path / "a", report=report, evaluation=None,
                   training_data_hash="h", created_at="2026-01-01T00:00:00+00:00")
    b = save_model(scorecard, tmp_path / "b", report=report, evaluation=None,
                   training_data_hash="h", created_at="2026-01-01T00:00:00+00:00")
    c = save_model(scorecard, tmp_path / "c", report=report, evaluation=None,
                   training_data_hash="h")
    for name in ("model.txt", "metadata.json", "MODEL_CARD.md", "SHA256SUMS"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.txt").read_bytes() == (c / "model.txt").read_bytes()


@pytest.mark.parametrize("name", ["model.txt", "metadata.json", "MODEL_CARD.md"])
def test_a_tampered_file_is_refused_by_name(saved, name):
    directory, *_ = saved
    path = directory / name
    path.write_text(path.read_text().replace("0", "1", 1))
    with pytest.raises(ModelRefused, match=name.replace(".", r"\.")):
        load_model(directory)


def test_missing_or_unlisted_files_are_refused(saved):
    directory, *_ = saved
    (directory / "extra.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelRefused, match="extra.bin"):
        load_model(directory)
    (directory / "extra.bin").unlink()
    (directory / "SHA256SUMS").unlink()
    with pytest.raises(ModelRefused, match="SHA256SUMS"):
        load_model(directory)


def test_catalog_change_is_refused(saved, monkeypatch):
    directory, *_ = saved
    monkeypatch.setattr(bundle, "catalog_hash", lambda: "0" * 64)
    with pytest.raises(ModelRefused, match="catalog changed since training"):
        load_model(directory)


def test_a_table_model_has_no_catalog_and_ignores_catalog_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    frame = pl.DataFrame({"income": rng.normal(size=400), "city": rng.choice(["a", "b"], 400)})
    y = (rng.random(400) < 1 / (1 + np.exp(2 * frame["income"].to_numpy()))).astype(int)
    scorecard, report = train_scorecard(frame, y, frame, y, **FAST)
    directory = save_model(scorecard, tmp_path / "t", report=report, evaluation=None,
                           training_data_hash=frame_hash(frame, y))
    monkeypatch.setattr(bundle, "catalog_hash", lambda: "0" * 64)
    loaded = load_model(directory)
    assert loaded.metadata["catalog_hash"] is None
    assert np.array_equal(loaded.scorecard.score_frame(frame).score,
                          scorecard.score_frame(frame).score)


def test_no_pickle_anywhere(saved):
    directory, *_ = saved
    for path in directory.iterdir():
        data = path.read_bytes()
        data.decode("utf-8")  # every file is text
        assert not data.startswith(b"\x80"), f"{path.name} looks like a pickle"
        assert path.suffix not in (".pkl", ".pickle", ".joblib")


def test_model_card_follows_mitchell_et_al(saved):
    directory, *_ = saved
    card = (directory / "MODEL_CARD.md").read_text()
    for section in ("Model details", "Intended use", "Out-of-scope use", "Factors", "Metrics",
                    "Evaluation data", "Training data", "Quantitative analyses",
                    "Disaggregated results", "Ethical considerations",
                    "Caveats and recommendations"):
        assert f"## {section}" in card or f"### {section}" in card, section
    assert "employment" in card and "policing" in card
    evaluation = json.loads((directory / "evaluation.json").read_text())
    assert f"{evaluation['metrics']['auc']:.4f}" in card
    assert "age_band" in card and "district" in card


def test_frame_hash_is_stable_and_sensitive():
    frame, y = city(50, 7)
    again, y_again = city(50, 7)
    assert frame_hash(frame, y) == frame_hash(again, y_again)
    assert frame_hash(frame, y) != frame_hash(frame, 1 - y)
    changed = frame.with_columns(pl.col("tr_rides_12m") + 1)
    assert frame_hash(changed, y) != frame_hash(frame, y)
