"""Re-scoring the store outside a request: behind `osmanthus rescore`, `osmanthus demo` and
`POST /v1/admin/rescore-all`. Partners and their keys are in `service.rights.partners`."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from service.base.config import Config
from service.scoring.rescore import Run, rescore_many
from service.store.tables import people

PARALLEL_FROM = 2_000  # fewer people than this are scored in one process


def rescore_store(config: Config, engine: Engine, person_keys: list[str] | None, *,
                  workers: int = 1, as_of: dt.date | None = None,
                  progress: bool = False) -> Run:
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
        return _batch(config, engine, workers, as_of, progress)
    serving = load_serving(config.registry_dir, config.num_threads)
    if not serving.ready:
        raise LookupError(f"no model to score with: {serving.problem}")
    cache = make_cache(config.redis_url) if config.redis_url else None
    return rescore_many(engine, serving, person_keys, as_of, cache=cache)


def _batch(config: Config, engine: Engine, workers: int, as_of: dt.date,
           progress: bool) -> Run:
    from service.scoring.batch import batch_score

    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(people)).scalar_one()
    workers = workers if count > PARALLEL_FROM else 1
    run = batch_score(config.database_url, config.registry_dir, shards=4 * workers,
                      workers=workers, as_of=as_of, num_threads=config.num_threads,
                      redis_url=config.redis_url, progress=progress)
    return Run(run.run_id, run.people, run.scored, run.as_of, run.model_version, run.seconds)
