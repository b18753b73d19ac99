"""Score the whole city in shards, in a local process pool or on a Dask cluster.

Sharding. Person keys are HMAC-SHA256 hex digests, so their first eight hex digits are a
uniform 32-bit hash. Shard `i` of `n` holds the keys whose prefix `p = int(key[:8], 16)`
satisfies `floor(p * n / 2**32) == i`, i.e. the keys in the string range
`[boundary(i), boundary(i + 1))` (the first shard is open below, the last open above, so any
string lands in exactly one shard). A shard is therefore an index range scan on
`people.person_key` and on each `records_<source>.person_key`, and the same person always
lands in the same shard for a given `n`. The shard's people are everyone in `people` plus
anyone with a record of any source.

A shard is a pure job (`ShardJob`: database URL, registry directory, model version, shard,
number of shards, as-of date, run id). `run_shard` lists the shard's people who have no row
for the run yet, and for each chunk of them loads their records, builds features, scores,
explains and writes the rows in one transaction. The same function runs in this process, in
a spawned local process pool, or on Dask workers.

Idempotency. Every row carries the run id and the model version; `scores` has
UNIQUE(run_id, person_key), and rows are written with insert-or-ignore, so re-running a
shard (a Dask retry, a resumed run, two attempts racing after a network partition) never
duplicates a row and never changes one already written.

Progress and resume. There is no bookkeeping table: the scores table is the record of the
run. A shard is done when every one of its people has a row for the run id; a run called
again with the same `--run-id` submits every shard, each lists its people still missing (a
finished one finds none and returns at once), so only they are scored (a kill costs at most
one uncommitted chunk). A resumed run keeps the model version and as-of date of its existing
rows, so a run never mixes two models or two dates. `BatchRun.missing` is what the shards
listed and did not write (a person added while the run goes is left to the next run).

Speed (bench/batch.py). A chunk is a key range: its people are consecutive in key order, so
its records are read with one index range scan per source (`store.records.load_records`,
`COPY … TO STDOUT` on PostgreSQL) rather than an `IN (…)` list, and its rows are written with
`store.bulk.write_scores` (`COPY` on PostgreSQL, an executemany of tuples on SQLite). Each worker
lists its own shard's people (`_shard_keys`), so no listing runs while the workers wait.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, and_, select, true

from service.store.tables import RECORD_TABLES, people, scores

log = logging.getLogger(__name__)

CHUNK = 10_000  # people per transaction inside a shard (per-chunk costs fade by 10,000)
STAGES = ("list", "load", "features", "score", "write")  # where a shard's time goes
SPACE = 1 << 32  # the hash space: the first 8 hex digits of a person key
RUN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
ENGINES = ("local", "dask")


class BatchError(RuntimeError):
    """A batch run cannot start or did not finish (the message says how to resume)."""


# --- shards ------------------------------------------------------------------------------------
def boundary(shard: int, shards: int) -> str | None:
    """The smallest key prefix of `shard` (None: the shard is open on that side)."""
    if shard <= 0 or shard >= shards:
        return None
    return format(-(-shard * SPACE // shards), "08x")  # ceil(shard * 2**32 / shards)


def shard_of(person_key: str, shards: int) -> int:
    """The shard of a person key (the same partition as `_in_shard`, for hex keys)."""
    return int(person_key[:8], 16) * shards // SPACE


def _in_shard(column, shard: int, shards: int):
    low, high = boundary(shard, shards), boundary(shard + 1, shards)
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    return and_(true(), *conditions)


def _shard_keys(engine: Engine, shard: int, shards: int, run_id: str) -> tuple[pl.Series,
                                                                             pl.Series]:
    """(everyone of the shard, those without a row for `run_id`), both sorted by key (byte
    order: person keys are fixed-length lower-case hex, ordered alike by every collation, so a
    run of consecutive keys here is a key range in the database too).

    Everyone is the people table plus anyone with a record: one `SELECT DISTINCT person_key`
    per table over the shard's key range (an index-only range scan, already in key order),
    merged here, rather than one SQL UNION, which hashes every record's key (tens of millions
    in a city; PostgreSQL spills it to disk at the default work_mem): measured 8× faster."""
    tables = [people, *RECORD_TABLES.values()]
    with engine.connect() as connection:
        found = [connection.execute(select(t.c.person_key).distinct()
                                    .where(_in_shard(t.c.person_key, shard, shards)))
                 .scalars().all() for t in tables]
        scored = connection.execute(
            select(scores.c.person_key).where(scores.c.run_id == run_id,
                                              _in_shard(scores.c.person_key, shard, shards))
        ).scalars().all()
    everyone = pl.Series("person_key", [k for keys in found for k in keys], dtype=pl.String)
    everyone = everyone.unique().sort()
    todo = everyone.filter(~everyone.is_in(pl.Series(scored, dtype=pl.String).implode()))
    return everyone, todo


@dataclass(frozen=True)
class ShardStatus:
    shard: int
    people: int
    missing: int

    @property
    def done(self) -> bool:
        return self.missing == 0


def shard_status(engine: Engine, shard: int, shards: int, run_id: str) -> ShardStatus:
    everyone, todo = _shard_keys(engine, shard, shards, run_id)
    return ShardStatus(shard, everyone.len(), todo.len())


# --- the job -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardJob:
    """Everything a shard needs; small and picklable, so it travels to any worker."""

    database_url: str
    registry_dir: str  # every worker must see the registry at this path (a shared volume)
    model_version: str
    shard: int
    shards: int
    as_of: dt.date
    run_id: str
    chunk: int = CHUNK
    num_threads: int = 1
    redis_url: str | None = None  # drop the scored people's cached pages, when set


@dataclass(frozen=True)
class ShardResult:
    shard: int
    scored: int  # rows this call wrote (0 for a shard that was already done)
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (STAGES)
    people: int = 0  # everyone in the shard
    todo: int = 0  # of them, without a row for the run when the shard started


# One engine per database and one verified model per version, per worker process.
_ENGINES: dict[str, Engine] = {}
_MODELS: dict[tuple[str, str, int], object] = {}


def _engine(url: str) -> Engine:
    from service.store.tables import make_engine

    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def _scorecard(registry_dir: str, version: str, num_threads: int):
    from model.registry import Registry

    key = (str(Path(registry_dir).resolve()), version, num_threads)
    if key not in _MODELS:
        scorecard = Registry(registry_dir).load(version).scorecard  # checksums verified
        scorecard.num_threads = num_threads
        _MODELS[key] = scorecard
    return _MODELS[key]


def release() -> None:
    """Close this process's cached engines and forget its models."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _MODELS.clear()


