"""Benchmark: the whole batch pipeline for a city, on SQLite and on PostgreSQL.

Run: `.venv/bin/python bench/batch.py [--people 1000000] [--backend sqlite|postgresql|both]`.

What it does, per backend:

1. Setup (timed, reported apart from the run): a synthetic city of `--people` people with the
   record sizes of `bench/features.py` (about 65 records a person), given 64-hex-digit person
   keys (the shape of an HMAC, so the shards are balanced) and unique record ids, loaded with
   `service.store.bulk.write_records` into a fresh SQLite file (in a temp dir) or a fresh PostgreSQL
   schema, 200,000 people at a time in key order (so the tables are as a clustered load leaves
   them: a person's records together; a store filled month by month by feeds would scatter
   them, and reading it would cost more I/O), plus everyone in `people`, then ANALYZE (and
   VACUUM on PostgreSQL, as autovacuum would). It runs in a child process, so its memory is
   not counted against the run. The scorecard is the service tests' world, trained on a
   `--train-people` city and registered (`tests.service.world.build_world`).
2. The run (timed): the product's own path, `service.scoring.batch.batch_score` with the local engine
   (`--workers` spawned processes, `--shards` shards): records in the store → features →
   score, points and reasons → written to `scores`. Per stage (summed over workers, and as a
   share of wall time), in total, people/s, and peak memory of this process plus its workers
   (their summed resident set, sampled every 0.2 s; the database server's is not counted),
   and CPU seconds: this process and its workers, and every PostgreSQL process (which counts
   other sessions' work too on a shared server). On a shared machine the wall time depends on
   the load; the worker-seconds per stage and the CPU seconds say where the work goes.
3. The write floor, in the same run: the score rows of `--floor-people` people are written
   twice, in chunks of `--chunk`, each chunk one transaction — by the store's write path
   (`service.store.bulk.write_scores`: idempotent insert-or-ignore) into `scores`, and by a bare
   bulk insert (PostgreSQL: `COPY` straight into an empty table `LIKE scores INCLUDING ALL`;
   SQLite: plain executemany `INSERT` into a copy of `scores` with its indexes). Both start
   from the same row dicts, so both pay the same JSON encoding (`service.store.bulk.score_tuples`).
   Goal: the write path ≤ 1.5× the floor.

Afterwards the PostgreSQL schema is dropped and the SQLite files removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import create_schema, drop_schemas, machine, peak_rss_mb  # noqa: E402

AS_OF = dt.date(2025, 7, 1)  # bench/features.py's as-of date
POSTGRES_URL = os.environ.get("DATABASE_URL_BENCH",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_SECONDS, GOAL_MIB, GOAL_RATIO = 180.0, 6 * 1024, 1.5


# --- setup (in a child process) ----------------------------------------------------------------
def hex_keys(n: int, seed: int) -> pl.Series:
    """n random 64-hex-digit keys (the shape of an HMAC-SHA256, uniform in the shard space),
    sorted."""
    raw = np.frombuffer(np.random.default_rng(seed).bytes(32 * n), dtype="S32")
    return pl.Series("person_key", raw).bin.encode("hex").sort()


def city(keys: pl.Series, seed: int, first_id: int = 0):
    """bench/features.py's synthetic records for these people, with unique record ids.

    Its own keys are decimal digits (unbalanced hex shards), so it gets `keys` instead; its
    rows come grouped by person in the order of `keys`, so sorted keys give rows in key order,
    and the record ids are numbered in that order too."""
    import bench.features as synthetic
    from features.records import Records, Source

    synthetic._keys = lambda n, rng: keys
    records = synthetic.synthetic_records(keys.len(), seed)
    frames = {}
    for number, source in enumerate(Source):
        frame = records.get(source)
        ids = pl.concat_str([pl.lit(f"{number}"), (pl.int_range(pl.len(), dtype=pl.Int64)
                             + first_id).cast(pl.String).str.pad_start(31, "0")])
        frames[source.value] = frame.with_columns(ids.alias("record_id"))
    return Records(**frames)


def setup(url: str, people: int, seed: int, batch: int = 200_000) -> dict[str, float]:
    """Generate the city and load the store, `batch` people at a time (in key order, so the
    store is as a clustered load leaves it); returns seconds and row counts."""
    from features.records import Source
    from service.store.bulk import write_people, write_records
    from service.store.tables import make_engine, migrate

    figures = dict.fromkeys(["generate_s", "records", "write_records_s"], 0.0)
    engine = make_engine(url)
    migrate(engine)
    keys = hex_keys(people, seed)
    for at in range(0, people, batch):
        start = time.perf_counter()
        records = city(keys.slice(at, batch), seed + at, first_id=at * 100)
        figures["generate_s"] += time.perf_counter() - start
        figures["records"] += sum(records.get(s).height for s in Source)
        start = time.perf_counter()
        write_records(engine, records)
        del records
        figures["write_records_s"] += time.perf_counter() - start
    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    for at in range(0, people, 100_000):
        with engine.begin() as connection:
            write_people(connection, keys.slice(at, 100_000).to_list(), now)
    figures["write_people_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with engine.connect() as connection:  # fresh statistics, as autovacuum would leave them
        if engine.dialect.name == "postgresql":
            connection.connection.dbapi_connection.autocommit = True
            connection.exec_driver_sql("VACUUM ANALYZE")
        else:
            connection.exec_driver_sql("ANALYZE")
    figures["analyze_s"] = time.perf_counter() - start
    engine.dispose()
    figures["peak_mib"] = peak_rss_mb()
    return figures


def train(root: Path, people: int) -> tuple[Path, str]:
    from tests.service.world import build_world

    world = build_world(root, people=people, seed=11)
    return world.registry, world.version


# --- memory --------------------------------------------------------------------------------
class TreeMemory:
    """The peak of the summed resident set of this process and all its descendants."""

    def __init__(self, every: float = 0.2) -> None:
        import psutil

        self._me, self._every, self.peak_mib = psutil.Process(), every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for process in [self._me, *self._me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_mib = max(self.peak_mib, total / 2**20)
            self._stop.wait(self._every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    import resource

    return sum(getattr(resource.getrusage(who), field) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime"))


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL process so far, the exited backends included (the
    postmaster's children's times): everyone's sessions, not only this benchmark's."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error, OSError, ValueError):
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


# --- the write floor -----------------------------------------------------------------------
def _floor_table(connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("CREATE TABLE osmanthus_floor (LIKE scores INCLUDING ALL)")
        return
    ddl = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'scores' AND sql IS NOT NULL").scalars()
    for statement in ddl:
        connection.exec_driver_sql(statement.replace("scores", "osmanthus_floor"))


def _bare_insert(connection, rows: list[dict]) -> None:
    from service.store.bulk import SCORE_COLUMNS, score_tuples

    tuples = score_tuples(rows, connection.dialect.name)
    raw = connection.connection.dbapi_connection
    names = ", ".join(SCORE_COLUMNS)
    if connection.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(
                f"COPY osmanthus_floor ({names}) FROM STDIN") as copy:
            for row in tuples:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(SCORE_COLUMNS))
    raw.executemany(f"INSERT INTO osmanthus_floor ({names}) VALUES ({marks})", tuples)


def write_floor(url: str, registry: Path, version: str, people: int, chunk: int) -> dict:
    """Seconds to write the same score rows by the store's path and by a bare bulk insert."""
    from features.build import build_features
    from service.scoring.batch import _scorecard
    from service.scoring.score import score_rows
    from service.store.bulk import write_scores
    from service.store.records import load_records
    from service.store.tables import make_engine

    engine = make_engine(url)
    scorecard = _scorecard(str(registry), version, 1)
    with engine.connect() as connection:
        keys = connection.exec_driver_sql(
            f"SELECT person_key FROM people ORDER BY person_key LIMIT {people}").scalars().all()
    chunks = []
    for at in range(0, len(keys), chunk):  # the rows, made once and not timed
        part = keys[at:at + chunk]
        with engine.connect() as connection:
            records = load_records(connection, first=part[0], last=part[-1], ids=False)
        chunks.append(score_rows(scorecard, version, build_features(records, AS_OF, part),
                                 AS_OF, "floor-check"))
    with engine.begin() as connection:
        _floor_table(connection)
    figures = {"rows": sum(map(len, chunks))}
    for name, write in (("write_path_s", write_scores), ("floor_s", _bare_insert),
                        ("write_again_s", write_scores)):
        start, inserted = time.perf_counter(), 0
        for rows in chunks:
            with engine.begin() as connection:
                inserted += write(connection, rows) or 0
        figures[name] = time.perf_counter() - start
        figures[name.replace("_s", "_inserted")] = inserted
    engine.dispose()
    return figures


