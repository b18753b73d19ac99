"""Re-score many people from the store, in chunks: after a feed, after a model change, or the
whole city (`POST /v1/admin/rescore-all`, `osmanthus rescore`, `osmanthus demo`).

Each chunk is one `scoring.score_people` call (records → features → points → stored rows) and
drops the chunk's cached pages. With `workers > 1` chunks run in a local process pool, each
process with its own engine and its own verified copy of the champion.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from service.cache import page_key
from service.scoring import new_run_id, score_people
from service.store import people

CHUNK = 1_000


@dataclass
class Run:
    run_id: str
    people: int
    scored: int
    as_of: dt.date
    model_version: str
    seconds: float


def everyone(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(
            select(people.c.person_key).order_by(people.c.person_key)).scalars())


def _chunks(keys: Sequence[str], size: int) -> list[list[str]]:
    return [list(keys[start:start + size]) for start in range(0, len(keys), size)]


def rescore_many(engine: Engine, serving, keys: Sequence[str], as_of: dt.date, *,
                 cache=None, run_id: str | None = None, chunk: int = CHUNK,
                 on_chunk: Callable[[int, int], None] | None = None) -> Run:
    """Score `keys` as of `as_of` in chunks, in this process; drop their cached pages."""
    if not serving.ready:
        raise RuntimeError(f"no model to score with: {serving.problem}")
    run_id, started, scored = run_id or new_run_id(), time.monotonic(), 0
    for part in _chunks(keys, chunk):
        scored += len(score_people(engine, serving, part, as_of, run_id=run_id))
        if cache is not None:
            cache.delete(*[page_key(serving.version, key) for key in part])
        if on_chunk:
            on_chunk(scored, len(keys))
    return Run(run_id, len(keys), scored, as_of, serving.version,
               round(time.monotonic() - started, 3))


# --- a local process pool (the demo and `osmanthus rescore --workers N`) ----------------------
_WORKER: dict = {}


def _init_worker(database_url: str, registry_dir: str) -> None:
    from service.serving import load_serving
    from service.store import make_engine

    _WORKER["engine"] = make_engine(database_url)
    _WORKER["serving"] = load_serving(Path(registry_dir))


def _score_chunk(keys: list[str], as_of: dt.date, run_id: str) -> int:
    return len(score_people(_WORKER["engine"], _WORKER["serving"], keys, as_of, run_id=run_id))


def rescore_parallel(database_url: str, registry_dir: Path, serving, keys: Sequence[str],
                     as_of: dt.date, *, workers: int, chunk: int = CHUNK,
                     on_chunk: Callable[[int, int], None] | None = None) -> Run:
    """Like `rescore_many`, with chunks spread over `workers` processes (no cache to drop:
    this runs outside the serving app)."""
    if not serving.ready:
        raise RuntimeError(f"no model to score with: {serving.problem}")
    run_id, started, scored = new_run_id(), time.monotonic(), 0
    parts = _chunks(keys, chunk)
    # spawn, not fork: a forked LightGBM (OpenMP) can hang once the parent has trained
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker,
                             initargs=(database_url, str(registry_dir))) as pool:
        for done in pool.map(_score_chunk, parts, [as_of] * len(parts), [run_id] * len(parts)):
            scored += done
            if on_chunk:
                on_chunk(scored, len(keys))
    return Run(run_id, len(keys), scored, as_of, serving.version,
               round(time.monotonic() - started, 3))