def run_shard(job: ShardJob) -> ShardResult:
    """Score the shard's people who have no row for the run yet; safe to repeat."""
    from features.build import build_features
    from service.scoring.score import score_rows
    from service.store.bulk import write_people, write_scores
    from service.store.records import load_records

    started = time.monotonic()
    engine = _engine(job.database_url)
    scorecard = _scorecard(job.registry_dir, job.model_version, job.num_threads)
    cache = None
    if job.redis_url:
        from service.base.cache import make_cache

        cache = make_cache(job.redis_url)
    from service.base.progress import Stages

    stages = Stages(dict.fromkeys(STAGES, 0.0))
    tick = stages.done
    everyone, todo = _shard_keys(engine, job.shard, job.shards, job.run_id)
    todo, written = todo.to_list(), 0
    tick("list")
    for start in range(0, len(todo), job.chunk):
        keys = todo[start:start + job.chunk]  # in the database's key order: a key range
        with engine.connect() as connection:
            records = load_records(connection, first=keys[0], last=keys[-1], ids=False)
        tick("load")  # (the range may hold people already scored: features keep only `keys`)
        table = build_features(records, job.as_of, keys)
        del records
        tick("features")
        rows = score_rows(scorecard, job.model_version, table, job.as_of, job.run_id)
        tick("score")
        with engine.begin() as connection:  # a chunk is written whole or not at all
            if connection.dialect.name == "postgresql":
                # A crash may lose the last chunks' commits: a resumed run scores them again.
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            write_people(connection, keys, dt.datetime.now(dt.UTC))
            written += write_scores(connection, rows)
        if cache is not None:
            from service.base.cache import page_key

            cache.delete(*[page_key(job.model_version, key, job.as_of) for key in keys])
        tick("write")
    return ShardResult(job.shard, written, round(time.monotonic() - started, 3),
                       {k: round(v, 3) for k, v in stages.timings.items()}, everyone.len(), len(todo))


