"""The append-only, hash-chained audit log of every read of a person's data by someone else.

Each row's hash is SHA-256 over the previous row's hash and the row's own canonical JSON, so
altering, removing or reordering any row breaks every link after it. The chain's head lives in
a one-row table that an append locks, so concurrent appends form one chain, never a fork.
`verify` walks the chain and names the first broken link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

from service.store import audit_head, audit_log

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
    seq, prev, rows = head.seq, head.hash, []
    for entry in entries:
        seq += 1
        person_key, detail = entry.get("person_key"), entry.get("detail") or {}
        digest = link_hash(prev, seq, at, entry["actor"], person_key, entry["action"], detail)
        rows.append({"seq": seq, "at": at, "actor": entry["actor"], "person_key": person_key,
                     "action": entry["action"], "detail": detail, "prev_hash": prev,
                     "hash": digest})
        prev = digest
    connection.execute(insert(audit_log), rows)
    connection.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))
    return [row["seq"] for row in rows]


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


def entries_for(engine: Engine, person_key: str, limit: int = 200) -> list[dict]:
    """A person's own access log: who asked about them, when, and the answer."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(audit_log.c.seq, audit_log.c.at, audit_log.c.actor, audit_log.c.action,
                   audit_log.c.detail)
            .where(audit_log.c.person_key == person_key)
            .order_by(audit_log.c.seq.desc()).limit(limit)
        )
        return [dict(row._mapping) for row in rows]
