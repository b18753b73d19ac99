"""Recalibration (model/recalibrate.py, `osmanthus recalibrate`): the trees stay byte for byte,
the calibration moves to the newer snapshot, the parent is recorded, the gates apply, and the
same inputs give the same bundle; and the points scale's anchor on `osmanthus train`."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from model.bundle import load_model
from model.recalibrate import parent_scorecard, recalibrate
from model.registry import PromotionRefused, Registry
from model.scorecard import PointsScale
from service.cli.main import main
from tests.model.test_bundle import city, people_for
from tests.model.test_registry import promote, register, snapshot_data

DAY = dt.date(2025, 6, 30)


def drifted(seed: int = 7) -> tuple[pl.DataFrame, np.ndarray]:
    """A newer snapshot whose default rate rose for everyone: the same features drive the
    risk, but 12% of the good outcomes turned bad (a downturn the trees cannot know)."""
    frame, y = city(1500, seed)
    rng = np.random.default_rng(seed + 1)
    return frame, np.where(rng.random(len(y)) < 0.12, 1, y)


@pytest.fixture
def registry(tmp_path):
    registry = Registry(tmp_path / "registry")
    register(registry, by="ana", why="the champion")
    return registry


def recal(registry: Registry, scale: PointsScale | None = None, data=None) -> str:
    frame, y = data if data is not None else drifted()
    card, report = recalibrate(registry.load("v0001"), frame, y, as_of=DAY, scale=scale,
                               parent_version="v0001")
    return registry.register(card, report=report, by="bo", why="drift",
                             created_at="2025-06-30T00:00:00+00:00")


def test_recalibration_keeps_the_trees_and_refits_the_calibration(registry):
    version = recal(registry)
    parent, child = registry.load("v0001"), registry.load(version)
    assert (registry.path(version) / "model.txt").read_bytes() == \
        (registry.path("v0001") / "model.txt").read_bytes()
    assert child.scorecard.calibration != parent.scorecard.calibration
    assert child.scorecard.scale == parent.scorecard.scale  # no scale asked: the parent's
    frame, y = drifted()
    before = parent.scorecard.score_frame(frame).probability
    after = child.scorecard.score_frame(frame).probability
    # Platt with an intercept matches the observed rate on the rows it was fit on
    assert abs(after.mean() - y.mean()) < 1e-6 < abs(before.mean() - y.mean())
    assert np.mean((after - y) ** 2) < np.mean((before - y) ** 2)
    # the ranking is the trees': the same order of people before and after
    assert np.array_equal(np.argsort(before, kind="stable"), np.argsort(after, kind="stable"))
    entry = child.metadata["training_report"]["recalibration"]
    assert entry["calibration_before"] == parent.scorecard.calibration.to_dict()
    assert entry["calibration_after"] == child.scorecard.calibration.to_dict()
    assert entry["after"]["brier"] < entry["before"]["brier"]


def test_the_parent_is_recorded(registry):
    version = recal(registry)
    record = registry.record(version)
    assert record["parent"] == "v0001"
    assert record["parent_digest"] == registry.record("v0001")["digest"]
    assert load_model(registry.path(version)).metadata["parent"]["version"] == "v0001"
    assert registry.history()[-1]["parent"] == "v0001"
    card = (registry.path(version) / "MODEL_CARD.md").read_text()
    assert "Recalibrated from v0001 on the snapshot of 2025-06-30 (1500 people)" in card
    # the bundle alone rebuilds the model before its recalibration
    before = parent_scorecard(registry.load(version).scorecard, registry.load(version).metadata)
    frame, _ = drifted()
    assert np.array_equal(before.score_frame(frame).score,
                          registry.load("v0001").scorecard.score_frame(frame).score)
    assert registry.record("v0001").get("parent") is None


def test_the_same_inputs_give_the_same_bundle_bytes(registry):
    first, second = recal(registry), recal(registry)
    names = sorted(p.name for p in registry.path(first).iterdir())
    assert names == sorted(p.name for p in registry.path(second).iterdir())
    for name in names:
        assert (registry.path(first) / name).read_bytes() == \
            (registry.path(second) / name).read_bytes(), name
    assert registry.record(first)["digest"] == registry.record(second)["digest"]


def test_a_new_scale_moves_the_points_not_the_probabilities(registry):
    plain, wide = recal(registry), recal(registry, PointsScale(600, 30, 60))
    frame, _ = drifted()
    a, b = registry.load(plain).scorecard, registry.load(wide).scorecard
    assert b.scale.pdo == 60 and b.scale.base_odds == 30
    assert np.allclose(a.score_frame(frame).probability, b.score_frame(frame).probability,
                       rtol=0, atol=1e-12)
    assert not np.allclose(a.score_frame(frame).score, b.score_frame(frame).score)
    assert "600/30/60 (base score/base odds/PDO)" in (registry.path(wide) /
                                                      "MODEL_CARD.md").read_text()


def test_a_recalibration_goes_through_the_gates(registry):
    promote(registry, "v0001", by="ana", why="first champion")
    # recalibrated on a snapshot whose scores the perks split very differently: refused
    rescaled = recal(registry, PointsScale(600, 50, 160))
    with pytest.raises(PromotionRefused) as refusal:
        promote(registry, rescaled)
    assert any("PSI" in reason for reason in refusal.value.reasons)
    assert registry.champion() == "v0001"
    # recalibrated on the very rows the champion was calibrated on: same model, gates pass
    valid, vy, _ = snapshot_data()
    same = recal(registry, data=(valid, vy))
    assert registry.load(same).scorecard.calibration == registry.load("v0001").scorecard.calibration
    promote(registry, same, by="bo")
    assert registry.champion() == same


def test_a_snapshot_with_one_outcome_is_refused(registry):
    frame, y = drifted()
    with pytest.raises(ValueError, match="both good and bad"):
        recalibrate(registry.load("v0001"), frame, np.zeros_like(y), as_of=DAY)


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=32),
       st.floats(allow_nan=True, allow_infinity=True, width=32),
       st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_a_scale_is_built_only_when_it_means_something(base_score, base_odds, pdo):
    meaningful = (all(map(math.isfinite, (base_score, base_odds, pdo))) and base_odds > 0
                  and pdo > 0 and PointsScale.min_score <= base_score <= PointsScale.max_score)
    if not meaningful:
        with pytest.raises(ValueError, match="invalid points scale"):
            PointsScale(base_score, base_odds, pdo)
        return
    scale = PointsScale(base_score, base_odds, pdo)
    # the anchor holds: the base odds score the base score, doubling them adds the PDO
    assert math.isclose(scale.offset + scale.factor * math.log(base_odds), base_score,
                        rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(scale.offset)))
    assert math.isclose(scale.factor * math.log(2.0), pdo, rel_tol=1e-12)


# --- the commands ---------------------------------------------------------------------------

@pytest.fixture
def snapshot_files(tmp_path):
    frame, y = drifted()
    day = DAY.isoformat()
    frame.with_columns(snapshot=pl.lit(day)).write_parquet(tmp_path / "f.parquet")
    pl.DataFrame({"person_key": frame["person_key"], "snapshot": [day] * frame.height,
                  "defaulted": y}).write_parquet(tmp_path / "o.parquet")
    people_for(frame, 3).write_parquet(tmp_path / "people.parquet")
    return ["--features", str(tmp_path / "f.parquet"), "--outcomes", str(tmp_path / "o.parquet"),
            "--as-of", day, "--people", str(tmp_path / "people.parquet")]


def test_recalibrate_command(registry, snapshot_files):
    reg = ["--registry", str(registry.root)]
    runner = CliRunner()
    promote(registry, "v0001", by="ana", why="first champion")
    result = runner.invoke(main, ["recalibrate", "champion", *snapshot_files, *reg,
                                  "--pdo", "50", "--why", "drift"])
    assert result.exit_code == 0, result.output
    assert "registered v0002 (parent v0001)" in result.output
    assert registry.record("v0002")["parent"] == "v0001"
    assert registry.load("v0002").scorecard.scale.pdo == 50
    assert registry.load("v0002").scorecard.scale.base_odds == \
        registry.load("v0001").scorecard.scale.base_odds
    assert (registry.path("v0002") / "evaluation.json").is_file()
    assert registry.champion() == "v0001"  # registered, not promoted
    again = runner.invoke(main, ["recalibrate", "v0001", *snapshot_files, *reg, "--pdo", "50",
                                 "--why", "drift"])
    assert again.exit_code == 0, again.output
    assert registry.record("v0003")["digest"] == registry.record("v0002")["digest"]
    listing = runner.invoke(main, ["models", "list", *reg]).output
    assert "recalibrated from v0001" in listing


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--pdo", "0", "PDO must be positive"), ("--base-odds", "-2", "base odds must be positive"),
    ("--base-score", "nan", "must be a finite number"), ("--pdo", "inf", "finite"),
    ("--pdo", "forty", "not a valid float")])
def test_recalibrate_refuses_a_meaningless_scale(registry, snapshot_files, option, value,
                                                 message):
    result = CliRunner().invoke(main, ["recalibrate", "v0001", *snapshot_files, "--registry",
                                       str(registry.root), option, value])
    assert result.exit_code != 0 and message in result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert [row["version"] for row in registry.list()] == ["v0001"]


def test_recalibrate_refuses_what_it_cannot_use(registry, snapshot_files, tmp_path):
    runner = CliRunner()
    reg = ["--registry", str(registry.root)]
    missing = runner.invoke(main, ["recalibrate", "v0042", *snapshot_files, *reg])
    assert missing.exit_code == 1 and "v0042" in missing.output
    other_day = [*snapshot_files]
    other_day[other_day.index("--as-of") + 1] = "2024-01-01"
    empty = runner.invoke(main, ["recalibrate", "v0001", *other_day, *reg])
    assert empty.exit_code == 1 and "no person has both features and an outcome" in empty.output
    assert [row["version"] for row in registry.list()] == ["v0001"]


def _table(tmp_path):
    from tests.model.test_train import _credit_table

    _credit_table(1200, 5).write_csv(tmp_path / "credit.csv")
    return ["train", "--table", str(tmp_path / "credit.csv"), "--target", "status", "--bad",
            "default", "--id-column", "id"]


def test_train_takes_the_scale_anchor_and_stores_it(tmp_path):
    result = CliRunner().invoke(main, [*_table(tmp_path), "--out", str(tmp_path / "m"),
                                       "--base-score", "650", "--base-odds", "20",
                                       "--pdo", "30"])
    assert result.exit_code == 0, result.output
    loaded = load_model(tmp_path / "m")
    assert loaded.scorecard.scale == PointsScale(650, 20, 30)
    assert loaded.metadata["points_scaling"]["base_score"] == 650
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "(base score 650 at odds 20:1, PDO 30)" in card
    default = CliRunner().invoke(main, [*_table(tmp_path), "--out", str(tmp_path / "d")])
    assert default.exit_code == 0, default.output
    assert load_model(tmp_path / "d").scorecard.scale == PointsScale()


def test_train_in_catalog_mode_takes_the_scale_anchor(tmp_path):
    frame, y = city(1200, 11)
    day = "2024-01-01"
    frame.with_columns(snapshot=pl.lit(day)).write_parquet(tmp_path / "f.parquet")
    pl.DataFrame({"person_key": frame["person_key"], "snapshot": [day] * frame.height,
                  "defaulted": y}).write_parquet(tmp_path / "o.parquet")
    args = ["train", "--features", str(tmp_path / "f.parquet"), "--outcomes",
            str(tmp_path / "o.parquet"), "--train-as-of", day, "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(main, [*args, "--base-odds", "10", "--pdo", "25"])
    assert result.exit_code == 0, result.output
    scale = load_model(tmp_path / "m").scorecard.scale
    assert (scale.base_odds, scale.pdo, scale.base_score) == (10, 25, PointsScale().base_score)
    bad = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "n"), "--base-odds", "0"])
    assert bad.exit_code != 0 and "base odds must be positive" in bad.output
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--pdo", "-40", "PDO must be positive"), ("--base-odds", "0", "base odds must be positive"),
    ("--base-score", "inf", "must be a finite number"),
    ("--base-score", "5000", "outside the score range")])
def test_train_refuses_a_meaningless_scale(tmp_path, option, value, message):
    result = CliRunner().invoke(main, [*_table(tmp_path), "--out", str(tmp_path / "m"),
                                       option, value])
    assert result.exit_code != 0 and message in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "m").exists()



def test_the_report_shows_calibration_before_and_after_beside_the_champion(registry, tmp_path):
    from model.report import Model, build_report

    promote(registry, "v0001", by="ana", why="first champion")
    version = recal(registry)
    frame, y = drifted()
    path = build_report(Model(version, registry.load(version)), frame, y, tmp_path / "r",
                        champion=Model("champion v0001", registry.load_champion()),
                        as_of=DAY, sample=100)
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())["recalibration"]
    parent, child = registry.load("v0001").scorecard, registry.load(version).scorecard
    assert numbers["parent"]["version"] == "v0001"
    assert numbers["before"]["platt"] == parent.calibration.to_dict()
    assert numbers["after"]["platt"] == child.calibration.to_dict()
    assert numbers["champion"]["platt"] == parent.calibration.to_dict()
    assert abs(numbers["after"]["mean_predicted"] - y.mean()) < 1e-6
    assert numbers["before"]["brier"] > numbers["after"]["brier"]
    assert [r["predicted"] for r in numbers["before"]["calibration"]] == pytest.approx(
        [r["predicted"] for r in
         json.loads((tmp_path / "r" / "report.json").read_text())["evaluations"]
         ["champion v0001"]["calibration"]])
    page = path.read_text()
    assert "<h3>Recalibration</h3>" in page and "before recalibration" in page
    assert f"{version} keeps the trees of v0001" in page

    plain = build_report(Model("v0001", registry.load("v0001")), frame, y, tmp_path / "p",
                         as_of=DAY, sample=100)
    assert "Recalibration</h3>" not in plain.read_text()
    assert "recalibration" not in json.loads((tmp_path / "p" / "report.json").read_text())
