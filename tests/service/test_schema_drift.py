"""The schema in one place: the Alembic migrations build exactly the tables that
`service.store.tables.metadata` declares, on SQLite and on PostgreSQL, so a column added to
one and not the other fails CI instead of a deploy."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, String

from service.store.tables import metadata


def _drift(engine, declared: MetaData) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, declared)


def test_the_migrations_build_exactly_the_declared_tables(engine):
    """`engine` has been migrated to head (conftest); nothing may differ."""
    assert _drift(engine, metadata) == []


def test_a_column_the_migrations_lack_is_drift(engine):
    """The check above can fail: a column declared but never migrated is reported."""
    declared = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(declared)
    declared.tables["people"].append_column(Column("nickname", String(32)))
    drift = _drift(engine, declared)
    assert [(d[0], d[3].name) for d in drift if d[0] == "add_column"] == [("add_column",
                                                                           "nickname")]
