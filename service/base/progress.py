"""Telling a person how far a long job got, and where its time went.

`progress_bar` is the one progress bar (tqdm) of the service's long jobs: a batch run's shards,
the demo's feeds. `Stages` is the one stage timer: seconds per named stage, summed over
repeats (a batch shard's list/load/features/score/write, an online re-score's stages for
bench/rescore.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def progress_bar(total: int, label: str, unit: str, *, enabled: bool = True) -> Any:
    """A tqdm bar that goes away when done and redraws at most twice a second (a log file
    of a long run is not flooded). `enabled=False`: a bar that shows nothing."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit=unit, disable=not enabled, leave=False,
                mininterval=0.5)


def reporter(bar: Any) -> Callable[[int, int], None]:
    """An `on_chunk(done, total)` callback (ingest, re-scoring) that moves `bar` to `done`."""
    seen = [0]

    def update(done: int, _total: int) -> None:
        bar.update(done - seen[0])
        seen[0] = done
    return update


class Stages:
    """Seconds per stage: `done(stage)` adds the time since the previous `done` (or since
    the start) to that stage. With `timings=None` it measures nothing and costs nothing."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter() if timings is not None else 0.0

    def done(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now
