"""A small, real world for service tests: a city, its validated feeds, and a champion.

Built once per test session (a few seconds): a 2,000-person city with a few spoiled rows, its
typed records, features as of the training and validation snapshots, a scorecard trained on
them with fast settings, registered and promoted in a registry. Tests that change the registry
copy it first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from features.build import build_features
from features.catalog import SCORED_FEATURES, directions
from features.city import generate_city
from features.records import Records, Source
from features.validate import validate_feed
from model.evaluate import snapshot
from model.registry import Registry
from model.train import train_scorecard

TRAIN_AS_OF, VALID_AS_OF = dt.date(2024, 1, 1), dt.date(2025, 1, 1)
FAST = {"num_threads": 1, "nfold": 3, "max_rounds": 150, "patience": 20}


@dataclass
class World:
    root: Path
    city: Path  # feeds/<source>.parquet, people, outcomes, truth
    records: Records
    registry: Path
    version: str

    def feed(self, source: Source) -> Path:
        return self.city / "feeds" / f"{source.value}.parquet"

    def people(self) -> pl.DataFrame:
        return pl.read_parquet(self.city / "people.parquet")


def build_world(root: Path, people: int = 2_000, seed: int = 11) -> World:
    city = root / "city"
    generate_city(people, seed, city, corrupt_rate=0.01, progress=False)
    typed = {s.value: validate_feed(city / "feeds" / f"{s.value}.parquet", s,
                                    today=dt.date(2026, 1, 1)).records for s in Source}
    records = Records(**typed)
    keys = pl.read_parquet(city / "people.parquet")["person_key"]
    outcomes = pl.read_parquet(city / "outcomes.parquet")
    frames = {}
    for as_of in (TRAIN_AS_OF, VALID_AS_OF):
        frame, target, _ = snapshot(build_features(records, as_of, keys), outcomes, as_of)
        frames[as_of] = (frame, target)
    (train, y), (valid, vy) = frames[TRAIN_AS_OF], frames[VALID_AS_OF]
    scorecard, report = train_scorecard(train, y, valid, vy, features=list(SCORED_FEATURES),
                                        directions=directions(), seed=0, **FAST)
    registry = Registry(root / "registry")
    from model.bundle import frame_hash

    version = registry.register(scorecard, by="tests", why="service test world", report=report,
                                training_data_hash=frame_hash(train, y))
    registry.promote(version, frame=valid, target=vy, force=True, by="tests",
                     why="a test world is too small for the fairness gate to mean anything")
    return World(root, city, records, root / "registry", version)
