"""Score people from the store: records → features → points → reasons → a stored score row.

The same path serves one citizen re-scored inside a dispute request and a whole city: load
the people's records, build their features with the features layer, score them with the
serving scorecard, explain each one, and append a row to `scores` (the trend is the history of
those rows). A stored row carries everything a page needs — score, band, points, reasons and
every catalog feature's value — so reading a page never re-scores anyone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import polars as pl
from sqlalchemy import Engine, func, insert, select

from features.build import RECORDS_COUNTED, build_features
from features.catalog import FEATURE_NAMES
from service.store import insert_for, load_records, people, scores


def today(config) -> dt.date:
    """The as-of date of online scoring: `OSMANTHUS_AS_OF` when set (a demo city lives in its
    own time), otherwise today."""
    fixed = getattr(config, "as_of", None)
    return fixed or dt.date.today()


def ensure_people(connection, person_keys: Iterable[str]) -> None:
    rows = [{"person_key": key, "first_seen": dt.datetime.now(dt.UTC)} for key in person_keys]
    if not rows:
        return
    connection.execute(insert_for(connection, people)
                       .on_conflict_do_nothing(index_elements=["person_key"]), rows)


def score_rows(scorecard, version: str, table: pl.DataFrame, as_of: dt.date,
               run_id: str | None = None) -> list[dict]:
    """Score rows for a features table (person_key, catalog features, records_counted)."""
    from model.explain import explain

    now = dt.datetime.now(dt.UTC)
    rows = []
    for row in table.iter_rows(named=True):
        explanation = explain(scorecard, row, row.get(RECORDS_COUNTED)).to_dict()
        explanation["features"] = {name: row[name] for name in FEATURE_NAMES}
        explanation["records_counted"] = row.get(RECORDS_COUNTED)
        rows.append({
            "person_key": row["person_key"], "as_of": as_of, "model_version": version,
            "run_id": run_id, "score": explanation["score"],
            "raw_score": explanation["raw_score"], "base_points": explanation["base_points"],
            "band": explanation["band"], "points": explanation.pop("points"),
            "reasons": explanation, "created_at": now,
        })
    return rows


def score_people(engine: Engine, serving, person_keys: list[str], as_of: dt.date,
                 run_id: str | None = None) -> list[dict]:
    """Score and store these people as of `as_of`; returns the stored rows."""
    if not serving.ready:
        raise RuntimeError(f"no model to score with: {serving.problem}")
    records = load_records(engine, person_keys)
    table = build_features(records, as_of, person_keys)
    rows = score_rows(serving.scorecard, serving.version, table, as_of, run_id)
    with engine.begin() as connection:
        ensure_people(connection, person_keys)
        if rows:
            connection.execute(insert(scores), rows)
    return rows


def rescore(app, person_key: str) -> dict:
    """Re-score one person now (after a dispute, a repair, an ingest) and drop their cached
    page; returns the new score row."""
    from service.cache import page_key

    engine = app.extensions["osmanthus.engine"]
    serving = app.extensions["osmanthus.model"]
    config = app.extensions["osmanthus.config"]
    row = score_people(engine, serving, [person_key], today(config), run_id=None)[0]
    app.extensions["osmanthus.cache"].delete(page_key(serving.version or "-", person_key))
    return row


def latest(engine: Engine, person_key: str) -> dict | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(scores).where(scores.c.person_key == person_key)
            .order_by(scores.c.id.desc()).limit(1)
        ).first()
    return dict(row._mapping) if row else None


def trend(engine: Engine, person_key: str, limit: int = 24) -> list[dict]:
    """A person's past scores, oldest first: one point per as-of date (the latest row of it)."""
    with engine.connect() as connection:
        newest = (select(func.max(scores.c.id)).where(scores.c.person_key == person_key)
                  .group_by(scores.c.as_of))
        rows = connection.execute(
            select(scores.c.as_of, scores.c.score, scores.c.band, scores.c.model_version)
            .where(scores.c.id.in_(newest)).order_by(scores.c.as_of.desc()).limit(limit)
        ).all()
    return [dict(r._mapping) for r in reversed(rows)]


def new_run_id() -> str:
    return uuid.uuid4().hex
