"""The record store: tables, engines and migrations (SQLAlchemy 2, Alembic).

One typed table per record source mirrors `features.records` exactly, so that a person's
records come back as the same Polars frames the feature builder reads. The schema is created
only by Alembic migrations (`migrate`), never by `create_all`, so that SQLite and PostgreSQL
are always at the same, versioned shape.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)

from features.records import SCHEMAS, Records, Source, conform, record_schema

metadata = MetaData()

_SQL_TYPES = {pl.String: lambda: String(64), pl.Date: Date, pl.Float64: Float, pl.Int64: BigInteger}


def _record_table(source: Source) -> Table:
    columns = [
        Column("record_id", String(32), primary_key=True),
        Column("person_key", String(64), nullable=False),
    ]
    spec = SCHEMAS[source]
    for name, dtype in record_schema(source).items():
        if name in ("record_id", "person_key"):
            continue
        required = name in spec.column_names and spec.column(name).required
        columns.append(Column(name, _SQL_TYPES[type(dtype)](), nullable=not required))
    columns += [
        Column("feed_id", String(64), nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=True),
    ]
    return Table(
        f"records_{source.value}", metadata, *columns,
        Index(f"ix_records_{source.value}_person", "person_key"),
    )


RECORD_TABLES: dict[Source, Table] = {source: _record_table(source) for source in Source}

feeds = Table(
    "feeds", metadata,
    Column("feed_id", String(64), primary_key=True),  # sha256 of the feed's bytes
    Column("source", String(32), nullable=False),
    Column("filename", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("rows_read", Integer, nullable=False),
    Column("rows_stored", Integer, nullable=False),
    Column("rows_quarantined", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # receiving | complete
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feed_id", String(64), nullable=False),
    Column("source", String(32), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("field", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("problems", Text, nullable=False),
    UniqueConstraint("feed_id", "row_number", name="uq_quarantine_feed_row"),
)


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs (SQLite: foreign keys and WAL)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` with Alembic (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def load_records(engine: Engine, person_keys: list[str] | None = None) -> Records:
    """Typed records of some people (or everyone), as the feature builder reads them."""
    frames = {}
    with engine.connect() as connection:
        for source, table in RECORD_TABLES.items():
            query = select(*[table.c[name] for name in record_schema(source)])
            if person_keys is not None:
                query = query.where(table.c.person_key.in_(list(person_keys)))
            frame = pl.read_database(query, connection, schema_overrides=record_schema(source))
            frames[source.value] = conform(source, frame)
    return Records(**frames)
