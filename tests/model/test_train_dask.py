"""Training on a Dask cluster (model/train_dask.py): a real LocalCluster of two worker
processes on 127.0.0.1, a small synthetic city's features written as Parquet partitions, and
a model that goes through the registry like any other."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from features.build import build_features
from features.catalog import SCORED_FEATURES, directions
from features.city import generate_city
from features.records import Records, Source
from features.validate import validate_feed
from model.evaluate import snapshot
from model.explain import explain
from model.registry import Registry, monotone_violations
from model.train import train_scorecard
from model.train_dask import dask_client, labelled, read_partitioned, train_scorecard_dask
from tests.model import make_people

TRAIN_AS_OF, VALID_AS_OF = dt.date(2024, 1, 1), dt.date(2025, 1, 1)
PARTITIONS = 4
# fast settings shared by both engines: a high learning rate, 3 folds, a short patience
FAST = {"nfold": 3, "max_rounds": 400, "patience": 20, "params": {"learning_rate": 0.2}}


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 3,000-person city: training features as PARTITIONS Parquet files (person_key and the
    catalog's features, no label), the validation snapshot as one file, outcomes apart."""
    root = tmp_path_factory.mktemp("dask-city")
    generate_city(3_000, 23, root / "city", corrupt_rate=0.0, progress=False)
    records = Records(**{s.value: validate_feed(root / "city" / "feeds" / f"{s.value}.parquet",
                                                 s, today=dt.date(2026, 1, 1)).records
                         for s in Source})
    keys = pl.read_parquet(root / "city" / "people.parquet")["person_key"]
    outcomes = pl.read_parquet(root / "city" / "outcomes.parquet")
    train = build_features(records, TRAIN_AS_OF, keys)
    parts = root / "train-parts"
    parts.mkdir()
    size = -(-train.height // PARTITIONS)
    for i, chunk in enumerate(train.iter_slices(size)):
        chunk.write_parquet(parts / f"part-{i:03d}.parquet")
    valid = build_features(records, VALID_AS_OF, keys)
    valid.write_parquet(root / "valid.parquet")
    outcomes.write_parquet(root / "outcomes.parquet")
    train_frame, train_y, _ = snapshot(train, outcomes, TRAIN_AS_OF)
    valid_frame, valid_y, _ = snapshot(valid, outcomes, VALID_AS_OF)
    return {"root": root, "parts": parts, "outcomes": root / "outcomes.parquet",
            "valid_path": root / "valid.parquet", "train": train_frame, "y": train_y,
            "valid": valid_frame, "vy": valid_y,
            "people": pl.read_parquet(root / "city" / "people.parquet")}


@pytest.fixture(scope="module")
def cluster():
    """The LocalCluster `osmanthus train --engine dask` starts without --scheduler: two
    worker processes on 127.0.0.1, one thread each, no dashboard; closed after the module.
    Yields (scheduler address, client). One per module: starting workers and importing
    LightGBM in them is most of a Dask test's time."""
    with dask_client(None, workers=2, threads_per_worker=1) as client:
        client.wait_for_workers(2, timeout=60)
        workers = client.scheduler_info()["workers"]
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers)
        assert [w["nthreads"] for w in workers.values()] == [1, 1]
        yield client.scheduler_info()["address"], client
    assert client.status == "closed"


@pytest.fixture(scope="module")
def trained(city, cluster):
    """The city's catalog scorecard fit on the cluster, rounds by CV on the (whole) sample."""
    _, client = cluster
    frame = labelled(read_partitioned(city["parts"]), read_partitioned(city["outcomes"]),
                     TRAIN_AS_OF)
    return train_scorecard_dask(client, frame, "defaulted", valid=city["valid"],
                                valid_target=city["vy"], features=list(SCORED_FEATURES),
                                directions=directions(), seed=0, **FAST)


