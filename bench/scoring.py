"""Scoring speed: score plus every feature's points for a million people, and one person online.

Trains the demo scorecard on a synthetic city (the catalog's scored features), then scores a
features matrix of `--rows` people (rows drawn from the city's features table) and compares,
in the same run and on the same matrix:

- the scorecard's fast path (`Scorecard.score_frame`: probability, score, band and all points),
- LightGBM's own `Booster.predict` (probabilities only, no points) — the floor to beat,
- LightGBM's `pred_contrib` (points the slow way), on a sample, extrapolated per row,

and one person online: score plus explanation (`model.explain.explain`), median of many calls.

    .venv/bin/python bench/scoring.py [--people 50000] [--rows 1000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, peak_rss_mb  # noqa: E402


def build(people: int, seed: int, threads: int):
    from features.build import build_features
    from features.catalog import SCORED_FEATURES, directions
    from features.city import generate_city
    from features.records import Records, Source
    from features.validate import validate_feed
    from model.evaluate import snapshot
    from model.train import train_scorecard

    out = Path(tempfile.mkdtemp(prefix="osmanthus-bench-"))
    generate_city(people, seed, out, progress=False)
    records = Records(**{s.value: validate_feed(out / "feeds" / f"{s.value}.parquet", s,
                                                today=dt.date(2026, 1, 1)).records
                         for s in Source})
    keys = pl.read_parquet(out / "people.parquet")["person_key"]
    outcomes = pl.read_parquet(out / "outcomes.parquet")
    frames = [snapshot(build_features(records, day, keys), outcomes, day)
              for day in (dt.date(2024, 1, 1), dt.date(2025, 1, 1))]
    (train, y, _), (valid, vy, _) = frames
    scorecard, report = train_scorecard(train, y, valid, vy, features=list(SCORED_FEATURES),
                                        directions=directions(), seed=seed, num_threads=threads)
    return scorecard, report, valid


def rate(seconds: float, rows: int) -> str:
    return f"{rows / seconds:>12,.0f} rows/s  ({seconds:.3f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=50_000, help="city size to train on")
    parser.add_argument("--rows", type=int, default=1_000_000, help="people to score")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads for predict")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    print(f"machine: {machine()}")
    started = time.perf_counter()
    scorecard, report, valid = build(args.people, args.seed, args.threads)
    trees = scorecard.booster.num_trees()
    print(f"trained on {args.people:,} people in {time.perf_counter() - started:.1f} s: "
          f"{len(scorecard.feature_names)} features, {trees} trees, "
          f"additive fast path: {scorecard.additive}")

    rng = np.random.default_rng(args.seed)
    table = valid.select(scorecard.feature_names)[rng.integers(0, valid.height, args.rows)]
    x = table.to_numpy().astype(np.float64)
    scorecard.num_threads = args.threads

    start = time.perf_counter()
    scored = scorecard.score_frame(table)
    bands = scored.bands
    fast = time.perf_counter() - start
    start = time.perf_counter()
    probability = scorecard.booster.predict(x, num_threads=args.threads)
    floor = time.perf_counter() - start
    sample = min(20_000, args.rows)
    start = time.perf_counter()
    contrib = scorecard.booster.predict(x[:sample], pred_contrib=True, num_threads=args.threads)
    slow = (time.perf_counter() - start) * args.rows / sample
    exact = np.abs(scored.points[:sample] - contrib[:, :-1] * scorecard._per_margin).max()
    assert len(bands) == args.rows and probability.shape == (args.rows,)

    print(f"\nbatch, {args.rows:,} people (score + band + all {len(scorecard.feature_names)} "
          f"features' points):")
    print(f"  scorecard fast path          {rate(fast, args.rows)}")
    print(f"  Booster.predict (floor)      {rate(floor, args.rows)}   probabilities only")
    print(f"  Booster.predict pred_contrib {rate(slow, args.rows)}   (extrapolated from "
          f"{sample:,})")
    print(f"  fast path ÷ predict: {floor / fast:.1f}× faster; ÷ pred_contrib: "
          f"{slow / fast:.0f}× faster; max |points − pred_contrib points| = {exact:.1e}")

    from model.explain import explain

    rows = valid.head(2000).to_dicts()
    timings = []
    for row in rows:
        start = time.perf_counter()
        explain(scorecard, row, row.get("records_counted"))
        timings.append(time.perf_counter() - start)
    timings = np.array(timings) * 1000
    print(f"\none person, score + explanation: median {np.median(timings):.3f} ms, "
          f"p99 {np.percentile(timings, 99):.3f} ms (2,000 people)")
    print(f"peak memory: {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
