"""the audit log becomes a Merkle log with signed tree heads (issue 15)

- `audit_entries` (appended without a shared row, never updated), `audit_unsealed` (the
  sequencer's queue: each entry's id and leaf hash, written with it), `audit_leaves` (which
  entry is each leaf), `audit_tree` (every complete perfect subtree above the leaves),
  `audit_tree_heads` (one signed head per seal).
- The old hash chain (`audit_log` + `audit_head`) is verified first, with its link hash
  reimplemented here so this file stands alone; a broken chain is refused, since carrying it
  over would launder the break into a log that verifies. Its rows are copied in seq order
  (each given a nonce and its leaf hash, whose leaf names the person by a salted commitment,
  not the key: the current format), then one `audit_migrated` entry records how many
  rows there were and the old head's hash (none for an empty chain: a new database has
  nothing to carry over), and the old tables are dropped. The next seal
  (`osmanthus audit seal`, or the service's own) signs them all.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

GENESIS = "0" * 64
BATCH = 5_000


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _old_link(prev: str, seq: int, at: dt.datetime, actor, person_key, action, detail) -> str:
    """The old chain's link: SHA-256(previous hash ‖ canonical JSON of the row)."""
    stamp = _utc(at).replace(tzinfo=None).isoformat(timespec="microseconds")
    canonical = json.dumps([seq, stamp, actor, person_key, action, detail], sort_keys=True,
                           ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(prev.encode() + canonical).hexdigest()


def _leaf(at: dt.datetime, actor, person_key, action, detail, nonce: str) -> bytes:
    """The new log's leaf hash (service/rights/audit.py: leaf_data), restated here: the person
    is named by hex SHA-256(nonce bytes ‖ UTF-8 person key), never by the key."""
    person = (None if person_key is None
              else hashlib.sha256(bytes.fromhex(nonce) + person_key.encode()).hexdigest())
    data = json.dumps([_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), actor, person, action,
                       detail, nonce], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(b"\x00" + data.encode()).digest()


class BrokenChain(RuntimeError):
    pass


def _detail(value):
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    entries = op.create_table(
        "audit_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
                  nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_entries_person_key", "audit_entries", ["person_key"])
    op.create_table(
        "audit_unsealed",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_leaves",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.PrimaryKeyConstraint("leaf_index"),
        sa.UniqueConstraint("entry_id"),
    )
    op.create_table(
        "audit_tree",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    _carry_over(op.get_bind(), entries)
    op.drop_index("ix_audit_log_person_key", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("audit_head")


def _carry_over(bind, entries: sa.Table) -> None:
    """Verify the old chain while copying it (one pass); refuse the whole migration, which
    then rolls back, at its first broken link."""
    old = sa.table("audit_log", sa.column("seq", sa.Integer()),
                   sa.column("at", sa.DateTime(timezone=True)), sa.column("actor"),
                   sa.column("person_key"), sa.column("action"), sa.column("detail", sa.JSON()),
                   sa.column("prev_hash"), sa.column("hash"))
    prev, expected, batch = GENESIS, 1, []
    result = bind.execute(sa.select(old).order_by(old.c.seq).execution_options(
        yield_per=BATCH))
    for row in result:
        detail = _detail(row.detail)
        if row.seq != expected:
            raise BrokenChain(f"audit_log row {expected} is missing: refusing to migrate a "
                              "broken chain (restore it from a backup first)")
        if row.prev_hash != prev or _old_link(prev, row.seq, row.at, row.actor, row.person_key,
                                              row.action, detail) != row.hash:
            raise BrokenChain(f"audit_log row {row.seq} does not verify (altered or relinked):"
                              " refusing to migrate a broken chain (restore it from a backup "
                              "first)")
        nonce = secrets.token_hex(16)
        batch.append({"at": _utc(row.at), "actor": row.actor, "person_key": row.person_key,
                      "action": row.action, "detail": detail, "nonce": nonce,
                      "leaf_hash": _leaf(row.at, row.actor, row.person_key, row.action, detail,
                                         nonce)})
        prev, expected = row.hash, expected + 1
        if len(batch) >= BATCH:
            bind.execute(entries.insert(), batch)
            batch = []
    head = bind.execute(sa.text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
    if head is not None and (head[0] != expected - 1 or head[1] != prev):
        raise BrokenChain(f"audit_log ends at row {expected - 1} but its head says row "
                          f"{head[0]}: rows were removed; refusing to migrate a broken chain")
    if expected == 1:  # a new database: no chain to carry over, nothing to record
        return
    now = dt.datetime.now(dt.UTC)
    detail = {"legacy_rows": expected - 1, "legacy_head": prev}
    nonce = secrets.token_hex(16)
    batch.append({"at": now, "actor": "system:migration", "person_key": None,
                  "action": "audit_migrated", "detail": detail, "nonce": nonce,
                  "leaf_hash": _leaf(now, "system:migration", None, "audit_migrated", detail,
                                     nonce)})
    bind.execute(entries.insert(), batch)
    bind.execute(sa.text("INSERT INTO audit_unsealed (id, leaf_hash) SELECT id, leaf_hash "
                         "FROM audit_entries"))  # all of them wait for the first seal


def downgrade() -> None:
    """Back to a hash chain over the entries in id order (the Merkle tree and its heads are
    dropped: a downgrade gives up what they proved)."""
    bind = op.get_bind()
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    log = op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_log_person_key", "audit_log", ["person_key"])
    prev, seq, batch = GENESIS, 0, []
    new = sa.table("audit_entries", sa.column("id"), sa.column("at", sa.DateTime(timezone=True)),
                   sa.column("actor"), sa.column("person_key"), sa.column("action"),
                   sa.column("detail", sa.JSON()))
    rows = bind.execute(sa.select(new.c.at, new.c.actor, new.c.person_key, new.c.action,
                                  new.c.detail).order_by(new.c.id))
    for row in rows:
        seq += 1
        detail = _detail(row.detail)
        digest = _old_link(prev, seq, row.at, row.actor, row.person_key, row.action, detail)
        batch.append({"seq": seq, "at": _utc(row.at), "actor": row.actor,
                      "person_key": row.person_key, "action": row.action, "detail": detail,
                      "prev_hash": prev, "hash": digest})
        prev = digest
    if batch:
        bind.execute(log.insert(), batch)
    bind.execute(head.insert(), [{"id": 1, "seq": seq, "hash": prev}])
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_tree")
    op.drop_table("audit_leaves")
    op.drop_table("audit_unsealed")
    op.drop_index("ix_audit_entries_person_key", table_name="audit_entries")
    op.drop_table("audit_entries")
