"""The sequencer: puts appended audit entries into the Merkle tree and signs a tree head.

Exactly one runs at a time. On PostgreSQL each seal is ONE transaction that first takes
`pg_try_advisory_xact_lock` (a transaction-level advisory lock: released by the commit, the
rollback, or the server when the session dies, so a killed sequencer never leaves it held);
a second sequencer finds it held and raises `LockHeld` (the CLI says so; `--follow` and the
service's thread just try again next time). On SQLite the seal's transaction is `BEGIN
IMMEDIATE` (service/store/tables.py), which serialises it with every other writer.

Inside that transaction: read the latest head and the frontier (the perfect subtrees of the
tree's right edge), take the oldest `batch` entries off the queue `audit_unsealed` (one
`DELETE … RETURNING` of their ids and leaf hashes), give them leaf indexes from the tree's
size on in id order, write every node above the leaves they complete (level 0 is the entries'
own `leaf_hash`, not stored twice) and the `(leaf_index, entry_id)` of each
leaf into `audit_leaves` (PostgreSQL: binary COPY), insert the signed head, commit. The wide
`audit_entries` rows are never read nor updated (an UPDATE of them was most of a seal's cost:
a new version of the row and of its index entries per entry). Nodes are only ever written
once complete, so a seal adds rows and changes no node. Killed anywhere before the commit,
nothing of the seal exists (the queue rows come back with the rollback) and the next one does
it again.

The seal's transaction commits with the server's `synchronous_commit` (on), deliberately: a
committed head is visible at once to the API, which may publish it before an asynchronous
commit reached the disk; a crash then loses it, the entries go back to the queue, and the next
seal may sign a different root for the same size (new appends interleave differently): two
signed roots at one size, which auditors rightly call a fork. It would buy nothing anyway: one
WAL flush per batch of 100,000 entries.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select

from service.base.clock import Clock
from service.rights import merkle
from service.rights.transparency import TreeHead, fetch_nodes, signed_head
from service.store.tables import audit_leaves, audit_tree, audit_tree_heads, audit_unsealed

log = logging.getLogger(__name__)

# The advisory lock of the one sequencer: (this constant, the schema's hash). Advisory locks
# are per database, and the log is per schema (each test, each benchmark has its own), so the
# schema is part of the key.
LOCK_CLASS = 0x6F736D61  # "osma"


class LockHeld(RuntimeError):
    """Another sequencer is sealing right now."""


def seal(engine: Engine, signer, *, batch: int = 100_000, max_entries: int | None = None,
         clock: Clock | None = None) -> TreeHead | None:
    """Seal every unsealed entry (at most `max_entries`), `batch` per transaction and signed
    head; the last head written, or None when there was nothing to seal. `signer`: anything
    with `key_id` and `sign(bytes)` (service.base.keys.AuditKeys). Raises `LockHeld` when
    another sequencer holds the lock. `clock`: the service's clock (service.base.clock), which
    dates the heads as it dates the entries, so a page never shows two worlds' times (the wall
    clock in production; the demo city's own in the demo)."""
    last, done = None, 0
    while max_entries is None or done < max_entries:
        take = batch if max_entries is None else min(batch, max_entries - done)
        try:
            head, added = _seal_once(engine, signer, take, clock or Clock())
        except LockHeld:
            if last is None:
                raise
            break  # another sequencer goes on from here
        if head is None:
            break
        last, done = head, done + added
        if added < take:
            break
    return last


def run(engine: Engine, signer, every_seconds: float, stop_event: threading.Event,
        clock: Clock | None = None) -> None:
    """Seal every `every_seconds` until `stop_event` is set (the service's thread, `osmanthus
    audit seal --follow`). Another sequencer's lock or a lost database is logged and waited
    out, never fatal."""
    while not stop_event.is_set():
        try:
            if _anything_unsealed(engine):  # a read, no lock: the idle log costs no writes
                seal(engine, signer, clock=clock)
        except LockHeld:
            pass
        except Exception:  # noqa: BLE001 - a sealing thread must outlive a database restart
            log.exception("sealing the audit log failed; trying again")
        stop_event.wait(every_seconds)


def start(engine: Engine, signer, every_seconds: float,
          clock: Clock | None = None) -> threading.Event:
    """`run` in a daemon thread (one per service worker; the lock makes one win each time);
    setting the returned event stops it."""
    stop = threading.Event()
    threading.Thread(target=run, args=(engine, signer, every_seconds, stop, clock),
                     name="osmanthus-audit-sealer", daemon=True).start()
    return stop


