"""Benchmark: validate a transit feed of N rows (default 1,000,000, ~1% bad rows).

    .venv/bin/python bench/validate.py [--rows N] [--feed PATH] [--format csv|parquet]

Prints rows per second, peak memory (of the whole process: building the feed, the floor and
the validation), the machine, and the ratio to a floor measured in the same run: reading the
same file and casting its columns to their types with no rules, no ID check and no record_id.
The goal (issue 2) is a 1,000,000-row feed in under 5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, peak_rss_mb, timed  # noqa: E402
from features.identity import make_resident_id  # noqa: E402
from features.records import SCHEMAS, Source  # noqa: E402
from features.validate import validate_feed  # noqa: E402

MONTHS = 12
TODAY = dt.date(2025, 1, 1)


def build_feed(rows: int, path: Path, bad_rate: float = 0.01, seed: int = 7) -> None:
    """A transit feed: one row per person × month over 12 months, about `bad_rate` bad rows."""
    rng = np.random.default_rng(seed)
    people = -(-rows // MONTHS)
    ids = [make_resident_id(110101 + int(rng.integers(0, 900)),
                            dt.date(1950, 1, 1) + dt.timedelta(days=int(rng.integers(0, 20000))),
                            int(rng.integers(0, 1000))) for _ in range(people)]
    person = np.arange(rows) // MONTHS
    month = np.arange(rows) % MONTHS + 1
    feed = pl.DataFrame({
        "resident_id": pl.Series(ids).gather(person),
        "month": pl.Series(month).cast(pl.String).str.zfill(2),
        "rides": rng.poisson(30, rows).astype(str),
        "bike_rides": rng.poisson(4, rows).astype(str),
        "overdue_returns": rng.poisson(0.05, rows).astype(str),
        "unpaid_fees": np.round(rng.exponential(2, rows) * (rng.random(rows) < 0.05), 2).astype(str),
        "fare_evasions": rng.poisson(0.01, rows).astype(str),
        "damage_incidents": rng.poisson(0.005, rows).astype(str),
    }).with_columns(pl.format("2024-{}", pl.col("month")).alias("month"))
    bad = rng.random(rows) < bad_rate
    kind = rng.integers(0, 4, rows)
    feed = feed.with_columns(
        pl.when(pl.Series(bad & (kind == 0))).then(pl.lit("-1")).otherwise("rides").alias("rides"),
        pl.when(pl.Series(bad & (kind == 1))).then(pl.lit("2024-13")).otherwise("month")
        .alias("month"),
        pl.when(pl.Series(bad & (kind == 2))).then(pl.col("resident_id").str.slice(0, 17) + "Y")
        .otherwise("resident_id").alias("resident_id"),
        pl.when(pl.Series(bad & (kind == 3))).then(pl.lit("lots")).otherwise("unpaid_fees")
        .alias("unpaid_fees"),
    )
    if path.suffix == ".csv":
        feed.write_csv(path)
    else:
        feed.write_parquet(path)


def floor(path: Path) -> pl.DataFrame:
    """The cost floor: read the same file and cast each column to its type, no rules."""
    frame = pl.read_csv(path, infer_schema=False) if path.suffix == ".csv" else pl.read_parquet(path)
    casts = []
    for col in SCHEMAS[Source.TRANSIT].columns:
        if col.month:
            casts.append((pl.col(col.name) + "-01").str.to_date("%Y-%m-%d", strict=False))
        else:
            casts.append(pl.col(col.name).cast(col.dtype, strict=False))
    return frame.select(casts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--feed", type=Path, help="an existing transit feed (CSV or Parquet)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    args = parser.parse_args()
    print(machine(), flush=True)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.feed
        if path is None:
            path = Path(tmp) / f"transit.{args.format}"
            with timed("build feed", results):
                build_feed(args.rows, path)
        with timed("floor (read + cast, no rules)", results):
            rows = floor(path).height
        with timed("validate_feed", results):
            result = validate_feed(path, Source.TRANSIT, secret=b"bench-key", today=TODAY)
    summary = result.summary()
    seconds = results["validate_feed"]
    print(f"rows {rows:,} · good {summary['good']:,} · quarantined {summary['quarantined']:,}")
    print(f"validate: {seconds:.2f} s · {rows / seconds:,.0f} rows/s · "
          f"{results['floor (read + cast, no rules)']:.2f} s floor · "
          f"ratio {seconds / results['floor (read + cast, no rules)']:.1f}× floor · "
          f"peak memory {peak_rss_mb():,.0f} MiB · goal < 5 s per 1,000,000 rows")


if __name__ == "__main__":
    main()
