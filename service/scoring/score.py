"""Score people from the store: records → features → points → reasons → a stored score row.

The same path serves one citizen re-scored inside a dispute request and a whole city: load
the people's records, build their features with the features layer, score them with the
serving scorecard, explain each one, and append a row to `scores` (the trend is the history of
those rows). A stored row carries everything a page needs — score, band, points, reasons and
every catalog feature's value — so reading a page never re-scores anyone.

Speed (bench/rescore.py). Batch: `score_rows` explains everyone at once
(`model.explain.explain_columns`), the stored rows equal, key for key, what one `explain` per
person gave. Online (`rescore`, after a dispute): one person's records come by one compiled
SELECT per source straight into Polars (`store.records.load_records` of one
person), features by the builder's one-person path, score and reasons by the
few-rows path of the explainer; what remains is Polars' fixed cost of planning the catalog's
expressions (about 4 ms) and the database's own round trips (the floor: a bare SELECT and a
bare INSERT). `timings=` gives each stage's seconds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import polars as pl
from sqlalchemy import Engine, bindparam, func, insert, select

from features.build import RECORDS_COUNTED, build_features
from features.catalog import FEATURE_NAMES
from service.base.clock import clock_of
from service.base.progress import Stages
from service.store.records import load_records
from service.store.tables import insert_for, people, scores


def today(config) -> dt.date:
    """The as-of date of online scoring: the city's date on the service's one clock
    (`service.base.clock`: the wall clock in production, the city's own in the demo)."""
    return clock_of(config).today()


def ensure_people(connection, person_keys: Iterable[str]) -> None:
    rows = [{"person_key": key, "first_seen": dt.datetime.now(dt.UTC)} for key in person_keys]
    if not rows:
        return
    connection.execute(insert_for(connection, people)
                       .on_conflict_do_nothing(index_elements=["person_key"]), rows)


def score_rows(scorecard, version: str, table: pl.DataFrame, as_of: dt.date,
               run_id: str | None = None) -> list[dict]:
    """Score rows for a features table (person_key, catalog features, records_counted).

    Everyone is explained at once (`model.explain.explain_columns`: the same values as the
    per-person `explain(...).to_dict()`), then each stored row is assembled with the
    explanation's keys in the per-person order: `points` lifted out, then every catalog
    feature's value as built (NaN stays NaN there, where `values` has None) and
    `records_counted`. Building these Python dicts is most of the time (bench/rescore.py)."""
    from model.explain import SMALL, explain_columns, gc_paused, python_rows

    now = dt.datetime.now(dt.UTC)
    if table.height == 0:
        return []
    missing = [name for name in FEATURE_NAMES if name not in table.columns]
    if missing:
        raise KeyError(missing[0])
    with gc_paused():
        e = explain_columns(scorecard, table)
        if table.height <= SMALL:  # one online re-score: no Polars work per column
            named = table.rows(named=True)
            keys = [row["person_key"] for row in named]
            counted = [row.get(RECORDS_COUNTED) for row in named]
            features = [[row[name] for name in FEATURE_NAMES] for row in named]
        else:
            keys = table["person_key"].to_list()
            counted = (table[RECORDS_COUNTED].to_list() if RECORDS_COUNTED in table.columns
                       else [None] * table.height)
            features = python_rows(table.select(FEATURE_NAMES))
        base = e.base_points
        return [
            {"person_key": key, "as_of": as_of, "model_version": version, "run_id": run_id,
             "score": score, "raw_score": raw, "base_points": base, "band": band,
             "points": points,
             "reasons": {"score": score, "raw_score": raw, "band": band, "band_zh": band_zh,
                         "probability": probability, "base_points": base, "values": values,
                         "reasons_lowering": lowering, "reasons_raising": raising,
                         "no_record": no_record,
                         # the whole points a citizen sees (model/shown.py)
                         "score_shown": score_shown, "base_shown": e.base_shown,
                         "points_shown": shown, "clip_shown": clip, "other_shown": other,
                         "features": dict(zip(FEATURE_NAMES, row, strict=False)),
                         "records_counted": records},
             "created_at": now}
            # strict=False: all columns of one table (and the fast zip)
            for key, score, raw, band, band_zh, probability, points, values, lowering,
            raising, no_record, row, records, score_shown, shown, clip, other in zip(
                keys, e.score, e.raw_score, e.band, e.band_zh,
                e.probability, e.points, e.values, e.reasons_lowering, e.reasons_raising,
                e.no_record, features, counted, e.score_shown, e.points_shown, e.clip_shown,
                e.other_shown, strict=False)]


def score_people(engine: Engine, serving, person_keys: list[str], as_of: dt.date,
                 run_id: str | None = None, *,
                 timings: dict[str, float] | None = None) -> list[dict]:
    """Score and store these people as of `as_of`; returns the stored rows. `timings`, when
    given, receives each stage's seconds."""
    if not serving.ready:
        raise RuntimeError(f"no model to score with: {serving.problem}")
    stages = Stages(timings)
    records = load_records(engine, person_keys)
    stages.done("load records")
    table = build_features(records, as_of, person_keys)
    stages.done("features")
    rows = score_rows(serving.scorecard, serving.version, table, as_of, run_id)
    stages.done("score + explain")
    with engine.begin() as connection:
        ensure_people(connection, person_keys)
        if rows:
            connection.execute(insert(scores), rows)
    stages.done("store")
    return rows


def rescore(app, person_key: str, *, timings: dict[str, float] | None = None) -> dict:
    """Re-score one person now (after a dispute, a repair, an ingest) and drop their cached
    page; returns the new score row. `timings`, when given, receives each stage's seconds."""
    from service.base.cache import page_key

    engine = app.extensions["osmanthus.engine"]
    serving = app.extensions["osmanthus.model"]
    config = app.extensions["osmanthus.config"]
    day = today(config)
    row = score_people(engine, serving, [person_key], day, run_id=None, timings=timings)[0]
    stages = Stages(timings)
    app.extensions["osmanthus.cache"].delete(page_key(serving.version or "-", person_key, day))
    stages.done("cache")
    return row


def latest(engine: Engine, person_key: str) -> dict | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(scores).where(scores.c.person_key == person_key)
            .order_by(scores.c.id.desc()).limit(1)
        ).first()
    return dict(row._mapping) if row else None