# --- a run ---------------------------------------------------------------------------------------
@dataclass
class BatchRun:
    run_id: str
    as_of: dt.date
    model_version: str
    engine: str
    shards: int
    people: int  # everyone in the run's shards
    scored: int  # rows written by this call
    already_done: list[int] = field(default_factory=list)  # shards found finished at the start
    seconds: float = 0.0
    missing: int = 0  # people the shards listed and did not score (0: complete)
    stages: dict[str, float] = field(default_factory=dict)  # seconds summed over shards

    @property
    def per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.missing == 0

    def summary(self) -> str:
        done = f", {len(self.already_done)} already done" if self.already_done else ""
        return (f"scored {self.scored:,} people ({self.people:,} in the run) in {self.shards} "
                f"shards{done} on {self.engine} in {self.seconds:.1f} s, "
                f"{self.per_second:,.0f} people/s; run {self.run_id}, model "
                f"{self.model_version}, as of {self.as_of}")


def _recorded(engine: Engine, run_id: str) -> tuple[str, dt.date] | None:
    """The model version and as-of date of a run's existing rows (None: a new run)."""
    with engine.connect() as connection:
        found = connection.execute(
            select(scores.c.model_version, scores.c.as_of).where(scores.c.run_id == run_id)
            .group_by(scores.c.model_version, scores.c.as_of).limit(2)).all()
    if len(found) > 1:
        raise BatchError(f"run {run_id} already mixes models or dates: {found}")
    return (found[0][0], found[0][1]) if found else None


def _champion(registry_dir: Path) -> str:
    from service.scoring.serving import load_serving

    serving = load_serving(registry_dir)
    if not serving.ready:
        raise BatchError(f"no model to score with: {serving.problem}")
    return serving.version


def plan(engine: Engine, registry_dir: Path, *, run_id: str | None, as_of: dt.date | None,
         model_version: str | None = None,
         default_as_of: dt.date | None = None) -> tuple[str, dt.date, str]:
    """The run's id, as-of date and model version: a resumed run keeps its own; a new one
    takes `as_of` (else `default_as_of`) and `model_version` (else the champion)."""
    from service.scoring.score import new_run_id

    run_id = run_id or new_run_id()
    if not RUN_ID.fullmatch(run_id):
        raise BatchError("a run id is 1 to 64 letters, digits, '_', '.', ':' or '-'")
    recorded = _recorded(engine, run_id)
    if recorded is not None:
        version, date = recorded
        if as_of is not None and as_of != date:
            raise BatchError(f"run {run_id} is scored as of {date}, not {as_of}")
        if model_version is not None and model_version != version:
            raise BatchError(f"run {run_id} is scored with {version}, not {model_version}")
        return run_id, date, version
    as_of = as_of or default_as_of
    if as_of is None:
        raise BatchError("a new run needs an as-of date")
    return run_id, as_of, model_version or _champion(registry_dir)


