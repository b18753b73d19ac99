"""A tampered champion in the registry is refused, logged, and the earlier champion serves."""

from __future__ import annotations

import logging
import shutil

import polars as pl

from model.registry import Registry
from service.serving import load_serving
from tests.service.world import VALID_AS_OF


def test_a_tampered_champion_is_refused_and_the_previous_one_keeps_serving(world, tmp_path,
                                                                           caplog):
    from features.build import build_features
    from model.evaluate import snapshot

    root = tmp_path / "registry"
    shutil.copytree(world.registry, root)
    registry = Registry(root)
    first = registry.champion()
    loaded = registry.load(first)
    outcomes = pl.read_parquet(world.city / "outcomes.parquet")
    keys = world.people()["person_key"]
    frame, target, _ = snapshot(build_features(world.records, VALID_AS_OF, keys), outcomes,
                                VALID_AS_OF)
    second = registry.register(root / "versions" / first, by="tests", why="a second version")
    registry.promote(second, frame=frame, target=target, force=True, by="tests",
                     why="to have an earlier champion to fall back to")
    assert load_serving(root).version == second

    model_file = root / "versions" / second / "model.txt"
    model_file.write_text(model_file.read_text().replace("leaf_value=", "leaf_value=1", 1))
    caplog.set_level(logging.WARNING)
    serving = load_serving(root)
    assert serving.version == first and serving.ready
    assert any("refused" in record.getMessage() for record in caplog.records)
    probe = frame.head(5)
    assert list(serving.scorecard.score_frame(probe).score) == list(
        loaded.scorecard.score_frame(probe).score)


def test_with_no_loadable_champion_the_instance_is_not_ready(world, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(world.registry, root)
    champion = Registry(root).champion()
    (root / "versions" / champion / "model.txt").write_text("tree\nnot a model\n")
    serving = load_serving(root)
    assert not serving.ready and "refused" in serving.problem