# --- one backend -----------------------------------------------------------------------------
def _fresh(backend: str, tmp: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}", None
    return create_schema(POSTGRES_URL, "bench")


def _drop(schema: str | None) -> None:
    if schema is not None:
        drop_schemas(POSTGRES_URL, schema)


def bench_backend(backend: str, args, registry: Path, version: str) -> dict:
    from service.scoring.batch import STAGES, batch_score, release

    tmp = Path(tempfile.mkdtemp(prefix=f"osmanthus-batch-{backend}-"))
    url, schema = _fresh(backend, tmp)
    try:
        print(f"\n{backend}: setup (child process)", flush=True)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            made = pool.submit(setup, url, args.people, args.seed).result()
        print(f"  {made['records']:,.0f} records of {args.people:,} people generated in "
              f"{made['generate_s']:.1f} s; write_records {made['write_records_s']:.1f} s "
              f"({made['records'] / made['write_records_s']:,.0f} records/s); people "
              f"{made['write_people_s']:.1f} s; analyze {made['analyze_s']:.1f} s; setup peak "
              f"{made['peak_mib']:,.0f} MiB", flush=True)

        print(f"{backend}: run ({args.workers} workers, {args.shards} shards, chunks of "
              f"{args.chunk:,})", flush=True)
        cpu, server = cpu_seconds(), postgres_cpu_seconds()
        with TreeMemory() as memory:
            run = batch_score(url, registry, shards=args.shards, engine="local",
                              workers=args.workers, as_of=AS_OF, run_id=f"bench-{backend}",
                              model_version=version, chunk=args.chunk, num_threads=1)
        release()
        cpu, server = cpu_seconds() - cpu, postgres_cpu_seconds() - server
        busy = sum(run.stages.values())
        print(f"  {run.summary()}")
        print(f"  {'stage':<9} {'worker-s':>9} {'share':>6}")
        for stage in STAGES:
            print(f"  {stage:<9} {run.stages[stage]:>9.1f} {run.stages[stage] / busy:>6.0%}")
        other = run.seconds * args.workers - busy
        print(f"  {'other':<9} {other:>9.1f}   (status queries, pool start, idle workers)")
        print(f"  total {run.seconds:.1f} s wall · {run.people / run.seconds:,.0f} people/s · "
              f"peak {memory.peak_mib:,.0f} MiB (this process + workers)", flush=True)
        print(f"  CPU: {cpu:.1f} s this process + workers · {server:.1f} s all PostgreSQL "
              f"processes (everyone's) · load average {os.getloadavg()[0]:.1f}", flush=True)
        assert run.complete and run.scored == run.people, run.summary()

        floor = write_floor(url, registry, version, min(args.floor_people, args.people),
                            args.chunk)
        ratio = floor["write_path_s"] / floor["floor_s"]
        print(f"  write floor, {floor['rows']:,} rows in chunks of {args.chunk:,}: write path "
              f"{floor['write_path_s']:.2f} s ({floor['write_path_inserted']:,} inserted) · "
              f"bare bulk insert {floor['floor_s']:.2f} s · ratio {ratio:.2f}× (goal ≤ "
              f"{GOAL_RATIO}×) · the same rows again {floor['write_again_s']:.2f} s "
              f"({floor['write_again_inserted']:,} inserted)", flush=True)
        return {"setup": made, "seconds": run.seconds, "cpu": cpu, "server_cpu": server, "stages": run.stages,
                "peak_mib": memory.peak_mib, "floor": floor, "ratio": ratio}
    finally:
        _drop(schema)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--train-people", type=int, default=50_000)
    parser.add_argument("--floor-people", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"batch benchmark · {args.people:,} people · {args.backend}")
    print(f"  {machine()}")
    root = Path(tempfile.mkdtemp(prefix="osmanthus-batch-model-"))
    try:
        start = time.perf_counter()
        registry, version = train(root, args.train_people)
        print(f"  scorecard {version} trained on {args.train_people:,} people in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
        results = {b: bench_backend(b, args, registry, version) for b in backends}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\nsummary")
    for backend, r in results.items():
        verdict = ("meets" if r["seconds"] < GOAL_SECONDS and r["peak_mib"] < GOAL_MIB
                   and r["ratio"] <= GOAL_RATIO else "misses")
        print(f"  {backend:<10} {r['seconds']:7.1f} s · {args.people / r['seconds']:>8,.0f} "
              f"people/s · peak {r['peak_mib']:>6,.0f} MiB · write/floor {r['ratio']:.2f}× · "
              f"{verdict} the goals (< {GOAL_SECONDS:.0f} s, < 6 GiB, ≤ {GOAL_RATIO}×)")


if __name__ == "__main__":
    main()
