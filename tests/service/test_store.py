"""The store's schema: created by migrations only, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import inspect

from features.records import Records, Source, record_schema
from service.store import RECORD_TABLES, load_records, metadata, migrate


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
    }
    with engine.begin() as connection:
        connection.execute(RECORD_TABLES[Source.PENALTY].insert(), [row])
    records = load_records(engine, ["p1"])
    assert isinstance(records, Records)
    penalty = records.penalty
    assert penalty.schema == pl.Schema(record_schema(Source.PENALTY))
    assert penalty.row(0, named=True) == row
    assert load_records(engine, ["someone else"]).penalty.is_empty()