def batch_score(database_url: str, registry_dir: Path | str, *, shards: int,
                engine: str = "local", scheduler: str | None = None,
                as_of: dt.date | None = None, run_id: str | None = None,
                workers: int | None = None, model_version: str | None = None,
                default_as_of: dt.date | None = None,
                chunk: int = CHUNK, num_threads: int = 1, redis_url: str | None = None,
                progress: bool = False) -> BatchRun:
    """Score everyone, shard by shard, with `engine` ("local": a spawned process pool, or this
    process when `workers` is 1; "dask": the cluster at `scheduler`, or a LocalCluster of
    `workers` processes on 127.0.0.1). Calling it again with the same `run_id` resumes."""
    from service.store.tables import make_engine

    if shards < 1:
        raise BatchError("--shards must be at least 1")
    if engine not in ENGINES:
        raise BatchError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    if scheduler and engine != "dask":
        raise BatchError("--scheduler is for --engine dask")
    started = time.monotonic()
    store = make_engine(database_url)
    try:
        run_id, as_of, version = plan(store, Path(registry_dir), run_id=run_id, as_of=as_of,
                                      model_version=model_version,
                                      default_as_of=default_as_of)
        base = ShardJob(database_url, str(registry_dir), version, 0, shards, as_of, run_id,
                        chunk, num_threads, redis_url)
        # Every shard is submitted: each lists its own people in its worker, in parallel (a
        # finished shard finds nothing to do and returns at once), instead of this process
        # listing every shard before and after the run, while the workers wait.
        jobs = [replace(base, shard=shard) for shard in range(shards)]
        log.info("run %s: %d shards", run_id, shards)
        runner = _run_dask if engine == "dask" else _run_local
        try:
            results = runner(jobs, workers=workers, scheduler=scheduler, progress=progress)
        except Exception as error:  # a shard failed for good, a pool broke, a cluster is gone
            raise BatchError(f"run {run_id} stopped ({type(error).__name__}: {error}); what "
                             f"was written stays: resume with --run-id {run_id}") from error
    finally:
        store.dispose()
    results.sort(key=lambda r: r.shard)
    run = BatchRun(run_id, as_of, version, engine, shards, sum(r.people for r in results),
                   sum(r.scored for r in results), [r.shard for r in results if not r.todo],
                   round(time.monotonic() - started, 3),
                   sum(r.todo - r.scored for r in results),
                   {k: round(sum(r.stages.get(k, 0.0) for r in results), 3) for k in STAGES})
    log.debug("%s", run.summary())
    return run


def _bar(total: int, progress: bool):
    from service.base.progress import progress_bar

    return progress_bar(total, "shards", " shard", enabled=progress)


def _run_local(jobs: Sequence[ShardJob], *, workers: int | None, progress: bool,
               **_) -> list[ShardResult]:
    workers = max(1, min(workers or multiprocessing.cpu_count(), len(jobs) or 1))
    results: list[ShardResult] = []
    with _bar(len(jobs), progress) as bar:
        if workers == 1:
            try:
                for job in jobs:
                    results.append(run_shard(job))
                    bar.update()
            finally:
                release()
            return results
        # spawn, not fork: a forked LightGBM (OpenMP) can hang once the parent has trained
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_shard, job) for job in jobs]
            for future in as_completed(futures):
                results.append(future.result())  # a failed shard stops the run: resume it
                bar.update()
    return results


def _run_dask(jobs: Sequence[ShardJob], *, workers: int | None, scheduler: str | None,
              progress: bool) -> list[ShardResult]:
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    if not jobs:
        return []
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        scheduler = cluster.scheduler_address
    try:
        with Client(scheduler) as client, _bar(len(jobs), progress) as bar:
            token = uuid.uuid4().hex[:8]  # a fresh key per call: a resumed run is a new task
            keys = [f"osmanthus-shard-{job.run_id}-{job.shard}-{token}" for job in jobs]
            # retries: a shard that raised runs again; a shard whose worker died is
            # rescheduled by the scheduler (up to distributed.scheduler.allowed-failures)
            futures = client.map(run_shard, jobs, key=keys, retries=2, pure=False)
            results = []
            for future in dask_completed(futures):
                results.append(future.result())
                bar.update()
            return results
    finally:
        if cluster is not None:
            cluster.close()


def shards_of(person_keys: Iterable[str], shards: int) -> dict[int, list[str]]:
    """Person keys grouped by shard (for tests and reports)."""
    grouped: dict[int, list[str]] = {}
    for key in person_keys:
        grouped.setdefault(shard_of(key, shards), []).append(key)
    return grouped

