"""Online re-score of one person after a dispute: records → features → score → points → stored
→ cache invalidated, in process, on SQLite and on PostgreSQL.

Builds a small world (a synthetic city of `--people` residents, its feeds validated, a scorecard
trained quickly and promoted: `tests/service/world.py`), stores everyone's records
(`service.store.bulk.write_records`) in a new SQLite file and, when reachable, in a new PostgreSQL
schema (`DATABASE_URL_TEST`, else postgresql+psycopg://postgres@127.0.0.1:5432/test; the
schema is dropped afterwards), creates the app (`service.app.create_app`) and times
`service.scoring.score.rescore` for `--rescores` people: median, p90, p99. Then the same people
stage by stage (load records, features, score + explain, store, cache), and the floor in the
same run: a bare SELECT of one person's rows from one records table plus a bare INSERT of one
score row, each in its own transaction, as the re-score does them.

Also the batch side of the same code: `service.scoring.score.score_rows` on a `--batch`-person
features table (the world's people, tiled), people/s in wall and CPU time, beside the per-row
path it replaced (`explain(...).to_dict()` per person, on a sample) and the floor: building
just the three per-person dicts every stored row must hold (points, values, features) from
an already-scored matrix. `json.dumps` of the rows, what the store then does, is shown too.

    .venv/bin/python bench/rescore.py [--people 3000] [--rescores 300] [--batch 10000]
                                      [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import create_schema, drop_schemas, machine, peak_rss_mb  # noqa: E402

AS_OF = dt.date(2026, 1, 1)
POSTGRES_URL = os.environ.get("DATABASE_URL_TEST",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def database(backend: str, root: Path):
    """A URL to an empty database: a new SQLite file, or a new PostgreSQL schema (dropped
    on the way out); None when PostgreSQL cannot be reached."""
    if backend == "sqlite":
        yield f"sqlite:///{root / f'rescore-{uuid.uuid4().hex[:6]}.db'}"
        return
    try:
        url, name = create_schema(POSTGRES_URL, "bench_rescore")
    except Exception as error:  # noqa: BLE001 - any failure to reach the server
        print(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(error).__name__}: skipped")
        yield None
        return
    try:
        yield url
    finally:
        drop_schemas(POSTGRES_URL, name)


def ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99))}


def line(label: str, seconds, floor: float | None = None) -> str:
    s = ms(seconds)
    ratio = f"   {s['median'] / floor:5.1f}× floor" if floor else ""
    return (f"  {label:34s} median {s['median']:7.3f} ms   p90 {s['p90']:7.3f}   "
            f"p99 {s['p99']:7.3f}{ratio}")


def floor_once(engine, key: str, row: dict) -> tuple[float, float]:
    """A bare SELECT of one person's social-security rows, and a bare INSERT of one score row
    (each in its own transaction, as the re-score has them)."""
    from sqlalchemy import insert, select

    from features.records import Source
    from service.store.tables import RECORD_TABLES, scores

    table = RECORD_TABLES[Source.SOCIAL_SECURITY]
    start = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(select(table).where(table.c.person_key == key)).all()
    selected = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(scores), [row])
    return selected - start, time.perf_counter() - selected


def staged_once(app, key: str) -> dict[str, float]:
    """`rescore`'s stages one by one, with the functions it calls."""
    from service.scoring import score as scoring

    timings: dict[str, float] = {}
    scoring.rescore(app, key, timings=timings)
    return timings


