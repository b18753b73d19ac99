"""The append-only, hash-chained audit log of every read of a person's data by someone else.

Each row's hash is SHA-256 over the previous row's hash and the row's own canonical JSON, so
altering, removing or reordering any row breaks every link after it. The chain's head lives in
a one-row table that an append locks, so concurrent appends form one chain, never a fork.
`verify` walks the chain and names the first broken link.

Two ways to append, one chain:
- `append` / `append_many` run inside the caller's transaction and lock the head row until it
  commits (disputes, consents, reviews: the row belongs to the caller's own change).
- `append_committed` appends on its own and has committed when it returns (partners'
  decisions, the hot path). On PostgreSQL it holds no lock across round trips: it reads the
  head (or takes the one its caller read in the same round trip as its own query), computes
  the links, then writes the rows and moves the head in ONE statement that
  applies only if the head is still where it was read (a compare-and-swap; the statement is
  its own transaction, so rows and head commit together or not at all). If another writer
  moved the head meanwhile, nothing was written and it reads the head again; after a few
  lost races it takes the lock like `append_many`, so it always finishes. The locking path
  cost a decision BEGIN, SELECT … FOR UPDATE, INSERT, UPDATE and COMMIT — five round trips,
  four of them with every other decision waiting on the lock; this costs two, and a wait only
  for the few microseconds the statement itself runs. SQLite (one writer at a time anyway)
  uses the locking path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

from service.store.tables import audit_head, audit_log, autocommit

GENESIS = "0" * 64


def _canonical(seq: int, at: dt.datetime, actor: str, person_key: str | None, action: str,
               detail: dict) -> bytes:
    stamp = at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    return json.dumps([seq, stamp, actor, person_key, action, detail], sort_keys=True,
                      ensure_ascii=False, separators=(",", ":")).encode()


def link_hash(prev_hash: str, seq: int, at: dt.datetime, actor: str, person_key: str | None,
              action: str, detail: dict) -> str:
    payload = prev_hash.encode() + _canonical(seq, at, actor, person_key, action, detail)
    return hashlib.sha256(payload).hexdigest()


def append(connection: Connection, *, actor: str, action: str, person_key: str | None = None,
           detail: dict | None = None, at: dt.datetime | None = None) -> int:
    """Append one row inside the caller's transaction; returns its sequence number."""
    entry = {"actor": actor, "action": action, "person_key": person_key, "detail": detail}
    return append_many(connection, [entry], at=at)[0]


def append_many(connection: Connection, entries: list[dict],
                at: dt.datetime | None = None) -> list[int]:
    """Append several rows inside the caller's transaction with one head lock, one multi-row
    insert and one head update (a partner's batch); each entry has `actor`, `action` and
    optionally `person_key` and `detail`. Returns their sequence numbers, in order."""
    if not entries:
        return []
    at = at or dt.datetime.now(dt.UTC)
    head = connection.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).first()
    rows = _linked(head.seq, head.hash, entries, at)
    connection.execute(insert(audit_log), rows)
    connection.execute(update(audit_head).where(audit_head.c.id == 1)
                       .values(seq=rows[-1]["seq"], hash=rows[-1]["hash"]))
    return [row["seq"] for row in rows]


def _linked(seq: int, prev: str, entries: list[dict], at: dt.datetime) -> list[dict]:
    """The rows for `entries` chained on after the head (`seq`, `prev`)."""
    rows = []
    for entry in entries:
        seq += 1
        person_key, detail = entry.get("person_key"), entry.get("detail") or {}
        digest = link_hash(prev, seq, at, entry["actor"], person_key, entry["action"], detail)
        rows.append({"seq": seq, "at": at, "actor": entry["actor"], "person_key": person_key,
                     "action": entry["action"], "detail": detail, "prev_hash": prev,
                     "hash": digest})
        prev = digest
    return rows


SWAP_TRIES = 8  # lost races before `append_committed` takes the lock instead


def append_committed(engine: Engine, entries: list[dict], at: dt.datetime | None = None,
                     connection: Connection | None = None,
                     head: tuple[int, str] | None = None) -> list[int]:
    """Append `entries` on their own and commit before returning (see the module's doc).

    `connection`, if given, must come from `autocommit(engine)` (it saves a checkout).
    `head`: the head `(seq, hash)` as the caller read it (`head_sql`), tried first: when no
    one has appended since, that saves reading it; when someone has, it only costs a retry."""
    if not entries:
        return []
    at = at or dt.datetime.now(dt.UTC)
    if engine.dialect.name == "postgresql":
        if connection is None:
            with autocommit(engine).connect() as own:
                found = _swap_in(own, entries, at, head)
        else:
            found = _swap_in(connection, entries, at, head)
        if found is not None:
            return found
    with engine.begin() as locked:
        return append_many(locked, entries, at=at)


