"""Feeds into the store: validate, quarantine, upsert — idempotent and resumable.

A feed is identified by the SHA-256 of its bytes. Its good rows are upserted by `record_id` in
chunks, each its own transaction, so a feed cut off halfway is finished by sending it again:
rows already stored are updated in place (never duplicated), rows not yet stored are added.
Quarantined rows are keyed by (feed, row number), so they are never duplicated either.

The database going away mid-feed (a PostgreSQL restart or fail-over, a dropped connection) is
retried: every step is its own idempotent transaction, so the step that failed is simply run
again, with a growing pause, for up to `RETRY_SECONDS` (30 s: a restart or a fail-over takes a
few seconds; longer than that is an outage an operator should see). Past that, `IngestError`
says how far the feed got; the feed stays in state `receiving` and sending it again finishes
it. A chunk whose commit succeeded but whose acknowledgement was lost is re-sent unchanged, so
its people may be missing from `changed_persons` (re-score them with `osmanthus rescore`).

The store owns the dispute and repair state of a record: a feed that re-sends a record updates
its source columns and never clears a dispute, nor a repair the store has recorded. A record
whose dispute was upheld (removed or corrected after review) is never brought back or
overwritten by a feed that still carries the old version: such rows are counted as `overruled`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import InterfaceError, OperationalError

from features.records import SCHEMAS, Source, record_schema
from features.validate import validate_feed
from service.store import RECORD_TABLES, disputes, feeds, insert_for, quarantine

log = logging.getLogger(__name__)
CHUNK_ROWS = 5_000
RETRY_SECONDS = 30.0  # how long a lost database is waited for before the ingest gives up
TRANSIENT = (OperationalError, InterfaceError)  # connection lost or refused, server shutting down


class IngestError(RuntimeError):
    """The store could not be reached for long enough; the feed is left `receiving` and sending
    it again finishes it. The message is safe to print (no SQL, no row values)."""


def _retrying(step: Callable[[], object], what: str, deadline: float) -> object:
    """Run one idempotent database step, again after a pause while the database is away."""
    pause = 0.1
    while True:
        try:
            return step()
        except TRANSIENT as error:
            left = deadline - time.monotonic()
            if left <= 0 or not _transient(error):
                raise
            log.warning("database unavailable while %s (%s); retrying in %.1f s",
                        what, _cause(error), min(pause, left))
            time.sleep(min(pause, left))
            pause = min(pause * 2, 2.0)


def _transient(error: Exception) -> bool:
    """Worth waiting out: the server went away or is busy. SQLite's OperationalError also
    covers mistakes (no such table), which only its lock messages are not."""
    original = getattr(error, "orig", None)
    if type(original).__module__ == "sqlite3":
        return any(word in str(original) for word in ("locked", "busy"))
    return True


def _cause(error: Exception) -> str:
    """A one-line cause: the driver's error class and first line, never SQL or parameters."""
    original = getattr(error, "orig", None) or error
    first = (str(original).strip().splitlines() or [""])[0][:160]
    return f"{type(original).__name__}: {first}" if first else type(original).__name__


@dataclass
class IngestSummary:
    feed_id: str
    source: str
    rows_read: int
    rows_stored: int
    rows_quarantined: int
    changed_persons: set[str] = field(default_factory=set)
    rows_overruled: int = 0  # good rows not stored: their record's dispute was upheld

    def lines(self) -> list[str]:
        return [
            f"feed {self.feed_id[:12]} ({self.source}): {self.rows_read} rows read",
            f"  stored:      {self.rows_stored}",
            f"  quarantined: {self.rows_quarantined}",
            f"  overruled:   {self.rows_overruled} (records corrected or removed on dispute)",
            f"  people whose records changed: {len(self.changed_persons)}",
        ]


def feed_id_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _upsert_records(engine: Engine, source: Source, rows: list[dict]) -> set[str]:
    """Insert or update rows by record_id; return the people whose stored records changed."""
    table = RECORD_TABLES[source]
    statement = insert_for(engine, table)
    feed_columns = [c for c in SCHEMAS[source].column_names if c != "resident_id"]
    feed_columns += ["person_key"]
    updates = {name: statement.excluded[name] for name in feed_columns if name != "repaired_on"}
    if "repaired_on" in feed_columns:  # a feed may report a repair, never undo the store's
        from sqlalchemy import func

        updates["repaired_on"] = func.coalesce(statement.excluded.repaired_on, table.c.repaired_on)
    updates["feed_id"] = statement.excluded.feed_id
    updates["updated_at"] = statement.excluded.updated_at
    changed = or_(*[table.c[name].is_distinct_from(statement.excluded[name]) for name in feed_columns])
    statement = statement.on_conflict_do_update(
        index_elements=["record_id"], set_=updates, where=changed
    ).returning(table.c.person_key)
    with engine.begin() as connection:
        result = connection.execute(statement, rows)
        return {row[0] for row in result}