TREND_POINTS = 24

_NEWEST_OF_EACH_DATE = (
    select(scores.c.id, scores.c.as_of, scores.c.score, scores.c.band, scores.c.model_version)
    .where(scores.c.id.in_(select(func.max(scores.c.id))
                           .where(scores.c.person_key == bindparam("person_key"))
                           .group_by(scores.c.as_of)))
)  # built once: building it per request cost as much as running it


def newest_of_each_date(engine: Engine, person_key: str) -> list[dict]:
    """The latest score row of each as-of date (id, as_of, score, band, model_version), in one
    indexed query: the trend is these, and the person's latest score is the one with the
    highest id among them (the latest of its own date)."""
    from service.store.tables import autocommit

    with autocommit(engine).connect() as connection:  # no BEGIN/ROLLBACK round trips
        rows = connection.execute(_NEWEST_OF_EACH_DATE, {"person_key": person_key}).all()
    return [dict(row._mapping) for row in rows]


def trend_of(points: list[dict], limit: int = TREND_POINTS) -> list[dict]:
    """The last `limit` dates of `newest_of_each_date`, oldest first."""
    shown = sorted(points, key=lambda point: point["as_of"], reverse=True)[:limit]
    return [{"as_of": p["as_of"], "score": p["score"], "band": p["band"],
             "model_version": p["model_version"]} for p in reversed(shown)]


def trend(engine: Engine, person_key: str, limit: int = TREND_POINTS) -> list[dict]:
    """A person's past scores, oldest first: one point per as-of date (the latest row of it)."""
    return trend_of(newest_of_each_date(engine, person_key), limit)


def new_run_id() -> str:
    """The one run-id format, for a batch, a list of people and one person alike: the UTC
    start time, so that runs sort by when they began, and 8 random hex digits, so that two
    runs started in the same second differ (`batch.RUN_ID` accepts it)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
