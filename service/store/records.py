"""Reading records back: one loader, `load_records`, for one person, a list, a key range or
everyone.

The filter picks the path, each measured for its caller: one person (the online re-score) is
one precompiled SELECT per source, pipelined on psycopg; a list is one `IN (…)` SELECT per
source through `pl.read_database`; a key range (the batch's shard) is an index range scan
per source, read by `COPY … TO STDOUT` as CSV on PostgreSQL and by the raw cursor on SQLite.
All of them return the same typed `Records` (tests/service/test_store.py,
tests/service/test_scoring.py hold them equal).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from operator import itemgetter

import polars as pl
from sqlalchemy import Connection, Engine, Select, bindparam, select

from features.records import Records, Source, conform, record_schema
from service.store.bulk import raw_connection
from service.store.tables import RECORD_TABLES


def load_records(bind: Engine | Connection, person_keys: Iterable[str] | None = None, *,
                 first: str | None = None, last: str | None = None,
                 ids: bool = True) -> Records:
    """Typed records, as the feature builder reads them, of `person_keys` or, without them, of
    everyone whose key is in [first, last] (both None: everyone). `ids=False` leaves
    `record_id` empty on a key range (the feature builder never reads it; it is a third of
    the bytes of a monthly record)."""
    if person_keys is not None and (first is not None or last is not None):
        raise ValueError("load_records takes person keys or a key range, not both")
    with _connected(bind) as connection:
        if person_keys is None:
            return _by_range(connection, first, last, ids)
        keys = list(person_keys)
        if len(keys) == 1:
            return _one_person(connection, keys[0])
        return _by_keys(connection, keys)


@contextmanager
def _connected(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as connection:
            yield connection


def _by_keys(connection: Connection, person_keys: list[str]) -> Records:
    """A list of people: one `IN (…)` SELECT per source, through SQLAlchemy and Polars."""
    frames = {}
    for source, table in RECORD_TABLES.items():
        query = select(*[table.c[name] for name in record_schema(source)])
        query = query.where(table.c.person_key.in_(person_keys))
        frame = pl.read_database(query, connection, schema_overrides=record_schema(source))
        frames[source.value] = conform(source, frame)
    return Records(**frames)


_PERSON_QUERIES: dict[Source, Select] = {
    source: select(*[table.c[name] for name in record_schema(source)])
    .where(table.c.person_key == bindparam("person_key"))
    for source, table in RECORD_TABLES.items()
}


def _one_person(connection: Connection, person_key: str) -> Records:
    """One person's records, equal to the list path's (tests/service/test_scoring.py): the same columns, typed by the same schemas, but one statement
    compiled once per source and rows straight into Polars, not `pl.read_database` (a fifth
    of the online re-score went there). The frames are built with their record schema, so
    `Records`' own `conform` of each (3 ms of Polars calls for one person) would change
    nothing and is skipped."""
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        fetched = _pipelined(connection, person_key)
    else:
        fetched = [connection.execute(query, {"person_key": person_key}).all()
                   for query in _PERSON_QUERIES.values()]
    frames = {source.value: pl.DataFrame(rows, schema=record_schema(source), orient="row")
              for source, rows in zip(_PERSON_QUERIES, fetched, strict=True)}
    records = object.__new__(Records)  # not Records(**frames): no __post_init__ conform
    records.__dict__.update(frames)
    return records


_PIPELINED_SQL: dict[str, list[str]] = {}


def _pipelined(connection, person_key: str) -> list[list[tuple]]:
    """PostgreSQL through psycopg 3: the five SELECTs sent together in pipeline mode, one
    round trip instead of five (the rows are the DBAPI's own, as SQLAlchemy passes them on
    for these column types)."""
    key = connection.dialect.name
    if key not in _PIPELINED_SQL:
        _PIPELINED_SQL[key] = [str(query.compile(dialect=connection.dialect))
                               for query in _PERSON_QUERIES.values()]
    raw = connection.connection.driver_connection
    cursors = []
    with raw.pipeline():
        for sql in _PIPELINED_SQL[key]:
            cursor = raw.cursor()
            cursor.execute(sql, {"person_key": person_key})
            cursors.append(cursor)
    try:
        return [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _by_range(connection: Connection, first: str | None, last: str | None, ids: bool) -> Records:
    """Everyone whose person key is in [first, last] (None: open on that side): an index range scan per source instead of an
    `IN (…)` list of thousands of keys. `ids=False` leaves `record_id` empty (the feature
    builder never reads it; it is a third of the bytes of a monthly record).

    PostgreSQL: `COPY (SELECT …) TO STDOUT` as CSV, parsed by Polars. SQLite: the raw
    cursor's tuples, built into columns by Polars."""
    frames = {}
    postgresql = connection.dialect.name == "postgresql"
    for source, table in RECORD_TABLES.items():
        schema = record_schema(source)
        names = [n for n in schema if ids or n != "record_id"]
        where, params = [], []
        for op, key in ((">=", first), ("<=", last)):
            if key is not None:
                where.append(f"person_key {op} {'%s' if postgresql else '?'}")
                params.append(key)
        query = (f"SELECT {', '.join(names)} FROM {table.name}"
                 + (f" WHERE {' AND '.join(where)}" if where else ""))
        read = {n: schema[n] for n in names}
        frame = _read_pg(connection, query, params, read) if postgresql else \
            _read_sqlite(connection, query, params, read)
        frames[source.value] = conform(source, frame)
    return Records(**frames)


def _read_pg(connection: Connection, query: str, params: list, schema: dict) -> pl.DataFrame:
    import io

    buffer = io.BytesIO()
    statement = f"COPY ({query}) TO STDOUT WITH (FORMAT csv)"
    with raw_connection(connection).cursor() as cursor, cursor.copy(statement, params) as copy:
        for data in copy:
            buffer.write(data)
    if not buffer.tell():
        return pl.DataFrame(schema=schema)
    buffer.seek(0)
    return pl.read_csv(buffer, has_header=False, new_columns=list(schema), schema=schema)


def _read_sqlite(connection: Connection, query: str, params: list, schema: dict) -> pl.DataFrame:
    cursor = raw_connection(connection).cursor()
    try:
        rows = cursor.execute(query, params).fetchall()
    finally:
        cursor.close()
    # column by column (a quarter of the time of building the frame from row tuples), each
    # picked by `itemgetter` in C: 4x faster than transposing with zip(*rows)
    columns = [list(map(itemgetter(i), rows)) for i in range(len(schema))]
    del rows
    frame = pl.DataFrame([pl.Series(name, values, dtype=pl.String if dtype == pl.Date else dtype)
                          for (name, dtype), values in zip(schema.items(), columns, strict=True)])
    return frame.with_columns([pl.col(n).str.to_date("%Y-%m-%d") for n, t in schema.items()
                               if t == pl.Date])
