"""Training on Dask (model/train_dask.py) against the local trainer, on the synthetic city.

    python bench/train_dask.py [--people 200000] [--partitions 8] [--workers 2]
        [--sample-rows 50000]

The city (cached under --workdir) is built in a child process, so this process's peak memory
is the driver's own. Its features as of 2024-01-01 are written as --partitions Parquet files;
the model is validated and calibrated on the 2025-01-01 snapshot. Stages:
- dask: `train_scorecard_dask` on a LocalCluster of --workers processes × 1 thread, rounds by
  5-fold CV on a --sample-rows sample (the default path);
- dask, rounds given: the distributed fit alone, with the rounds the CV chose;
- floor: the local trainer (`train_scorecard`, CV on every row, one thread) — what
  `osmanthus train` does — and, for the fit stage alone, a local `lgb.train` of the same stumps
  and rounds on one and on --workers threads.
Every figure is printed with its ratio to the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import city_records, machine, peak_rss_mb  # noqa: E402

TRAIN_AS_OF, VALID_AS_OF = dt.date(2024, 1, 1), dt.date(2025, 1, 1)


def prepare(people: int, seed: int, workdir: Path, partitions: int) -> Path:
    """City → features of both snapshots → Parquet (train as partitions); cached."""
    import polars as pl

    from features.build import build_features

    out = workdir / f"train-dask-{people}-{seed}-{partitions}"
    if (out / "done").exists():
        return out
    city, records = city_records(workdir, people, seed)
    t0 = time.perf_counter()
    keys = pl.read_parquet(city / "people.parquet")["person_key"]
    parts = out / "train"
    parts.mkdir(parents=True, exist_ok=True)
    train = build_features(records, TRAIN_AS_OF, keys)
    size = -(-train.height // partitions)
    for i, chunk in enumerate(train.iter_slices(size)):
        chunk.write_parquet(parts / f"part-{i:04d}.parquet")
    build_features(records, VALID_AS_OF, keys).write_parquet(out / "valid.parquet")
    pl.read_parquet(city / "outcomes.parquet").write_parquet(out / "outcomes.parquet")
    (out / "done").write_text("")
    print(f"  features of both snapshots built in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-rows", type=int, default=50_000)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "osmanthus-bench"))
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    if args.prepare_only:
        prepare(args.people, args.seed, workdir, args.partitions)
        return 0
    print(machine(), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--prepare-only", "--people", str(args.people),
                    "--seed", str(args.seed), "--partitions", str(args.partitions),
                    "--workdir", str(workdir)], check=True)
    data = workdir / f"train-dask-{args.people}-{args.seed}-{args.partitions}"
    print(f"  data ready in {time.perf_counter() - t0:.1f} s (child process)", flush=True)

    import lightgbm as lgb
    import numpy as np
    import polars as pl
    from sklearn.metrics import roc_auc_score

    from features.catalog import SCORED_FEATURES, directions
    from model.evaluate import snapshot
    from model.scorecard import encode
    from model.train import train_scorecard
    from model.train_dask import dask_client, labelled, read_partitioned, train_scorecard_dask

    features, dirs = list(SCORED_FEATURES), directions()
    outcomes = pl.read_parquet(data / "outcomes.parquet")
    valid, vy, _ = snapshot(pl.read_parquet(data / "valid.parquet"), outcomes, VALID_AS_OF)
    fig: dict[str, dict] = {}
    rss_before = rss_mb()

    def auc(card) -> float:
        return float(roc_auc_score(vy, card.score_frame(valid).probability))

    t0 = time.perf_counter()
    with dask_client(None, workers=args.workers, threads_per_worker=1) as client:
        client.wait_for_workers(args.workers)
        client.run(lambda: __import__("lightgbm.dask"))  # warm the workers, as a cluster is
        fig["cluster start"] = {"seconds": time.perf_counter() - t0}
        logging.getLogger("distributed").setLevel(logging.ERROR)

        def frame():
            return labelled(read_partitioned(data / "train"),
                            read_partitioned(data / "outcomes.parquet"), TRAIN_AS_OF)

        t0 = time.perf_counter()
        card, report = train_scorecard_dask(client, frame(), "defaulted", valid=valid,
                                            valid_target=vy, features=features,
                                            directions=dirs, sample_rows=args.sample_rows)
        fig["dask (rounds by CV on a sample)"] = {
            "seconds": time.perf_counter() - t0, "rounds": report["rounds"], "auc": auc(card),
            "rows": report["n_train"], "partitions": report["engine"]["partitions"],
            "stages": report["stage_seconds"]}
        rounds = report["rounds"]
        t0 = time.perf_counter()
        given, given_report = train_scorecard_dask(client, frame(), "defaulted", valid=valid,
                                        valid_target=vy, features=features, directions=dirs,
                                        rounds=rounds)
        fig["dask, rounds given (distributed fit)"] = {
            "seconds": time.perf_counter() - t0, "rounds": rounds, "auc": auc(given),
            "stages": given_report["stage_seconds"]}
        workers_rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
    driver_peak_dask = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_dask = rss_mb()

    train, y, _ = snapshot(pl.read_parquet(str(data / "train" / "*.parquet")), outcomes,
                           TRAIN_AS_OF)
    t0 = time.perf_counter()
    local, local_report = train_scorecard(train, y, valid, vy, features=features,
                                          directions=dirs, num_threads=1)
    fig["floor: local trainer (CV on every row, 1 thread)"] = {
        "seconds": time.perf_counter() - t0, "rounds": local_report["rounds"], "auc": auc(local)}
    params = {k: v for k, v in card.info["params"].items()}
    x = encode(train, features, {})
    for threads in sorted({1, args.workers}):
        t0 = time.perf_counter()
        lgb.train({**params, "num_threads": threads},
                  lgb.Dataset(x, label=y, params={"verbosity": -1}), num_boost_round=rounds)
        fig[f"floor: local fit of the same stumps, {threads} thread(s)"] = {
            "seconds": time.perf_counter() - t0, "rounds": rounds}

    floor = fig["floor: local trainer (CV on every row, 1 thread)"]
    fit_floor = fig["floor: local fit of the same stumps, 1 thread(s)"]
    print(f"\n{args.people:,} people; train {len(y):,} rows (bad {np.mean(y):.3f}) in "
          f"{args.partitions} partitions; validation {len(vy):,} rows; {args.workers} workers "
          "× 1 thread\n")
    print("| stage | seconds | × floor | rounds | validation AUC | AUC − floor |")
    print("|---|---|---|---|---|---|")
    for name, row in fig.items():
        ref = fit_floor if "given" in name or "fit of" in name else floor
        ratio = f"{row['seconds'] / ref['seconds']:.2f}" if "cluster" not in name else "—"
        a = row.get("auc")
        print(f"| {name} | {row['seconds']:.1f} | {ratio} | {row.get('rounds', '—')} | "
              + (f"{a:.4f} | {a - floor['auc']:+.4f} |" if a is not None else "— | — |"))
    print("\n(× floor: against the local trainer; the distributed fit and the local fits "
          "against the local fit of the same stumps on one thread)\n")
    print("| Dask stage | " + " | ".join(fig["dask (rounds by CV on a sample)"]["stages"]) + " |")
    print("|---" * (1 + len(fig["dask (rounds by CV on a sample)"]["stages"])) + "|")
    for name in ("dask (rounds by CV on a sample)", "dask, rounds given (distributed fit)"):
        stages = fig[name]["stages"]
        print(f"| {name} | " + " | ".join(f"{stages.get(k, 0):.1f}" for k in
                                         fig["dask (rounds by CV on a sample)"]["stages"]) + " |")
    workers = ", ".join(f"{v / 2**20:.0f}" for v in workers_rss.values())
    print(f"\ndriver (this process, without the child that built the data): RSS "
          f"{rss_before:.0f} MiB before the Dask stages, {rss_dask:.0f} MiB after, own peak "
          f"{driver_peak_dask:.0f} MiB; Dask workers {workers} MiB after the fits; own peak "
          f"after the local trainer {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MiB; peak_rss_mb() (children included) {peak_rss_mb():.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