# PostgreSQL only, sent through the driver itself (psycopg): this is the hot path, and
# SQLAlchemy's per-statement work cost more than the statements. The rows travel as ONE JSON
# document (json_to_recordset), so the text is the same for one row or a thousand (prepared
# once by psycopg) and the rows are encoded by the json module in C, not escaped element by
# element as text arrays are.
_HEAD_SQL = "SELECT seq, hash FROM audit_head WHERE id = 1"
_SWAP_SQL = (
    "WITH moved AS (UPDATE audit_head SET seq = %(new_seq)s, hash = %(new_hash)s "
    "WHERE id = 1 AND seq = %(old_seq)s AND hash = %(old_hash)s RETURNING id), "
    "written AS (INSERT INTO audit_log (seq, at, actor, person_key, action, detail, prev_hash, "
    "hash) SELECT v.seq, %(at)s::timestamptz, v.actor, v.person_key, v.action, v.detail, "
    "v.prev_hash, v.hash FROM json_to_recordset(%(rows)s::json) "
    "AS v(seq integer, actor text, person_key text, action text, detail json, prev_hash text, "
    "hash text) WHERE EXISTS (SELECT 1 FROM moved) RETURNING 1) "
    "SELECT (SELECT count(*) FROM written), seq, hash FROM audit_head WHERE id = 1")
# The last SELECT sees the head as the statement found it: after a lost race that is where
# the chain now ends, so the retry needs no separate read of the head (a round trip saved on
# about one single decision in three when two API workers append at once, bench/RESULTS.md).


def driver_connection(connection: Connection):
    """The driver's own connection under a SQLAlchemy one (same session, same transaction
    state), for the few hand-written PostgreSQL statements on the hot path."""
    return connection.connection.dbapi_connection


def head_sql() -> str:
    """A subquery yielding the chain's head `(seq, hash)`, for a caller to read it in the same
    round trip as its own query and hand it to `append_committed(head=...)` (PostgreSQL)."""
    return "(SELECT seq, hash FROM audit_head WHERE id = 1)"


def _swap_in(connection: Connection, entries: list[dict], at: dt.datetime,
             head: tuple[int, str] | None) -> list[int] | None:
    if not driver_connection(connection).autocommit:
        raise ValueError("append_committed needs an autocommit connection (audit.autocommit)")
    for _ in range(SWAP_TRIES):
        if head is None:
            head = tuple(driver_connection(connection).execute(_HEAD_SQL).fetchone())
        rows = _linked(head[0], head[1], entries, at)
        found = _swap(connection, head[0], head[1], rows)
        if found is None:
            return [row["seq"] for row in rows]
        # the head as the statement saw it; the same one means a writer committed while the
        # statement waited, after its snapshot: read the head afresh then
        head = None if found == head else found
    return None


def _swap(connection: Connection, seq: int, prev: str,
          rows: list[dict]) -> tuple[int, str] | None:
    """Insert `rows` and move the head to the last of them, in one statement, only if the
    head is still (`seq`, `prev`): None if it was (and so everything was written), otherwise
    the head as the statement found it, to chain onto next."""
    document = json.dumps([{"seq": row["seq"], "actor": row["actor"],
                            "person_key": row["person_key"], "action": row["action"],
                            "detail": row["detail"], "prev_hash": row["prev_hash"],
                            "hash": row["hash"]} for row in rows])
    params = {"old_seq": seq, "old_hash": prev, "new_seq": rows[-1]["seq"],
              "new_hash": rows[-1]["hash"], "at": rows[0]["at"], "rows": document}
    written, head_seq, head_hash = driver_connection(connection).execute(
        _SWAP_SQL, params).fetchone()
    return None if written == len(rows) else (head_seq, head_hash)


@dataclass
class Verdict:
    rows: int
    broken_at: int | None = None
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(engine: Engine, batch: int = 10_000) -> Verdict:
    """Walk the chain from the start; the first row whose link does not hold is reported."""
    prev, expected_seq, rows = GENESIS, 1, 0
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=batch).execute(
            select(audit_log).order_by(audit_log.c.seq)
        )
        for row in result:
            rows += 1
            if row.seq != expected_seq:
                return Verdict(rows, expected_seq, f"row {expected_seq} is missing")
            if row.prev_hash != prev:
                return Verdict(rows, row.seq, "does not link to the row before it")
            at = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
            if link_hash(prev, row.seq, at, row.actor, row.person_key, row.action,
                         row.detail) != row.hash:
                return Verdict(rows, row.seq, "its content was altered")
            prev, expected_seq = row.hash, expected_seq + 1
        head = connection.execute(select(audit_head.c.seq, audit_head.c.hash)).first()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
        return Verdict(rows, expected_seq, "rows after this one were removed")
    return Verdict(rows)


def entries_for(engine: Engine, person_key: str, limit: int = 200, *,
                before: int | None = None) -> list[dict]:
    """A person's own access log: who asked about them, when, and the answer, newest first
    (`before`: only entries older than that seq, to page back through all of it)."""
    query = (select(audit_log.c.seq, audit_log.c.at, audit_log.c.actor, audit_log.c.action,
                    audit_log.c.detail)
             .where(audit_log.c.person_key == person_key))
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(audit_log.c.seq.desc()).limit(limit))
        return [dict(row._mapping) for row in rows]
