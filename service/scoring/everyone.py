"""Re-scoring the store outside a request: behind `osmanthus rescore`, `osmanthus demo` and
`POST /v1/admin/rescore-all`. Partners and their keys are in `service.rights.partners`."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from service.base.config import Config
from service.scoring.rescore import Run, rescore_many
from service.store.tables import people

log = logging.getLogger(__name__)

PARALLEL_FROM = 2_000  # fewer people than this are scored in one process


def rescore_store(config: Config, engine: Engine, person_keys: list[str] | None, *,
                  workers: int = 1, as_of: dt.date | None = None,
                  progress: bool = False, run_id: str | None = None,
                  model_version: str | None = None) -> Run:
    """Score these people (None: everyone) with the champion, as of `as_of` (default: the
    service's today). Pages cached in Redis are dropped; an in-process cache lives in the
    serving processes, where keys carry the model version and expire.

    Everyone is a batch run (`service.scoring.batch`: sharded, idempotent, in `workers` local
    processes once the store holds more than `PARALLEL_FROM` people); a list of people (an
    ingest's changed people, a few named on the command line) is scored in this process.
    No champion to score with: `LookupError` for a list, `batch.BatchError` for everyone."""
    from service.base.cache import make_cache
    from service.scoring.score import today
    from service.scoring.serving import load_serving

    as_of = as_of or today(config)
    if person_keys is None:  # the batch verifies and loads the champion itself, per worker
        return _batch(config, engine, workers, as_of, progress, run_id, model_version)
    serving = load_serving(config.registry_dir, config.num_threads)
    if not serving.ready:
        raise LookupError(f"no model to score with: {serving.problem}")
    cache = make_cache(config.redis_url) if config.redis_url else None
    return rescore_many(engine, serving, person_keys, as_of, cache=cache)


def _batch(config: Config, engine: Engine, workers: int, as_of: dt.date,
           progress: bool, run_id: str | None = None, model_version: str | None = None) -> Run:
    from service.scoring.batch import batch_score

    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(people)).scalar_one()
    workers = workers if count > PARALLEL_FROM else 1
    run = batch_score(config.database_url, config.registry_dir, shards=4 * workers,
                      workers=workers, as_of=as_of, num_threads=config.num_threads,
                      redis_url=config.redis_url, progress=progress, run_id=run_id,
                      model_version=model_version)
    return Run(run.run_id, run.people, run.scored, run.as_of, run.model_version, run.seconds)


@dataclass(frozen=True)
class Started:
    """A batch run over everyone, planned and started in a process of its own."""

    run_id: str
    as_of: dt.date
    model_version: str
    people: int  # everyone in the store when it started (the people table)


def start_everyone(config: Config, engine: Engine, as_of: dt.date | None = None) -> Started:
    """Plan a batch run over everyone (its id, date and champion; `batch.BatchError` without
    a champion) and start it in a spawned process: `POST /v1/admin/rescore-all` answers at
    once instead of scoring a city inside a request that a proxy would time out. The run is
    the ordinary sharded, idempotent batch, so if the server stops, `osmanthus batch
    --run-id` resumes it; `progress` reads how far it got from the scores table itself."""
    from service.scoring.batch import plan
    from service.scoring.score import today

    run_id, as_of, version = plan(engine, config.registry_dir, run_id=None,
                                  as_of=as_of or today(config))
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(people)).scalar_one()
    multiprocessing.active_children()  # reaps runs started earlier that have ended
    # spawn, not fork: a forked LightGBM (OpenMP) can hang; not a daemon: the run may use a
    # process pool of its own, and a server stopping waits for it rather than killing it
    process = multiprocessing.get_context("spawn").Process(
        target=_run_everyone, args=(config, run_id, as_of, version),
        name=f"osmanthus-rescore-{run_id}")
    process.start()
    log.info("run %s: re-scoring everyone as of %s with %s (process %s)", run_id, as_of,
             version, process.pid)
    return Started(run_id, as_of, version, count)


def _run_everyone(config: Config, run_id: str, as_of: dt.date, version: str) -> None:
    from service.scoring.batch import BatchError
    from service.store.tables import make_engine

    engine = make_engine(config.database_url)
    try:
        run = rescore_store(config, engine, None, workers=max(1, (os.cpu_count() or 2) // 2),
                            as_of=as_of, run_id=run_id, model_version=version)
        log.info("run %s: %d of %d people scored", run_id, run.scored, run.people)
    except BatchError:
        log.exception("run %s stopped; resume it with osmanthus batch --run-id %s", run_id,
                      run_id)
    finally:
        engine.dispose()


def progress(engine: Engine, run_id: str) -> dict:
    """How far a run over everyone got, from the scores table (the batch keeps no other
    record): everyone it covers, those scored, and done when nobody is missing."""
    from service.scoring.batch import shard_status

    status = shard_status(engine, 0, 1, run_id)
    return {"run_id": run_id, "people": status.people,
            "scored": status.people - status.missing, "done": status.done}
