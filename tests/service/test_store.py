"""The store's schema: created by migrations only, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest
from sqlalchemy import inspect, text

from features.records import Records, Source, record_schema
from service.store.records import load_records
from service.store.tables import RECORD_TABLES, make_engine, metadata, migrate


def test_migrations_create_every_table_and_are_idempotent(engine):
    migrate(engine)  # a second run changes nothing and does not fail
    tables = set(inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables


def test_no_table_has_a_column_for_a_raw_id_number(engine):
    for table in inspect(engine).get_table_names():
        names = {column["name"] for column in inspect(engine).get_columns(table)}
        assert "resident_id" not in names, table


def test_one_persons_records_are_an_indexed_read(engine):
    for source in Source:
        indexes = inspect(engine).get_indexes(RECORD_TABLES[source].name)
        assert any(index["column_names"] == ["person_key"] for index in indexes), source


def test_records_come_back_typed_as_the_feature_builder_reads_them(engine):
    row = {
        "record_id": "r1", "person_key": "p1", "decision_no": "D-1", "decided_on": dt.date(2024, 3, 1),
        "category": "tax", "severity": "general", "fine": 200.0, "window_months": None,
        "repaired_on": None, "dispute_opened_on": dt.date(2024, 4, 1), "dispute_closed_on": None,
        "dispute_due_on": dt.date(2024, 4, 21),
    }
    with engine.begin() as connection:
        connection.execute(RECORD_TABLES[Source.PENALTY].insert(), [row])
    records = load_records(engine, ["p1"])
    assert isinstance(records, Records)
    penalty = records.penalty
    assert penalty.schema == pl.Schema(record_schema(Source.PENALTY))
    assert penalty.row(0, named=True) == row
    assert load_records(engine, ["someone else"]).penalty.is_empty()


# --- the batch's fast paths ------------------------------------------------------------------
def _score_row(key: str, run_id: str | None, score: float) -> dict:
    """A score row as `service.scoring.score.score_rows` makes it: nested JSON, Chinese text,
    floats that need all 17 digits, None, booleans."""
    return {
        "person_key": key, "as_of": dt.date(2026, 1, 1), "model_version": "v0001",
        "run_id": run_id, "score": score, "raw_score": score + 0.1, "base_points": 1 / 3,
        "band": "good", "points": {"ss_gaps_24m": -1.7709618506431362, "po_events_24m": 0.1},
        "reasons": {"score": score, "band_zh": "良好", "no_record": False, "records_counted": 7,
                    "values": {"tr_max_unpaid_fees_12m": 43.52128825236531, "x": None},
                    "reasons_lowering": [{"feature": "ss_gaps_24m", "points": -1.77,
                                          "text_zh": "近24个月社保断缴1次", "text_en": 'a "quoted"\\ \t'}],
                    "reasons_raising": []},
        "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
    }


def _stored(engine, run_id: str) -> dict[str, dict]:
    from sqlalchemy import select

    from service.store.tables import scores

    with engine.connect() as connection:
        rows = connection.execute(select(scores).where(scores.c.run_id == run_id)).all()
    found = [dict(r._mapping) for r in rows]
    assert len({r["person_key"] for r in found}) == len(found), "a person stored twice"
    return {r["person_key"]: {k: v for k, v in r.items() if k not in ("id", "run_id")}
            for r in found}


def test_score_rows_written_twice_are_stored_once_as_the_plain_insert_stores_them(engine):
    from sqlalchemy import insert

    from service.store.bulk import write_scores
    from service.store.tables import scores

    first = [_score_row(f"p{i:02d}", "fast", 600 + i / 7) for i in range(6)]
    with engine.begin() as connection:
        assert write_scores(connection, first) == 6
    with engine.begin() as connection:  # the same rows again: nothing new
        assert write_scores(connection, first) == 0
    more = first[3:] + [_score_row(f"p{i:02d}", "fast", 1.0) for i in range(6, 9)]
    with engine.begin() as connection:  # half already there (PostgreSQL: COPY's fallback)
        assert write_scores(connection, more) == 3
        assert write_scores(connection, more) == 0  # twice in one transaction
    with engine.begin() as connection:  # the ORM's own insert, for reference
        connection.execute(insert(scores), [{**r, "run_id": "plain"} for r in first + more[3:]])

    fast, plain = _stored(engine, "fast"), _stored(engine, "plain")
    assert len(fast) == 9
    assert fast == plain  # JSON, dates and times read back as the existing readers see them
    assert fast["p00"]["reasons"] == first[0]["reasons"]
    assert fast["p00"]["points"] == first[0]["points"]


def test_a_failed_chunk_leaves_no_row(engine):
    import sqlite3

    import psycopg

    from service.store.bulk import write_scores

    rows = [_score_row("q1", "atomic", 500.0), {**_score_row("q2", "atomic", 1.0), "band": None}]
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)), engine.begin() as connection:  # band is NOT NULL
        write_scores(connection, rows)
    assert _stored(engine, "atomic") == {}


def test_records_by_key_range_are_those_of_load_records(engine, world):
    from service.store.bulk import write_records

    keys = world.people()["person_key"].sort().to_list()[:40]
    records = world.records.filter_persons(keys)
    assert write_records(engine, records, chunk=50) == sum(records.get(s).height for s in Source)

    def same(ours: Records, theirs: Records, ids: bool = True) -> None:
        for source in Source:
            a, b = ours.get(source), theirs.get(source)
            if not ids:
                assert a["record_id"].null_count() == a.height
                a, b = a.drop("record_id"), b.drop("record_id")
            order = [c for c in a.columns if c != "record_id"] if not ids else ["record_id"]
            assert a.sort(order).equals(b.sort(order)), source

    with engine.connect() as connection:
        same(load_records(connection, first=None, last=None), records)  # floats, dates, nulls
        first, last = keys[5], keys[30]
        inside = [k for k in keys if first <= k <= last]
        same(load_records(connection, first=first, last=last), load_records(engine, inside))
        same(load_records(connection, first=first, last=last, ids=False),
             load_records(engine, inside), ids=False)
        same(load_records(connection, first=None, last=keys[9]), load_records(engine, keys[:10]))
        assert all(load_records(connection, first="g", last=None).get(s).is_empty() for s in Source)


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has no server
def test_a_connection_the_server_closed_is_never_handed_out(engine):
    """The pool's check at checkout (no round trip): a pooled connection whose server end
    has gone is dropped and another taken, so the first statement after a restart works."""
    with engine.connect() as connection:
        doomed = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with make_engine(engine.url.render_as_string(hide_password=False)).connect() as killer:
        assert killer.execute(text("SELECT pg_terminate_backend(:pid)"),
                              {"pid": doomed}).scalar_one()
    for _ in range(100):  # until the terminated backend's goodbye reaches our socket
        if poll_readable(engine):
            break
        time.sleep(0.02)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != doomed


def poll_readable(engine) -> bool:
    import select

    pooled = engine.pool._pool.queue  # the idle connections, as the pool holds them
    poller = select.poll()
    for record in pooled:
        poller.register(record.dbapi_connection.fileno(), select.POLLIN | select.POLLHUP)
    return bool(poller.poll(0))
