"""Operators' jobs behind `osmanthus partners`, `osmanthus rescore` and `osmanthus demo`:
partners and their API keys, and re-scoring the store outside the API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Engine, select

from service.auth import new_api_key
from service.config import Config
from service.rescoring import Run, everyone, rescore_many, rescore_parallel
from service.store import partners

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
                  on_chunk: Callable[[int, int], None] | None = None) -> Run:
    """Score these people (None: everyone in `people`) with the champion, as of `as_of`
    (default: the service's today). Pages cached in Redis are dropped; an in-process cache
    lives in the serving processes, where keys carry the model version and expire."""
    from service.cache import make_cache
    from service.scoring import today
    from service.serving import load_serving

    serving = load_serving(config.registry_dir, config.num_threads)
    if not serving.ready:
        raise LookupError(f"no model to score with: {serving.problem}")
    keys = everyone(engine) if person_keys is None else person_keys
    as_of = as_of or today(config)
    cache = make_cache(config.redis_url) if config.redis_url else None
    if workers > 1 and len(keys) > PARALLEL_FROM:
        run = rescore_parallel(config.database_url, config.registry_dir, serving, keys, as_of,
                               workers=workers, on_chunk=on_chunk)
        if cache is not None:
            from service.cache import page_key

            cache.delete(*[page_key(serving.version, key) for key in keys])
        return run
    return rescore_many(engine, serving, keys, as_of, cache=cache, on_chunk=on_chunk)