def test_the_dask_model_is_registered_loaded_and_serves_like_any_other(city, trained,
                                                                       tmp_path):
    card, report = trained
    registry = Registry(tmp_path / "registry")
    version = registry.register(card, by="tests", why="trained on dask", report=report)
    promotion = registry.promote(version, frame=city["valid"], target=city["vy"],
                                 people=city["people"], force=True, by="tests",
                                 why="a 3,000-person city is too small for the fairness gate")
    assert not [r for r in promotion.reasons if "direction" in r or "AUC" in r]
    loaded = registry.load_champion()  # what serving loads: checksums, catalog, digest
    assert loaded.metadata["catalog_hash"] is not None
    assert monotone_violations(loaded) == []
    engine = loaded.metadata["training_report"]["engine"]
    assert engine["name"] == "dask" and engine["workers"] == 2
    assert engine["partitions"] == PARTITIONS and engine["threads_per_worker"] == 1
    assert loaded.metadata["scorecard"]["engine"] == "dask"
    assert loaded.metadata["training_data_hash"] == report["training_data_hash"]
    card_text = (registry.versions_dir / version / "MODEL_CARD.md").read_text()
    assert "Trained on a Dask cluster: 2 workers" in card_text

    served = loaded.scorecard
    assert served.feature_names == list(SCORED_FEATURES) and served.additive
    # the rounds chosen, unless LightGBM stopped early because no leaf could hold the evidence
    # a further split needs (min_sum_hessian_in_leaf, model/params.py)
    assert 0 < served.booster.num_trees() <= report["rounds"]
    scored = served.score_frame(city["valid"])
    np.testing.assert_allclose(scored.base_points + scored.points.sum(axis=1), scored.raw_score)
    np.testing.assert_allclose(scored.probability, card.score_frame(city["valid"]).probability)
    person = city["valid"].row(0, named=True)
    explanation = explain(served, person)
    assert explanation.base_points + sum(explanation.points.values()) == pytest.approx(
        explanation.raw_score)
    assert explanation.reasons_lowering or explanation.reasons_raising


def test_the_dask_fit_keeps_the_local_parameters_and_monotone_directions(trained, city):
    card, report = trained
    params = card.info["params"]
    assert params["monotone_constraints"] == [-directions()[n] for n in SCORED_FEATURES]
    assert params["learning_rate"] == 0.2 and params["seed"] == 0
    assert params["num_leaves"] == 2 and "interaction_constraints" not in params
    assert report["calibrated_on"] == "validation" and report["cv_folds"] == 3
    text = card.booster.model_to_string()
    assert "[machines:" not in text and "[local_listen_port:" not in text  # no cluster names
    assert "[monotone_constraints: " + ",".join(
        str(-directions()[n]) for n in SCORED_FEATURES) + "]" in text
    # every tree uses one feature (stumps), so the points are an exact table
    assert card.points_table().height > len(SCORED_FEATURES)
    person = city["valid"].row(0, named=True)
    grid, moved = np.linspace(0.0, 24.0, 13), 0
    for name in SCORED_FEATURES:
        sign = directions()[name]
        if not sign:
            continue
        scores = card.score_frame(pl.DataFrame([{**person, name: v} for v in grid])).score
        assert np.all(np.diff(scores) * sign >= -1e-9), name
        moved += bool(np.ptp(scores) > 0)
    assert moved >= 3  # the check is not vacuous: several features do move the score


