"""The store's bulk paths: COPY on PostgreSQL, executemany of plain tuples on SQLite.

Batch scoring, feed ingest and bulk loads move millions of rows; SQLAlchemy's per-row work
(a dict per row, a bound parameter per value) costs more than the database does at that size.
These functions go through the driver itself, inside the caller's SQLAlchemy transaction, so
atomicity and the retry logic around them are unchanged. Row-at-a-time code paths keep using
SQLAlchemy (`service.store.tables`).
"""

from __future__ import annotations

import json

import polars as pl
from sqlalchemy import Connection, Engine

from features.records import Records, record_schema
from service.store.tables import RECORD_TABLES

# --- the batch's fast paths: records by key range in, score rows out --------------------------
SCORE_COLUMNS = ("person_key", "as_of", "model_version", "run_id", "score", "raw_score",
                 "base_points", "band", "points", "reasons", "created_at")
_SCORES_IN = "osmanthus_scores_in"  # a temporary table: one per PostgreSQL session
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores a value in SQLite


def dumps(value) -> str:
    """JSON text for a JSON column, encoded once by the C encoder: compact, and non-ASCII kept
    as UTF-8 (reasons are Chinese: a third of the bytes of `\\uXXXX` escapes). SQLAlchemy's
    JSON type (stdlib `json.loads`) reads it back to equal Python values; floats keep `repr`,
    and PostgreSQL's `json` type stores the text as given."""
    return _JSON.encode(value)


def raw_connection(connection: Connection):
    """The DBAPI connection under a SQLAlchemy connection (same transaction)."""
    return connection.connection.dbapi_connection


def sqlite_insert(connection: Connection, verb: str, names: list[str] | tuple[str, ...],
                   rows: list[tuple], tail: str = "") -> int:
    cursor = raw_connection(connection).cursor()
    try:
        marks = ", ".join("?" * len(names))
        cursor.executemany(f"{verb} ({', '.join(names)}) VALUES ({marks}){tail}", rows)
        return max(cursor.rowcount, 0)  # sqlite3 sums the rows each statement changed
    finally:
        cursor.close()


def sqlite_tuples(frame: pl.DataFrame) -> list[tuple]:
    """Rows as SQLAlchemy would store them in SQLite (dates as ISO text)."""
    dates = [pl.col(n).dt.to_string("%Y-%m-%d") for n, t in frame.schema.items() if t == pl.Date]
    return frame.with_columns(dates).rows()


def copy_csv(connection: Connection, table: str, names: list[str], frame: pl.DataFrame) -> None:
    """COPY a frame into a PostgreSQL table through Polars' CSV writer. Nulls are written
    unquoted-empty and strings always quoted, so an empty string stays an empty string."""
    data = frame.write_csv(include_header=False, quote_style="non_numeric", null_value="",
                           date_format="%Y-%m-%d")
    statement = f"COPY {table} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv)"
    with raw_connection(connection).cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(data.encode())


def score_tuples(rows: list[dict], dialect: str) -> list[tuple]:
    """Score rows (`service.scoring.score.score_rows`) as tuples in `SCORE_COLUMNS` order, their JSON
    encoded once; for SQLite, dates and times as SQLAlchemy stores them."""
    encode, sqlite = _JSON.encode, dialect == "sqlite"
    stamps: dict = {}
    out = []
    for r in rows:
        as_of, created = r["as_of"], r["created_at"]
        if sqlite:
            as_of = as_of.isoformat()
            created = stamps.get(created) or stamps.setdefault(
                created, created.strftime(SQLITE_DATETIME))
        out.append((r["person_key"], as_of, r["model_version"], r["run_id"], r["score"],
                    r["raw_score"], r["base_points"], r["band"], encode(r["points"]),
                    encode(r["reasons"]), created))
    return out


