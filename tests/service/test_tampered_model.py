"""A tampered or corrupt champion in the registry is refused, the refusal is logged, and the
earlier champion serves; with none to fall back to, the instance says it is not ready."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from model.registry import Registry
from service.scoring.serving import load_serving
from tests.service.world import VALID_AS_OF


def _tamper(model: Path) -> None:
    """One leaf value edited: a plausible model, only the checksum knows."""
    model.write_text(model.read_text().replace("leaf_value=", "leaf_value=1", 1))


def _truncate(model: Path) -> None:
    """A copy cut off halfway (a full disk, an interrupted sync)."""
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])


def _garbage(model: Path) -> None:
    model.write_bytes(os.urandom(4096))


def _missing(model: Path) -> None:
    model.unlink()


def _rewritten(model: Path) -> None:
    """Corrupt, with SHA256SUMS recomputed to match: the checksums pass, then the model fails
    to parse (and the digest kept at registration would not match either)."""
    from model.bundle import write_sums

    model.write_text("tree\nnot a model\n")
    write_sums(model.parent)


DAMAGE = {"tampered": (_tamper, "checksum"), "truncated": (_truncate, "checksum"),
          "garbage": (_garbage, "checksum"), "missing": (_missing, "missing"),
          "rewritten": (_rewritten, "could not be loaded")}


@pytest.fixture(scope="module")
def two_champions(world, tmp_path_factory):
    """A registry whose champion has an earlier champion to fall back to; a probe frame."""
    from features.build import build_features
    from model.evaluate import snapshot

    root = tmp_path_factory.mktemp("two-champions") / "registry"
    shutil.copytree(world.registry, root)
    registry = Registry(root)
    first = registry.champion()
    outcomes = pl.read_parquet(world.city / "outcomes.parquet")
    keys = world.people()["person_key"]
    frame, target, _ = snapshot(build_features(world.records, VALID_AS_OF, keys), outcomes,
                                VALID_AS_OF)
    second = registry.register(root / "versions" / first, by="tests", why="a second version")
    registry.promote(second, frame=frame, target=target, force=True, by="tests",
                     why="to have an earlier champion to fall back to")
    assert load_serving(root).version == second
    return root, first, second, frame.head(5)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_champion_is_refused_and_logged_and_the_previous_one_keeps_serving(
        two_champions, tmp_path, caplog, damage):
    source, first, second, probe = two_champions
    root = tmp_path / "registry"
    shutil.copytree(source, root)
    expected = Registry(root).load(first).scorecard.score_frame(probe).score
    spoil, why = DAMAGE[damage]
    spoil(root / "versions" / second / "model.txt")
    caplog.set_level(logging.WARNING)
    serving = load_serving(root)
    assert serving.version == first and serving.ready
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and why in refusals[0] and first in refusals[0]
    assert list(serving.scorecard.score_frame(probe).score) == list(expected)


def test_with_no_loadable_champion_the_instance_is_not_ready(world, tmp_path, caplog):
    root = tmp_path / "registry"
    shutil.copytree(world.registry, root)
    champion = Registry(root).champion()
    (root / "versions" / champion / "model.txt").write_text("tree\nnot a model\n")
    caplog.set_level(logging.ERROR)
    serving = load_serving(root)
    assert not serving.ready and "refused" in serving.problem
    assert any("no loadable champion" in r.getMessage() for r in caplog.records)
