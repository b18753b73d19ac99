"""Helpers for building many small Python rows fast: the collector paused, rows without
`iter_rows` (the explainer's batch path and `service.scoring.score_rows` use both)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl

_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small dicts and lists (none
    forms a cycle, yet every 700 allocations the collector would walk them; on a 10,000-row
    table that is a third of the time). Nested and threaded uses are counted, so the
    collector is re-enabled exactly when the last user leaves, and only if it was on."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def python_rows(frame: pl.DataFrame) -> list[list[Any]] | list[tuple[Any, ...]]:
    """A frame's rows as the Python values `iter_rows` yields, without it: all-Float64 frames
    (every catalog features table) through one numpy matrix, whose `tolist` is twice as fast
    as zipping Polars' columns (then nulls must be absent: numpy would make them NaN)."""
    if (frame.width and all(dtype == pl.Float64 for dtype in frame.dtypes)
            and not any(frame.null_count().row(0))):
        return frame.to_numpy().tolist()
    return list(zip(*[series.to_list() for series in frame.get_columns()], strict=True))