def _store_quarantine(engine: Engine, feed_id: str, source: Source, frame: pl.DataFrame) -> None:
    if frame.is_empty():
        return
    rows = frame.select("row_number", "field", "reason", "problems").with_columns(
        pl.lit(feed_id).alias("feed_id"), pl.lit(source.value).alias("source")
    ).to_dicts()
    statement = insert_for(engine, quarantine).on_conflict_do_nothing(
        index_elements=["feed_id", "row_number"]
    )
    with engine.begin() as connection:
        for start in range(0, len(rows), CHUNK_ROWS):
            connection.execute(statement, rows[start:start + CHUNK_ROWS])


def _upheld(engine: Engine, source: Source, record_ids: list[str]) -> set[str]:
    """Of these records, those whose dispute was upheld: the store's version stands."""
    if not record_ids:
        return set()
    with engine.connect() as connection:
        rows = connection.execute(
            select(disputes.c.record_id).where(
                disputes.c.source == source.value, disputes.c.state == "upheld",
                disputes.c.record_id.in_(record_ids))
        )
        return {row[0] for row in rows}


def _record_feed(engine: Engine, values: dict) -> None:
    statement = insert_for(engine, feeds)
    statement = statement.on_conflict_do_update(
        index_elements=["feed_id"],
        set_={k: statement.excluded[k] for k in values if k != "feed_id"},
    )
    with engine.begin() as connection:
        connection.execute(statement, [values])


def ingest_feed(
    engine: Engine,
    path: str | Path,
    source: Source | str,
    *,
    on_chunk: Callable[[int, int], None] | None = None,
    retry_seconds: float | None = None,
) -> IngestSummary:
    """Validate a feed and store it. Safe to repeat: the result is the same as sending it once.

    A lost database is waited for up to `retry_seconds` (default `RETRY_SECONDS`) per step;
    then `IngestError` is raised with the feed left `receiving`."""
    path, source = Path(path), Source(source)
    feed_id = feed_id_of(path)
    result = validate_feed(path, source)
    good, bad = result.records, result.quarantine
    wait = RETRY_SECONDS if retry_seconds is None else retry_seconds
    now = dt.datetime.now(dt.UTC)
    feed_row = {
        "feed_id": feed_id, "source": source.value, "filename": path.name, "received_at": now,
        "rows_read": good.height + bad.height, "rows_stored": good.height,
        "rows_quarantined": bad.height, "status": "receiving",
    }
    stored = good.select(list(record_schema(source))).with_columns(
        pl.lit(feed_id).alias("feed_id"), pl.lit(now).alias("updated_at")
    )
    changed: set[str] = set()
    overruled = done = 0

    def step(run: Callable[[], object], what: str) -> object:
        return _retrying(run, what, time.monotonic() + wait)

    try:
        step(lambda: _record_feed(engine, feed_row), "recording the feed")
        step(lambda: _store_quarantine(engine, feed_id, source, bad), "storing its quarantine")
        for start in range(0, stored.height, CHUNK_ROWS):
            chunk = stored.slice(start, CHUNK_ROWS).to_dicts()
            ids = [row["record_id"] for row in chunk]
            upheld = step(lambda ids=ids: _upheld(engine, source, ids), "reading disputes")
            if upheld:
                chunk = [row for row in chunk if row["record_id"] not in upheld]
                overruled += len(upheld)
            if chunk:
                changed |= step(lambda chunk=chunk: _upsert_records(engine, source, chunk),
                                f"storing rows {start + 1}–{start + len(chunk)}")
            done = min(start + CHUNK_ROWS, stored.height)
            if on_chunk:
                on_chunk(done, stored.height)
        step(lambda: _record_feed(engine, {**feed_row, "status": "complete"}),
             "marking the feed complete")
    except TRANSIENT as error:
        if not _transient(error):
            raise
        message = (f"feed {feed_id[:12]} ({source.value}) not finished: the database was "
                   f"unavailable for over {wait:g} s after {done:,} of {stored.height:,} good "
                   f"rows were stored ({_cause(error)}). The feed is left 'receiving'; send it "
                   "again to finish it (rows already stored are not duplicated).")
        log.error(message)
        raise IngestError(message) from None
    summary = IngestSummary(feed_id, source.value, good.height + bad.height,
                            good.height - overruled, bad.height, changed, overruled)
    log.info("ingested feed %s (%s): %d stored, %d quarantined, %d people changed",
             feed_id[:12], source.value, good.height, bad.height, len(changed))
    return summary
