"""Shared data for the model tests: a random people table over the catalog's features, with
defaults that follow the catalog's directions, and one small trained scorecard per session."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import polars as pl

from features.catalog import FEATURES


def _column(rng: np.random.Generator, unit: str, n: int) -> np.ndarray:
    if unit == "months":
        return rng.integers(0, 61, n).astype(float)
    if unit == "CNY":
        return np.where(rng.random(n) < 0.7, 0.0, np.round(rng.exponential(800.0, n), 2))
    return rng.poisson(0.6, n).astype(float)


def make_people(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """(features with person_key, defaulted 0/1): P(default) moves each feature's way."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    logit = np.full(n, -2.5)
    for feature in FEATURES:
        values = _column(rng, feature.unit, n)
        columns[feature.name] = values
        z = (values - values.mean()) / (values.std() + 1e-9)
        if feature.direction:
            logit -= feature.direction * 0.35 * z
        else:
            logit += 0.15 * (z ** 2 - 1)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pl.DataFrame({"person_key": [f"p{seed}-{i:06d}" for i in range(n)], **columns})
    return frame, y


@cache
def small_scorecard(seed: int = 0, with_valid: bool = True) -> tuple[Any, dict]:
    """A scorecard trained on 3,000 random people (validated on 1,500 others), one thread."""
    from model.train import train_scorecard

    train, y = make_people(3000, seed)
    valid, vy = make_people(1500, seed + 100) if with_valid else (None, None)
    return train_scorecard(train, y, valid, vy, seed=seed, num_threads=1, max_rounds=300,
                           patience=20, params={"learning_rate": 0.2})
