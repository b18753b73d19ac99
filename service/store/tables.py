"""The record store: tables, engines and migrations (SQLAlchemy 2, Alembic).

One typed table per record source mirrors `features.records` exactly, so that a person's
records come back as the same Polars frames the feature builder reads. The schema is created
only by Alembic migrations (`migrate`), never by `create_all`, so that SQLite and PostgreSQL
are always at the same, versioned shape.

The batch's fast paths (bench/batch.py) bypass SQLAlchemy's per-row work but not its
transactions: they run on the DBAPI connection under a SQLAlchemy `Connection`, in its
transaction. Records of a key range (`records.load_records(first=, last=)`) come by `COPY … TO STDOUT` as CSV
parsed by Polars on PostgreSQL, and by the raw cursor on SQLite; score rows
(`write_scores`) go by `COPY` on PostgreSQL and an executemany of tuples on SQLite, their JSON
encoded once (`dumps`). Errors from these paths are the driver's own (`sqlite3` or `psycopg`
exceptions), not SQLAlchemy's wrappers.
"""

from __future__ import annotations

import datetime as dt
import weakref
from pathlib import Path
from select import POLLERR, POLLHUP, POLLIN, poll

import polars as pl
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)

from features.records import SCHEMAS, Source, record_schema

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


def is_hex_id(value: str, length: int) -> bool:
    """Ids are lower-case hex digests of a fixed length (dispute and consent ids 32, person keys
    and feed ids 64). Anything else cannot exist, and must not reach a query: PostgreSQL refuses
    a NUL in a string, and a raw ID number typed by mistake must not reach a statement log."""
    return len(value) == length and all(c in "0123456789abcdef" for c in value)


