"""The audit log of every read of a person's data by someone else: appends.

The log is a Merkle log in the style of Certificate Transparency (RFC 9162). An append is a
plain insert into `audit_entries` with the entry's leaf hash, computed here from the row
itself (`leaf_data`): no shared row, no lock, nothing another append waits on. Each entry
carries 16 random bytes (`nonce`) so that its leaf hash, which proofs reveal, cannot be matched
against guesses of who read whom. The leaf names the person by a salted commitment,
`person_commitment` = hex SHA-256(nonce bytes ‖ UTF-8 person key), never by the key: a citizen's
access log returns each entry's leaf data verbatim (no person key in any answer, nothing to put
back, so it verifies whatever identity the citizen signed in with: our token or the city's
OpenID Connect provider, whose `sub` is not the key), and two entries about one person share
nothing, since the nonce differs. The operator's `audit verify` recomputes the commitment from
the row's `person_key` column, so a row moved to another person is caught. `service/rights/sequencer.py` later gives entries their leaf
index, adds them to the tree and signs a tree head; `service/rights/transparency.py` proves
inclusion and consistency and verifies the whole log.

Two ways to append:
Each entry is also queued for the sequencer in `audit_unsealed` (its id and leaf hash) by the
same statement (PostgreSQL) or transaction: the sequencer then never reads or updates the wide
entry rows (Trillian keeps unsequenced and sequenced leaves apart the same way).

- `append` / `append_many` insert inside the caller's transaction (disputes, consents,
  reviews, repairs, admin: the entry belongs to the caller's own change).
- `append_committed` inserts on its own and has committed when it returns (partners'
  decisions, the hot path: nothing is answered without its entry). On PostgreSQL it is ONE
  statement through the driver on an autocommit connection: one round trip, its own
  transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

from sqlalchemy import Connection, Engine, insert, select

from service.rights.merkle import leaf_hash
from service.store.tables import as_utc, audit_entries, audit_leaves, audit_unsealed, autocommit


def stamp(at: dt.datetime) -> str:
    """The instant as the leaf data writes it: UTC, microseconds, `Z`."""
    return as_utc(at).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def person_commitment(person_key: str | None, nonce: str) -> str | None:
    """The leaf's stand-in for the person key: hex SHA-256(bytes of the hex `nonce` ‖ UTF-8
    key); None for an entry about nobody. Hiding (the 16 random bytes differ per entry) and
    binding (SHA-256), so the key itself never has to leave the database."""
    if person_key is None:
        return None
    return hashlib.sha256(bytes.fromhex(nonce) + person_key.encode()).hexdigest()


def leaf_data(at: dt.datetime, actor: str, person_key: str | None, action: str, detail: dict,
              nonce: str) -> str:
    """The text whose UTF-8 bytes are an entry's leaf (hashed as SHA-256(0x00 ‖ data)):
    canonical JSON of [at, actor, person commitment, action, detail, nonce]. A citizen's browser
    and an outside auditor rebuild the hash from exactly this text, as served."""
    return json.dumps([stamp(at), actor, person_commitment(person_key, nonce), action, detail,
                       nonce], sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def entry_hash(at: dt.datetime, actor: str, person_key: str | None, action: str, detail: dict,
               nonce: str) -> bytes:
    return leaf_hash(leaf_data(at, actor, person_key, action, detail, nonce).encode())


def _rows(entries: list[dict], at: dt.datetime) -> list[dict]:
    at = as_utc(at).astimezone(dt.UTC)  # SQLite keeps the wall time only: make it UTC's
    rows = []
    for entry in entries:
        person_key, detail = entry.get("person_key"), entry.get("detail") or {}
        nonce = secrets.token_hex(16)
        rows.append({"at": at, "actor": entry["actor"], "person_key": person_key,
                     "action": entry["action"], "detail": detail, "nonce": nonce,
                     "leaf_hash": entry_hash(at, entry["actor"], person_key, entry["action"],
                                             detail, nonce)})
    return rows


MULTI_ROW = 2_000  # 7 values a row, under SQLite's 32,766 variables a statement


def append(connection: Connection, *, actor: str, action: str, person_key: str | None = None,
           detail: dict | None = None, at: dt.datetime | None = None) -> int:
    """Append one entry inside the caller's transaction; returns its id."""
    entry = {"actor": actor, "action": action, "person_key": person_key, "detail": detail}
    return append_many(connection, [entry], at=at)[0]


