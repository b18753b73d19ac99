"""Re-score a list of people from the store, in chunks, in this process: after a feed or a
dispute (everyone is the batch's job: `everyone.rescore_store`, `everyone.start_everyone`).

Each chunk is one `score.score_people` call (records → features → points → stored rows) and
drops the chunk's cached pages. A whole city (`osmanthus rescore --all`, `osmanthus demo`,
`POST /v1/admin/rescore-all`) is a batch run instead (`service.scoring.batch`, through
`everyone.rescore_store`): sharded, resumable, over local processes or a Dask cluster.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from service.base.cache import page_key
from service.scoring.score import new_run_id, score_people

CHUNK = 1_000


@dataclass
class Run:
    run_id: str
    people: int
    scored: int
    as_of: dt.date
    model_version: str
    seconds: float


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
            cache.delete(*[page_key(serving.version, key, as_of) for key in part])
        if on_chunk:
            on_chunk(scored, len(keys))
    return Run(run_id, len(keys), scored, as_of, serving.version,
               round(time.monotonic() - started, 3))