def insert_for(bind: Engine | Connection, table: Table):
    """The dialect's own INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if bind.dialect.name == "postgresql" else sqlite).insert(table)


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones: make both aware (UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs (SQLite: foreign keys, WAL, and
    transactions that serialise writers)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:
            # Take the write lock at the start, so that a transaction that reads and then
            # writes (an audit append, an upsert) never fails on a stale snapshot.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, hide_parameters=True)  # no bound values in error text or logs
    event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_connection, _record, _proxy) -> None:
    """A liveness check at checkout that costs no round trip (instead of `pool_pre_ping`'s
    `SELECT 1`, which was a tenth of a partner decision's time).

    An idle pooled connection has nothing to read; when its socket is readable, the server
    has closed it (a restart or fail-over sends its FATAL message, a killed server leaves an
    EOF). Raising `DisconnectionError` here makes SQLAlchemy's pool drop it and check out
    another (SQLAlchemy: "Disconnect Handling — Pessimistic", custom checkout ping). A server
    gone without a word (a cut cable) is found by the first statement instead, which
    invalidates the pool as any disconnect does."""
    from sqlalchemy.exc import DisconnectionError

    if dbapi_connection.closed:
        raise DisconnectionError("the connection is closed")
    poller = poll()
    poller.register(dbapi_connection.fileno(), POLLIN | POLLERR | POLLHUP)
    if poller.poll(0):
        raise DisconnectionError("the server has closed this connection")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` with Alembic (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


# --- people, scores, perks, partners, consents, disputes, audit (migration 0002) -------------
people = Table(
    "people", metadata,
    Column("person_key", String(64), primary_key=True),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    # PIPL Art. 24: a person may ask that decisions about them not rest on the score alone.
    Column("review_state", String(16), nullable=False, server_default="none"),  # none|pending|decided
    Column("review_requested_at", DateTime(timezone=True), nullable=True),
    Column("review_outcome", String(16), nullable=True),  # eligible|not_eligible
)

scores = Table(
    "scores", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_key", String(64), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("score", Float, nullable=False),
    Column("raw_score", Float, nullable=False),
    Column("base_points", Float, nullable=False),
    Column("band", String(32), nullable=False),
    Column("points", JSON, nullable=False),  # feature → points
    Column("reasons", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_scores_person_id", "person_key", "id"),
    UniqueConstraint("run_id", "person_key", name="uq_scores_run_person"),
)

perks = Table(
    "perks", metadata,
    Column("perk_id", String(64), primary_key=True),
    Column("policy_version", Integer, primary_key=True),
    Column("partner_id", String(64), nullable=False),
    Column("name_zh", Text, nullable=False),
    Column("name_en", Text, nullable=False),
    Column("min_score", Float, nullable=False),
    Column("conditions", JSON, nullable=False),  # e.g. ["no_active_court_listing"]
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

partners = Table(
    "partners", metadata,
    Column("partner_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("api_key_hash", String(64), nullable=False, unique=True),  # sha256 of the key
    Column("created_at", DateTime(timezone=True), nullable=False),
)

consents = Table(
    "consents", metadata,
    Column("consent_id", String(32), primary_key=True),
    Column("person_key", String(64), ForeignKey("people.person_key"), nullable=False, index=True),
    Column("partner_id", String(64), ForeignKey("partners.partner_id"), nullable=False),
    Column("perks", JSON, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # The page's own key per grant (migration 0004): the same key twice is the same consent.
    Column("idempotency_key", String(64), nullable=True),
    UniqueConstraint("person_key", "idempotency_key", name="uq_consents_person_idempotency"),
)

disputes = Table(
    "disputes", metadata,
    Column("dispute_id", String(32), primary_key=True),
    Column("person_key", String(64), ForeignKey("people.person_key"), nullable=False, index=True),
    Column("source", String(32), nullable=False),
    Column("record_id", String(32), nullable=False),
    Column("statement", Text, nullable=False),
    Column("received_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("state", String(16), nullable=False),  # open | upheld | rejected | withdrawn
    Column("resolution", Text, nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
)

# --- credit repair and human review of one decision (migration 0004) -------------------------
repairs = Table(  # 信用修复: a citizen's application to have an adverse record repaired
    "repairs", metadata,
    Column("repair_id", String(32), primary_key=True),
    Column("person_key", String(64), ForeignKey("people.person_key"), nullable=False, index=True),
    Column("source", String(32), nullable=False),
    Column("record_id", String(32), nullable=False),
    Column("statement", Text, nullable=False),
    Column("received_on", Date, nullable=False),
    Column("state", String(16), nullable=False),  # open | approved | refused | withdrawn
    Column("resolution", Text, nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(96), nullable=True),
)

reviews = Table(  # PIPL Art. 24: human review of one perk's decision
    "reviews", metadata,
    Column("review_id", String(32), primary_key=True),
    Column("person_key", String(64), ForeignKey("people.person_key"), nullable=False, index=True),
    Column("perk_id", String(64), nullable=False),
    Column("decision_id", String(32), nullable=True),  # the partner decision it contests
    Column("reason", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # pending | decided | withdrawn
    Column("outcome", String(16), nullable=True),  # eligible | not_eligible
    Column("outcome_reason", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decided_by", String(96), nullable=True),
)

# --- the audit log: a Merkle log with signed tree heads (migration 0005, issue 15) ----------
# service/rights/audit.py appends, service/rights/sequencer.py seals, transparency.py proves.
_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite numbers rows only as INTEGER

audit_entries = Table(  # every read of a person's data by someone else, in append order
    "audit_entries", metadata,
    Column("id", _ID, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(96), nullable=False),  # role:id, never a raw ID number
    Column("person_key", String(64), nullable=True, index=True),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("nonce", String(32), nullable=False),  # 16 random bytes, hex: the leaf is unguessable
    Column("leaf_hash", LargeBinary(32), nullable=False),  # by the appender, from the row
)  # never updated: sequencing lives in the two narrow tables below (Trillian's split)

audit_unsealed = Table(  # the queue: written with each entry in the same statement, emptied
    "audit_unsealed", metadata,  # by the sequencer (DELETE … RETURNING) as it seals
    Column("id", _ID, primary_key=True, autoincrement=False),  # audit_entries.id
    Column("leaf_hash", LargeBinary(32), nullable=False),  # so sealing never reads the entries
)

audit_leaves = Table(  # the sequence: which entry is each leaf of the tree
    "audit_leaves", metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_id", _ID, nullable=False, unique=True),  # audit_entries.id
)

audit_tree = Table(  # every complete perfect subtree: (level, idx) covers leaves
    "audit_tree", metadata,  # [idx·2^level, (idx+1)·2^level); level ≥ 1 (level 0, the leaf
    # hashes, is audit_entries.leaf_hash through audit_leaves: transparency.fetch_nodes)
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

audit_tree_heads = Table(  # one signed tree head per seal that added leaves
    "audit_tree_heads", metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("timestamp", BigInteger, nullable=False),  # ms since the epoch
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),  # Ed25519
)


def autocommit(engine: Engine) -> Engine:
    """`engine` for one-statement work without BEGIN/ROLLBACK round trips (PostgreSQL
    autocommit; the same pool). Other databases get `engine` itself."""
    if engine.dialect.name != "postgresql":
        return engine
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


_AUTOCOMMIT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
