"""Benchmark: build everyone's features as of one date for a synthetic city of N people.

Run: `.venv/bin/python bench/features.py --people 1000000`.

The records are generated here, typed, with numpy and Polars (not by `features.city`), at the
sizes the design expects per person: 36–48 social-security months, about 30 transit months, a
few penalties and positive events, court listings for under 1% of people, and some records
dated after the as-of date, disputed or repaired so that every rule has work to do.

It prints records/s, persons/s and peak memory, and the cost floor measured in the same run
and engine: a plain group-by of the same records by person with no rules (a count and a sum of
one numeric column per source, joined on the person key), and the ratio of the two.

`record_id` is left empty: the builder never reads it, and 70 million 64-character ids would
measure string storage, not feature building.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, peak_rss_mb, timed  # noqa: E402
from features.build import build_features  # noqa: E402
from features.records import (  # noqa: E402
    COURT_STATUSES,
    PENALTY_CATEGORIES,
    POSITIVE_KINDS,
    Records,
    Source,
)

AS_OF = dt.date(2025, 7, 1)


def _keys(n: int, rng: np.random.Generator) -> pl.Series:
    """n distinct 64-hex-character person keys (the shape of an HMAC-SHA256)."""
    raw = rng.integers(0, 2**63, size=(n, 4), dtype=np.int64)
    frame = pl.DataFrame({f"k{i}": raw[:, i] for i in range(4)})
    return frame.select(
        pl.concat_str([pl.col(f"k{i}").cast(pl.UInt64).map_batches(
            lambda s: s.cast(pl.String).str.pad_start(16, "0").str.slice(0, 16))
            for i in range(4)]).alias("person_key")
    ).to_series()


def _month_dates(as_of_month: int, months_ago: np.ndarray) -> pl.Series:
    """First day of the month `months_ago` months before the as-of month (a month index)."""
    span = int(months_ago.max()) + 1
    index = as_of_month - np.arange(span)
    year, month = np.divmod(index - 1, 12)
    firsts = pl.DataFrame({"y": year, "m": month + 1}).select(
        pl.date(pl.col("y"), pl.col("m"), 1).cast(pl.Int32)).to_series().to_numpy()
    return pl.Series(firsts[months_ago]).cast(pl.Date)


def _labels(flags: np.ndarray, yes: str, no: str) -> pl.Series:
    """A String column from a boolean array, without a numpy array of Python strings."""
    return pl.select(pl.when(pl.Series(flags)).then(pl.lit(yes)).otherwise(pl.lit(no))).to_series()


AS_OF_DAY = (AS_OF - dt.date(1970, 1, 1)).days


def _days(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype(np.int32)).cast(pl.Date)


def _event_days(rng: np.random.Generator, n: int, max_days: int) -> np.ndarray:
    """Days since 1970 of n events up to `max_days` before the as-of date (a few after it)."""
    return AS_OF_DAY - rng.integers(-30, max_days, size=n)


def _maybe(rng: np.random.Generator, share: float, days: np.ndarray, spread: int) -> pl.Series:
    """A state date (repair, dispute) for a share of rows, some days after the record."""
    hit = rng.random(days.size) < share
    later = _days(days + rng.integers(1, spread, size=days.size))
    return later.set(pl.Series(~hit), None)


def synthetic_records(people: int, seed: int = 7) -> Records:
    rng = np.random.default_rng(seed)
    keys = _keys(people, rng)
    as_of_month = AS_OF.year * 12 + AS_OF.month
    frames: dict[str, pl.DataFrame] = {}

    # Social security: 90% contribute, 36–48 consecutive months ending last month (or the one
    # before, if not yet reported); 5% of months missed.
    n_ss = np.where(rng.random(people) < 0.9, rng.integers(36, 49, size=people), 0)
    person = np.repeat(np.arange(people), n_ss)
    end = np.repeat(rng.integers(0, 2, size=people), n_ss)  # 0: this month too (not yet known)
    offset = np.arange(person.size) - np.repeat(np.cumsum(n_ss) - n_ss, n_ss)
    months_ago = end + offset
    rows = person.size
    missed = rng.random(rows) < 0.05
    frames["social_security"] = pl.DataFrame({
        "person_key": keys.gather(person),
        "month": _month_dates(as_of_month, months_ago),
        "status": _labels(missed, "missed", "paid"),
        "contribution_base": rng.lognormal(8.5, 0.4, rows),
        "arrears": np.where(missed & (rng.random(rows) < 0.5), rng.gamma(2, 800, rows), 0.0),
    })
    del person, end, offset, months_ago, missed

    # Transit: 85% ride, about 30 months each.
    n_tr = np.where(rng.random(people) < 0.85, rng.integers(24, 37, size=people), 0)
    person = np.repeat(np.arange(people), n_tr)
    offset = np.arange(person.size) - np.repeat(np.cumsum(n_tr) - n_tr, n_tr)
    rows = person.size
    frames["transit"] = pl.DataFrame({
        "person_key": keys.gather(person),
        "month": _month_dates(as_of_month, offset),
        "rides": rng.poisson(30, rows),
        "bike_rides": rng.poisson(4, rows),
        "overdue_returns": rng.poisson(0.05, rows),
        "unpaid_fees": np.where(rng.random(rows) < 0.03, rng.gamma(2, 20, rows), 0.0),
        "fare_evasions": rng.poisson(0.01, rows),
        "damage_incidents": rng.poisson(0.002, rows),
    })
    del person, offset

    # Administrative penalties: about 0.4 a person over six years, mostly minor or general.
    n_pn = rng.poisson(0.4, people)
    person = np.repeat(np.arange(people), n_pn)
    rows = person.size
    decided = _event_days(rng, rows, 6 * 365)
    frames["penalty"] = pl.DataFrame({
        "decision_no": pl.Series(np.arange(rows)).cast(pl.String),
        "person_key": keys.gather(person),
        "decided_on": _days(decided),
        "category": pl.Series(np.array(PENALTY_CATEGORIES)[rng.integers(0, 6, rows)]),
        "severity": pl.Series(rng.choice(["minor", "general", "serious"], rows, p=[.6, .35, .05])),
        "fine": rng.gamma(2, 200, rows),
        "window_months": pl.Series([None] * rows, dtype=pl.Int64),
        "repaired_on": _maybe(rng, 0.1, decided, 400),
        "dispute_opened_on": _maybe(rng, 0.02, decided, 200),
    })

    # Court listings: 0.7% of people.
    listed = np.flatnonzero(rng.random(people) < 0.007)
    rows = listed.size
    filed = _event_days(rng, rows, 8 * 365)
    status = np.array(COURT_STATUSES)[rng.choice(3, rows, p=[.6, .3, .1])]
    closed = _days(np.minimum(filed + rng.integers(30, 900, rows), AS_OF_DAY + 30))
    frames["court"] = pl.DataFrame({
        "case_no": pl.Series(np.arange(rows)).cast(pl.String),
        "person_key": keys.gather(listed),
        "filed_on": _days(filed),
        "amount": rng.gamma(2, 20000, rows),
        "status": pl.Series(status),
        "closed_on": closed.set(pl.Series(status == "active"), None),
    })

    # Positive records: about 0.6 a person over six years.
    n_po = rng.poisson(0.6, people)
    person = np.repeat(np.arange(people), n_po)
    rows = person.size
    kind = np.array(POSITIVE_KINDS)[rng.choice(3, rows, p=[.7, .25, .05])]
    frames["positive"] = pl.DataFrame({
        "event_no": pl.Series(np.arange(rows)).cast(pl.String),
        "person_key": keys.gather(person),
        "event_on": _days(_event_days(rng, rows, 6 * 365)),
        "kind": pl.Series(kind),
        "hours": np.where(kind == "volunteering", rng.gamma(2, 4, rows), 0.0),
    })
    return Records(**frames)


def _rss_mb() -> tuple[float, float]:
    """(current, peak since the last reset) resident memory of this process, in MiB."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux), so that a phase's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def floor(records: Records) -> pl.DataFrame:
    """The cost floor: the same records grouped by person, no rules, in the same engine, joined
    the way the builder joins (one sorted row per person, left joins that keep its order)."""
    numeric = {Source.SOCIAL_SECURITY: "contribution_base", Source.TRANSIT: "rides",
               Source.COURT: "amount", Source.PENALTY: "fine", Source.POSITIVE: "hours"}
    aggregates = pl.collect_all([
        records.get(source).lazy().group_by("person_key").agg(
            pl.len().alias(f"n_{source.value}"), pl.col(column).sum().alias(f"s_{source.value}"))
        for source, column in numeric.items()
    ])
    joined = pl.concat([a.select("person_key") for a in aggregates]).unique().sort("person_key")
    for aggregate in aggregates:
        joined = joined.join(aggregate, on="person_key", how="left", maintain_order="left")
    return joined


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best is kept")
    args = parser.parse_args(argv)

    print(machine())
    print(f"polars {pl.__version__} · {pl.thread_pool_size()} threads · as of {AS_OF}")
    times: dict[str, float] = {}
    with timed("generate records", times):
        records = synthetic_records(args.people, args.seed)
    n_records = sum(records.get(s).height for s in Source)
    sizes = " · ".join(f"{s.value} {records.get(s).height:,}" for s in Source)
    print(f"{args.people:,} people · {n_records:,} records ({sizes})")

    held, _ = _rss_mb()
    print(f"records in memory: {held:,.0f} MiB resident")
    best_floor = best_build = float("inf")
    build_peak = 0.0
    for _ in range(args.repeat):
        start = time.perf_counter()
        base = floor(records)
        best_floor = min(best_floor, time.perf_counter() - start)
        n_base = base.height
        del base
        reset = _reset_peak()
        start = time.perf_counter()
        features = build_features(records, AS_OF)
        best_build = min(best_build, time.perf_counter() - start)
        if reset:
            build_peak = max(build_peak, _rss_mb()[1])
        n_features = features.height
        del features
    assert n_features == n_base == records.persons().len()

    print(f"  floor (plain group-by, no rules): {best_floor:.2f} s")
    print(f"  build_features:                   {best_build:.2f} s")
    print(f"records/s  {n_records / best_build:,.0f}")
    print(f"persons/s  {args.people / best_build:,.0f}")
    print(f"ratio to floor  {best_build / best_floor:.2f}x (goal ≤ 3x)")
    if build_peak:
        print(f"peak memory during build  {build_peak:,.0f} MiB "
              f"({build_peak - held:,.0f} MiB above the records it reads)")
    print(f"peak memory of the process  {peak_rss_mb():,.0f} MiB, generation included "
          f"(goal < 6,144 MiB)")


if __name__ == "__main__":
    main()
