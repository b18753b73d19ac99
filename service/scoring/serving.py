"""The model this instance serves: the registry's champion, verified on load.

A champion that fails its checksums or catalog check is refused and logged; the latest earlier
champion that still loads serves instead (`Registry.load_champion(fallback=True)`). With no
champion at all the instance starts, answers health checks, and reports itself not ready.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Serving:
    version: str | None
    scorecard: object | None  # model.scorecard.Scorecard
    problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.scorecard is not None


def load_serving(registry_dir: Path, num_threads: int = 1) -> Serving:
    from model.bundle import ModelRefused
    from model.registry import Registry

    registry = Registry(registry_dir)
    try:
        loaded = registry.load_champion(fallback=True)
    except LookupError as error:
        return Serving(None, None, str(error))
    except ModelRefused as error:
        log.error("no loadable champion: %s", error)
        return Serving(None, None, f"champion refused: {error}")
    loaded.scorecard.num_threads = num_threads
    version = Path(loaded.directory).name
    log.info("serving model %s", version)
    return Serving(version, loaded.scorecard)