def write_scores(connection: Connection, rows: list[dict]) -> int:
    """Insert score rows, ignoring any whose (run_id, person_key) is already stored; returns
    how many were inserted. Idempotent: writing the same rows again inserts none.

    PostgreSQL: `COPY` straight into `scores` inside a savepoint — the bare bulk insert, and
    what a batch chunk almost always is, since a shard lists only its unscored people. `COPY`
    cannot skip a conflict: if a row is already there (a retried or racing shard, a second
    write) the savepoint is rolled back and the rows go through a session-local temporary
    table and one `INSERT … SELECT … ON CONFLICT (run_id, person_key) DO NOTHING`. SQLite:
    one executemany of tuples with the same ON CONFLICT clause (not `INSERT OR IGNORE`, which
    would also drop a row that breaks NOT NULL). Either way in the caller's transaction.
    """
    if not rows:
        return 0
    dialect = connection.dialect.name
    tuples = score_tuples(rows, dialect)
    if dialect != "postgresql":
        return sqlite_insert(connection, "INSERT INTO scores", SCORE_COLUMNS, tuples,
                              " ON CONFLICT (run_id, person_key) DO NOTHING")
    import psycopg

    names = ", ".join(SCORE_COLUMNS)
    raw = raw_connection(connection)
    with raw.cursor() as cursor:
        cursor.execute("SAVEPOINT osmanthus_copy")  # (psycopg opens the transaction if need be)
        try:
            with cursor.copy(f"COPY scores ({names}) FROM STDIN") as copy:
                for row in tuples:
                    copy.write_row(row)
            cursor.execute("RELEASE SAVEPOINT osmanthus_copy")
            return len(tuples)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT osmanthus_copy")
    with raw.cursor() as cursor:
        # the same column types as `scores`, whatever the schema; emptied at every commit
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_SCORES_IN} ON COMMIT DELETE ROWS"
                       f" AS SELECT {names} FROM scores WITH NO DATA")
        cursor.execute(f"TRUNCATE {_SCORES_IN}")  # a second write in the same transaction
        with cursor.copy(f"COPY {_SCORES_IN} ({names}) FROM STDIN") as copy:
            for row in tuples:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO scores ({names}) SELECT {names} FROM {_SCORES_IN} "
                       "ON CONFLICT (run_id, person_key) DO NOTHING")
        return max(cursor.rowcount, 0)


def write_people(connection: Connection, person_keys: list[str], first_seen) -> None:
    """Add people not yet in `people` (insert-or-ignore), in one statement."""
    if not person_keys:
        return
    if connection.dialect.name == "postgresql":
        with raw_connection(connection).cursor() as cursor:
            cursor.execute("INSERT INTO people (person_key, first_seen) SELECT k, %s "
                           "FROM unnest(%s::text[]) AS k ON CONFLICT (person_key) DO NOTHING",
                           (first_seen, list(person_keys)))
        return
    stamp = first_seen.strftime(SQLITE_DATETIME)
    sqlite_insert(connection, "INSERT INTO people", ("person_key", "first_seen"),
                   [(key, stamp) for key in person_keys], " ON CONFLICT (person_key) DO NOTHING")


def write_records(engine: Engine, records: Records, chunk: int = 1_000_000) -> int:
    """Insert typed records as they are (a bulk load for tests, benchmarks and the demo; feeds
    go through `service.store.ingest`, which validates, quarantines and upserts).

    Rows go in person-key order, a slice of `chunk` rows per transaction (65 million records
    never need one giant transaction, nor a WAL file that size): the person-key index then
    grows at its end instead of at random pages, and a person's records sit together, as a
    clustered table's would. PostgreSQL: Polars writes each slice as CSV and `COPY` reads it
    (no Python object per value). SQLite: executemany of plain tuples, with a large page cache
    for the load."""
    written = 0
    for source, table in RECORD_TABLES.items():
        frame = records.get(source)
        names = list(record_schema(source))
        order = frame.get_column("person_key").arg_sort()
        for start in range(0, frame.height, chunk):
            part = frame.select(names)[order.slice(start, chunk)]
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    copy_csv(connection, table.name, names, part)
                else:
                    connection.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MiB
                    sqlite_insert(connection, f"INSERT INTO {table.name}", names,
                                  sqlite_tuples(part))
            written += part.height
    return written
