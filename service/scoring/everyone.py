"""Operators' jobs behind `osmanthus partners`, `osmanthus rescore` and `osmanthus demo`:
partners and their API keys, and re-scoring the store outside the API."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from service.rights.auth import new_api_key
from service.base.config import Config
from service.scoring.rescore import Run, rescore_many
from service.store.tables import partners, people

PARALLEL_FROM = 2_000  # fewer people than this are scored in one process


def add_partner(engine: Engine, partner_id: str, name: str, *, rotate: bool = False) -> str:
    """Register a partner (or give an existing one a new key with `rotate`); returns the key,
    of which only the SHA-256 is stored."""
    if not partner_id or len(partner_id) > 64 or not partner_id.replace("-", "").isalnum():
        raise ValueError("a partner id is 1 to 64 letters, digits or hyphens")
    key, hashed = new_api_key()
    with engine.begin() as connection:
        exists = connection.execute(select(partners.c.partner_id)
                                    .where(partners.c.partner_id == partner_id)).first()
        if exists and not rotate:
            raise ValueError(f"partner {partner_id} exists; --rotate gives it a new key")
        if exists:
            connection.execute(partners.update().where(partners.c.partner_id == partner_id)
                               .values(name=name, api_key_hash=hashed))
        else:
            connection.execute(partners.insert().values(
                partner_id=partner_id, name=name, api_key_hash=hashed,
                created_at=dt.datetime.now(dt.UTC)))
    return key


def list_partners(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(partners.c.partner_id, partners.c.name,
                                         partners.c.created_at).order_by(partners.c.partner_id))
        return [dict(row._mapping) for row in rows]


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