def _anything_unsealed(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(audit_unsealed.c.id).limit(1)).first() is not None


def _before_commit(connection: Connection) -> None:
    """Nothing; a test stands in here to kill a seal with everything but the commit done."""


def _seal_once(engine: Engine, signer, take: int,
               clock: Clock) -> tuple[TreeHead | None, int]:
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if postgres and not connection.exec_driver_sql(
                f"SELECT pg_try_advisory_xact_lock({LOCK_CLASS}, "
                "hashtext(current_schema()))").scalar_one():
            raise LockHeld("another sequencer is sealing the audit log")
        previous = connection.execute(
            select(audit_tree_heads.c.tree_size, audit_tree_heads.c.timestamp)
            .order_by(audit_tree_heads.c.tree_size.desc()).limit(1)).first()
        size = previous.tree_size if previous else 0
        if postgres:  # the driver's binary rows: bytea as bytes, no per-row SQLAlchemy work
            found = sorted(connection.connection.dbapi_connection.cursor(binary=True).execute(
                "DELETE FROM audit_unsealed WHERE id IN (SELECT id FROM audit_unsealed "
                "ORDER BY id LIMIT %s) RETURNING id, leaf_hash", (int(take),)).fetchall())
        else:
            found = _take_sqlite(connection, take)
        if not found:
            return None, 0
        frontier_keys = merkle.perfect_nodes(0, size)
        stored = fetch_nodes(connection, set(frontier_keys))
        if len(stored) != len(frontier_keys):
            raise RuntimeError(f"the audit tree lacks frontier nodes of size {size}: run "
                               "`osmanthus audit verify`")
        compact = merkle.CompactRange(size, [stored[key] for key in frontier_keys])
        ids = [row[0] for row in found]
        levels, idxs, hashes = compact.extend([bytes(row[1]) for row in found])
        now_ms = int(clock.now().timestamp() * 1000)
        head = signed_head(signer, compact.size, compact.root(),
                           max(now_ms, previous.timestamp if previous else 0))
        if postgres:
            _write_postgres(connection, size, ids, levels, idxs, hashes)
        else:
            _write_sqlite(connection, size, ids, levels, idxs, hashes)
        connection.execute(insert(audit_tree_heads).values(
            tree_size=head.tree_size, root_hash=head.root_hash, timestamp=head.timestamp_ms,
            key_id=head.key_id, signature=head.signature))
        _before_commit(connection)
    log.info("sealed %d audit entries: tree size %d at %s", len(ids), head.tree_size,
             dt.datetime.fromtimestamp(head.timestamp_ms / 1000, dt.UTC).isoformat())
    return head, len(ids)


def _write_postgres(connection: Connection, size: int, ids: list[int], levels: list[int],
                    idxs: list[int], hashes: list[bytes]) -> None:
    cursor = connection.connection.dbapi_connection.cursor()
    with cursor.copy("COPY audit_tree (level, idx, hash) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int2", "int8", "bytea"])
        write = copy.write_row
        for row in zip(levels, idxs, hashes, strict=True):
            if row[0]:  # level 0 is the entries' own leaf hashes: not stored twice
                write(row)
    with cursor.copy("COPY audit_leaves (leaf_index, entry_id) FROM STDIN (FORMAT BINARY)"
                     ) as copy:
        copy.set_types(["int8", "int8"])
        write = copy.write_row
        for n, entry in enumerate(ids, start=size):
            write((n, entry))


def _write_sqlite(connection: Connection, size: int, ids: list[int], levels: list[int],
                  idxs: list[int], hashes: list[bytes]) -> None:
    nodes = [{"level": level, "idx": idx, "hash": h}
             for level, idx, h in zip(levels, idxs, hashes, strict=True) if level]
    if nodes:
        connection.execute(insert(audit_tree), nodes)
    connection.execute(insert(audit_leaves), [{"leaf_index": size + n, "entry_id": entry}
                                              for n, entry in enumerate(ids)])


def _take_sqlite(connection: Connection, take: int) -> list:
    """SQLite's `DELETE … RETURNING` has no ORDER BY/LIMIT: read the oldest, then delete
    them (the transaction is `BEGIN IMMEDIATE`: nobody writes in between)."""
    q = audit_unsealed
    found = connection.execute(select(q.c.id, q.c.leaf_hash).order_by(q.c.id)
                               .limit(take)).all()
    if found:
        connection.execute(delete(q).where(q.c.id == bindparam("entry")),
                           [{"entry": row[0]} for row in found])
    return found