def test_dask_auc_on_held_out_rows_is_close_to_the_local_trainer(trained, city):
    card, _ = trained
    local, _ = train_scorecard(city["train"], city["y"], city["valid"], city["vy"],
                               features=list(SCORED_FEATURES), directions=directions(), seed=0,
                               num_threads=1, **FAST)
    held = roc_auc_score(city["vy"], card.score_frame(city["valid"]).probability)
    floor = roc_auc_score(city["vy"], local.score_frame(city["valid"]).probability)
    # close to the local trainer's, or better (stumps sometimes generalise better out of time)
    assert floor - 0.02 <= held <= floor + 0.05


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A modeller's own table as 3 Parquet partitions: random people (about 10% bad, "yes"),
    six catalog columns and a text column whose values carry risk."""
    frame, y = make_people(4_000, 31)
    rng = np.random.default_rng(31)
    channel = np.where(rng.random(len(y)) < 0.3 + 0.3 * y, "branch", rng.choice(["app", "web"],
                                                                                len(y)))
    frame = frame.select(*SCORED_FEATURES[:6]).with_columns(
        pl.Series("channel", channel), pl.Series("bad", np.where(y == 1, "yes", "no")))
    root = tmp_path_factory.mktemp("dask-table")
    for i, chunk in enumerate(frame.iter_slices(-(-frame.height // 3))):
        chunk.write_parquet(root / f"{i}.parquet")
    return root


def test_without_validation_it_calibrates_on_held_out_rows(table, cluster):
    _, client = cluster
    card, report = train_scorecard_dask(client, read_partitioned(table), "bad", bad="yes",
                                        seed=1, rounds=40, holdout=0.25)
    assert report["calibrated_on"] == "held-out" and report["engine"]["rounds_from"] == "given"
    assert card.booster.num_trees() == 40 and 800 < report["n_calibration"] < 1200
    assert card.categories == {"channel": ["app", "branch", "web"]}
    assert report["categorical"] == ["channel"] and 0.6 < report["holdout_auc"] <= 1.0
    with pytest.raises(ValueError, match="held-out rows of one class"):
        train_scorecard_dask(client, read_partitioned(table), "bad", bad="yes", rounds=5,
                             holdout=0.01)
    with pytest.raises(ValueError, match="interaction"):
        train_scorecard_dask(client, read_partitioned(table), "bad", bad="yes", rounds=5,
                             interactions=[("channel", SCORED_FEATURES[0])])


def test_cli_trains_on_partitions_with_the_dask_engine_and_registers(city, cluster, tmp_path):
    from service.cli.main import main

    address, _ = cluster
    out = tmp_path / "model"
    result = CliRunner().invoke(main, [
        "train", "--engine", "dask", "--scheduler", address,
        "--features", str(city["parts"]), "--valid-features", str(city["valid_path"]),
        "--outcomes", str(city["outcomes"]), "--train-as-of", str(TRAIN_AS_OF),
        "--valid-as-of", str(VALID_AS_OF), "--rounds", "60", "--out", str(out)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"in {PARTITIONS} partitions over 2 workers" in result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["training_report"]["engine"]["name"] == "dask"
    assert (out / "evaluation.json").is_file()
    registered = CliRunner().invoke(main, ["models", "register", str(out), "--registry",
                                           str(tmp_path / "registry")], catch_exceptions=False)
    assert registered.exit_code == 0 and "as v0001" in registered.output


def test_cli_table_mode_and_the_local_engine_refuses_a_directory(table, cluster, tmp_path):
    from service.cli.main import main

    runner = CliRunner()
    refused = runner.invoke(main, ["train", "--table", str(table), "--target", "bad",
                                   "--bad", "yes", "--out", str(tmp_path / "local")])
    assert refused.exit_code != 0 and "--engine dask" in refused.output
    out = tmp_path / "model"
    result = runner.invoke(main, ["train", "--engine", "dask", "--scheduler", cluster[0],
                                  "--table", str(table), "--target", "bad", "--bad", "yes",
                                  "--rounds", "30", "--pdo", "25", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    meta = json.loads(Path(out / "metadata.json").read_text())
    assert meta["points_scaling"]["pdo"] == 25  # the scale's anchor reaches the Dask engine too
    assert meta["catalog_hash"] is None
    assert meta["features"] == [*SCORED_FEATURES[:6], "channel"]
    assert meta["training_report"]["calibrated_on"] == "held-out"
    assert meta["training_report"]["engine"]["workers"] == 2