def append_many(connection: Connection, entries: list[dict],
                at: dt.datetime | None = None) -> list[int]:
    """Append several entries inside the caller's transaction with one multi-row insert; each
    has `actor`, `action` and optionally `person_key` and `detail`. Returns their ids, in
    order."""
    if not entries:
        return []
    rows, ids = _rows(entries, at or dt.datetime.now(dt.UTC)), []
    for start in range(0, len(rows), MULTI_ROW):  # one statement per MULTI_ROW entries
        chunk = rows[start:start + MULTI_ROW]
        made = sorted(connection.execute(insert(audit_entries).values(chunk).returning(
            audit_entries.c.id)).scalars())
        connection.execute(insert(audit_unsealed).values([
            {"id": id_, "leaf_hash": row["leaf_hash"]} for id_, row in zip(made, chunk,
                                                                          strict=True)]))
        ids += made
    return ids  # one statement's ids follow its rows' order (identity / SQLite's rowid)


# PostgreSQL only, sent through the driver itself (psycopg): this is the hot path, and
# SQLAlchemy's per-statement work cost more than the statement. The rows travel as ONE JSON
# document (json_to_recordset), so the text is the same for one row or a thousand (prepared
# once by psycopg) and the rows are encoded by the json module in C.
# The entry and its row in the sequencer's queue (`audit_unsealed`) go in together: one
# statement, so one cannot exist without the other.
_INSERT_SQL = (
    "WITH e AS (INSERT INTO audit_entries (at, actor, person_key, action, detail, nonce, "
    "leaf_hash) SELECT %(at)s::timestamptz, v.actor, v.person_key, v.action, v.detail, "
    "v.nonce, decode(v.leaf_hash, 'hex') FROM json_to_recordset(%(rows)s::json) AS v(actor "
    "text, person_key text, action text, detail json, nonce text, leaf_hash text) "
    "RETURNING id, leaf_hash), "
    "q AS (INSERT INTO audit_unsealed (id, leaf_hash) SELECT id, leaf_hash FROM e) "
    "SELECT id FROM e")


def append_committed(engine: Engine, entries: list[dict], at: dt.datetime | None = None,
                     connection: Connection | None = None) -> list[int]:
    """Append `entries` on their own and commit before returning; their ids, in order.

    `connection`, if given, must come from `autocommit(engine)` (it saves a checkout)."""
    if not entries:
        return []
    at = at or dt.datetime.now(dt.UTC)
    if engine.dialect.name != "postgresql":
        with engine.begin() as own:
            return append_many(own, entries, at=at)
    if connection is None:
        with autocommit(engine).connect() as own:
            return _insert(own, entries, at)
    return _insert(connection, entries, at)


def driver_connection(connection: Connection):
    """The driver's own connection under a SQLAlchemy one (same session, same transaction
    state), for the few hand-written PostgreSQL statements on the hot path."""
    return connection.connection.dbapi_connection


def _insert(connection: Connection, entries: list[dict], at: dt.datetime) -> list[int]:
    driver = driver_connection(connection)
    if not driver.autocommit:
        raise ValueError("append_committed needs an autocommit connection (tables.autocommit)")
    rows = _rows(entries, at)
    document = json.dumps([{"actor": row["actor"], "person_key": row["person_key"],
                            "action": row["action"], "detail": row["detail"],
                            "nonce": row["nonce"], "leaf_hash": row["leaf_hash"].hex()}
                           for row in rows], ensure_ascii=False)
    ids = [found[0] for found in driver.execute(_INSERT_SQL, {"at": at, "rows": document})]
    return sorted(ids)  # one statement's identity values follow its rows' order


def entries_for(engine: Engine, person_key: str, limit: int = 200, *,
                before: int | None = None) -> list[dict]:
    """A person's own access log, newest first: who asked about them, when, the answer, and
    what they need to check it is in the log (`leaf_data`, which names them only by a salted
    commitment: safe to return as is; `leaf_index` None: not yet sealed).
    `before`: only entries older than that id, to page back through all of it."""
    t, leaves = audit_entries, audit_leaves
    query = (select(t.c.id, t.c.at, t.c.actor, t.c.person_key, t.c.action, t.c.detail,
                    t.c.nonce, leaves.c.leaf_index)
             .select_from(t.outerjoin(leaves, leaves.c.entry_id == t.c.id))
             .where(t.c.person_key == person_key))
    if before is not None:
        query = query.where(t.c.id < before)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(t.c.id.desc()).limit(limit)).all()
    return [{"id": row.id, "at": as_utc(row.at), "actor": row.actor, "action": row.action,
             "detail": row.detail, "leaf_index": row.leaf_index,
             "leaf_data": leaf_data(row.at, row.actor, row.person_key, row.action, row.detail,
                                    row.nonce)} for row in rows]