def run_backend(backend: str, url: str, world, keys: list[str], warmup: int) -> dict:
    from service.app import create_app
    from service.base.config import Config
    from service.scoring.score import rescore
    from service.store.bulk import write_records

    app = create_app(Config(env="test", database_url=url, registry_dir=world.registry,
                            as_of=AS_OF))
    engine = app.extensions["osmanthus.engine"]
    started = time.perf_counter()
    written = write_records(engine, world.records)
    print(f"\n{backend}: {written:,} records stored in {time.perf_counter() - started:.1f} s")
    for key in keys[:warmup]:
        rescore(app, key)
    totals, stages, floors = [], {}, {"select": [], "insert": []}
    sample_row = dict(rescore(app, keys[0]), run_id=None)
    cpu = []
    for i, key in enumerate(keys):
        start, start_cpu = time.perf_counter(), time.process_time()
        rescore(app, key)
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        timings = staged_once(app, key)
        for stage, seconds in timings.items():
            stages.setdefault(stage, []).append(seconds)
        select, inserted = floor_once(engine, key, {**sample_row, "person_key": keys[i]})
        floors["select"].append(select)
        floors["insert"].append(inserted)
    floor = float(np.median(np.array(floors["select"]) + np.array(floors["insert"]))) * 1000
    print(f"rescore of one person, {len(keys)} people (in process, cache "
          f"{type(app.extensions['osmanthus.cache']).__name__}):")
    print(line("rescore (total)", totals, floor))
    print(line("rescore, this process's CPU time", cpu))
    for stage, seconds in stages.items():
        print(line(f"  stage: {stage}", seconds))
    print(line("floor: bare SELECT (one table)", floors["select"]))
    print(line("floor: bare INSERT (one score)", floors["insert"]))
    print(f"  floor (SELECT + INSERT): median {floor:.3f} ms")
    engine.dispose()
    return {"total": ms(totals), "cpu": ms(cpu), "stages": {k: ms(v) for k, v in stages.items()},
            "floor": floor, "select": ms(floors["select"]), "insert": ms(floors["insert"])}


def best_of(repeats: int, function) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` runs: the machine is shared."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def run_batch(world, people: int) -> None:
    import json

    import polars as pl

    from features.build import build_features
    from features.catalog import FEATURE_NAMES
    from model.explain import explain, gc_paused
    from model.registry import Registry
    from service.scoring.score import score_rows

    scorecard = Registry(world.registry).load_champion().scorecard
    city = build_features(world.records, AS_OF, world.people()["person_key"])
    table = pl.concat([city] * (people // city.height + 1)).head(people)
    names = scorecard.feature_names

    def per_row(sample: pl.DataFrame) -> None:
        for row in sample.iter_rows(named=True):
            explain(scorecard, row, row.get("records_counted")).to_dict()

    def floor() -> None:
        with gc_paused():
            points = scorecard.score_frame(table).points.tolist()
            values = table.select(names).to_numpy().tolist()
            features = table.select(FEATURE_NAMES).to_numpy().tolist()
            [(dict(zip(names, p, strict=False)), dict(zip(names, v, strict=False)),
              dict(zip(FEATURE_NAMES, f, strict=False)))
             for p, v, f in zip(points, values, features, strict=False)]

    rows = score_rows(scorecard, "v", table, AS_OF, "run")
    sample = table.head(1_000)
    figures = {
        "score_rows (vectorised)": best_of(5, lambda: score_rows(scorecard, "v", table, AS_OF,
                                                                 "run")),
        "floor: 3 dicts per person": best_of(5, floor),
        "per-row explain (1,000, scaled)": tuple(
            x * people / sample.height for x in best_of(2, lambda: per_row(sample))),
        "json.dumps of the stored rows": best_of(2, lambda: [
            (json.dumps(r["points"]), json.dumps(r["reasons"], ensure_ascii=False))
            for r in rows]),
    }
    floor_cpu = figures["floor: 3 dicts per person"][1]
    print(f"\nscore_rows on a {people:,}-person features table (best of runs; wall and CPU):")
    for label, (wall, cpu) in figures.items():
        print(f"  {label:34s} {people / wall:>10,.0f} people/s wall  "
              f"{people / cpu:>10,.0f} people/s CPU   {cpu / floor_cpu:5.2f}× floor (CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=3_000)
    parser.add_argument("--rescores", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=10_000, help="people for score_rows")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    from tests.service.world import build_world

    root = Path(tempfile.mkdtemp(prefix="osmanthus-rescore-"))
    started = time.perf_counter()
    world = build_world(root / "world", people=args.people, seed=args.seed)
    print(f"world: {args.people:,} people, scorecard {world.version} trained in "
          f"{time.perf_counter() - started:.1f} s")
    if args.batch:
        run_batch(world, args.batch)
    everyone = world.people()["person_key"].to_list()
    rng = np.random.default_rng(args.seed)
    keys = [everyone[i] for i in rng.choice(len(everyone), args.rescores + args.warmup,
                                            replace=False)]
    for backend in args.backends.split(","):
        with database(backend, root) as url:
            if url is not None:
                run_backend(backend, url, world, keys, args.warmup)
    print(f"\npeak memory: {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
