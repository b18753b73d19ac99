"""The staged, set-based ingest stores exactly what the row-by-row upsert it replaced stored.

`reference_ingest` below is the previous implementation, kept as the oracle: SQLAlchemy
executemany of dicts, 5,000 rows a chunk, `INSERT … ON CONFLICT DO UPDATE … WHERE (a feed
column IS DISTINCT FROM) RETURNING person_key`, after a per-chunk query for upheld disputes.
Both run the same story on the same backend — a first feed, store-side changes (a repair, an
open dispute, a record removed and one corrected on upheld disputes, a rejected dispute), then
a second feed with changed, identical, new and bad rows — and must leave the same stored rows,
quarantine and feeds, and report the same changed people, overruled and stored counts.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from sqlalchemy import func, or_, select, text

from features.identity import make_resident_id
from features.records import SCHEMAS, Source, record_schema
from features.validate import validate_feed
from model.bundle import sha256_file
from service.store import ingest as ingest_module
from service.store.ingest import ingest_feed
from service.store.tables import RECORD_TABLES, disputes, feeds, insert_for, people, quarantine

PERSONS = [make_resident_id(110101, dt.date(1960 + i, 1 + i % 12, 1 + i % 28), 100 + i)
           for i in range(12)]
FINES = [0.0, 0.1 + 0.2, 1e-7, 200.0, 123456789.123456789, 1e15, 2.5e-300, 1 / 3, 99.99]


def reference_ingest(engine, path, source: Source) -> tuple[set[str], int, int]:
    """The previous implementation (the oracle): returns (changed people, stored, overruled)."""
    result = validate_feed(path, source)
    good, bad = result.records, result.quarantine
    feed_id, now = sha256_file(path), dt.datetime.now(dt.UTC)
    row = {"feed_id": feed_id, "source": source.value, "filename": path.name,
           "received_at": now, "rows_read": good.height + bad.height,
           "rows_stored": good.height, "rows_quarantined": bad.height, "status": "complete"}
    statement = insert_for(engine, feeds)
    statement = statement.on_conflict_do_update(
        index_elements=["feed_id"], set_={k: statement.excluded[k] for k in row if k != "feed_id"})
    with engine.begin() as connection:
        connection.execute(statement, [row])
        if not bad.is_empty():
            rows = bad.select("row_number", "field", "reason", "problems").with_columns(
                pl.lit(feed_id).alias("feed_id"), pl.lit(source.value).alias("source")).to_dicts()
            connection.execute(insert_for(engine, quarantine).on_conflict_do_nothing(
                index_elements=["feed_id", "row_number"]), rows)
    stored = good.select(list(record_schema(source))).with_columns(
        pl.lit(feed_id).alias("feed_id"), pl.lit(now).alias("updated_at"))
    table = RECORD_TABLES[source]
    changed: set[str] = set()
    overruled = 0
    for start in range(0, stored.height, 5_000):
        chunk = stored.slice(start, 5_000).to_dicts()
        with engine.connect() as connection:
            upheld = {r[0] for r in connection.execute(select(disputes.c.record_id).where(
                disputes.c.source == source.value, disputes.c.state == "upheld",
                disputes.c.record_id.in_([r["record_id"] for r in chunk])))}
        chunk = [r for r in chunk if r["record_id"] not in upheld]
        overruled += len(upheld)
        if not chunk:
            continue
        upsert = insert_for(engine, table)
        columns = [c for c in SCHEMAS[source].column_names if c != "resident_id"]
        columns += ["person_key"]
        updates = {n: upsert.excluded[n] for n in columns if n != "repaired_on"}
        if "repaired_on" in columns:
            updates["repaired_on"] = func.coalesce(upsert.excluded.repaired_on, table.c.repaired_on)
        updates["feed_id"] = upsert.excluded.feed_id
        updates["updated_at"] = upsert.excluded.updated_at
        differs = or_(*[table.c[n].is_distinct_from(updates.get(n, upsert.excluded[n]))
                        for n in columns])
        upsert = upsert.on_conflict_do_update(index_elements=["record_id"], set_=updates,
                                              where=differs).returning(table.c.person_key)
        with engine.begin() as connection:
            changed |= {r[0] for r in connection.execute(upsert, chunk)}
    return changed, good.height - overruled, overruled


def first_feed(rng: np.random.Generator, rows: int) -> pl.DataFrame:
    """A penalty feed: several decisions a person, nulls in both optional columns, awkward
    floats (they must survive CSV and COPY bit for bit)."""
    severity = rng.choice(["general", "serious"], rows)
    window = [str(rng.choice([3, 6, 12] if s == "general" else [12, 24, 36]))
              if rng.random() < 0.5 else "" for s in severity]
    decided = [dt.date(2023, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 300, rows)]
    return pl.DataFrame({
        "decision_no": [f"D-{i}" for i in range(rows)],
        "resident_id": [PERSONS[int(p)] for p in rng.integers(0, len(PERSONS), rows)],
        "decided_on": [d.isoformat() for d in decided],
        "category": rng.choice(["traffic", "tax", "market"], rows).tolist(),
        "severity": severity.tolist(),
        "fine": [repr(FINES[int(f)]) for f in rng.integers(0, len(FINES), rows)],
        "window_months": window,
        "repaired_on": [(d + dt.timedelta(days=40)).isoformat() if rng.random() < 0.3 else ""
                        for d in decided],
    })


def second_feed(rng: np.random.Generator, first: pl.DataFrame) -> pl.DataFrame:
    """The same feed again, some rows changed (a fine, a repair reported or withdrawn, a
    window cleared), some identical, new decisions and two bad rows."""
    kept = first
    change = pl.Series(rng.integers(0, 5, kept.height))
    kept = kept.with_columns(
        pl.when(change == 1).then(pl.lit("777.25")).otherwise("fine").alias("fine"),
        pl.when(change == 2).then(pl.lit("")).when(change == 4).then(pl.lit("2024-06-30"))
        .otherwise("repaired_on").alias("repaired_on"),
        pl.when(change == 3).then(pl.lit("")).otherwise("window_months").alias("window_months"),
    )
    new = first_feed(rng, 8).with_columns(pl.format("N-{}", "decision_no").alias("decision_no"))
    bad = new.head(2).with_columns(pl.lit("catastrophic").alias("severity"),
                                   pl.format("B-{}", "decision_no").alias("decision_no"))
    return pl.concat([kept, new, bad])


def store_side_changes(engine) -> None:
    """What the store does between feeds, picked by record_id order so both runs agree."""
    table = RECORD_TABLES[Source.PENALTY]
    with engine.begin() as connection:
        ids = connection.execute(select(table.c.record_id, table.c.person_key)
                                 .order_by(table.c.record_id)).all()
        repaired, opened, removed, corrected, rejected = ids[0], ids[1], ids[2], ids[3], ids[4]
        connection.execute(table.update().where(table.c.record_id == repaired.record_id)
                           .values(repaired_on=dt.date(2024, 9, 1)))
        connection.execute(table.update().where(table.c.record_id == opened.record_id)
                           .values(dispute_opened_on=dt.date(2024, 10, 1)))
        connection.execute(table.delete().where(table.c.record_id == removed.record_id))
        connection.execute(table.update().where(table.c.record_id == corrected.record_id)
                           .values(fine=1.0))
        for n, (victim, state) in enumerate(
                [(removed, "upheld"), (corrected, "upheld"), (rejected, "rejected")]):
            connection.execute(insert_for(engine, people).values(
                person_key=victim.person_key, first_seen=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            ).on_conflict_do_nothing(index_elements=["person_key"]))
            connection.execute(disputes.insert().values(
                dispute_id=f"{n:032x}", person_key=victim.person_key, source="penalty",
                record_id=victim.record_id, statement="not mine", state=state,
                received_on=dt.date(2024, 10, 1), due_on=dt.date(2024, 10, 31)))


def snapshot(engine) -> dict:
    """Everything the ingest wrote, `updated_at` as its rank (which send last changed a row)."""
    table = RECORD_TABLES[Source.PENALTY]
    with engine.connect() as connection:
        records = [r._asdict() for r in connection.execute(select(table).order_by(table.c.record_id))]
        rank = {stamp: n for n, stamp in enumerate(sorted({r["updated_at"] for r in records}))}
        for r in records:
            r["updated_at"] = rank[r["updated_at"]]
        held = [tuple(r) for r in connection.execute(
            select(quarantine.c.feed_id, quarantine.c.source, quarantine.c.row_number,
                   quarantine.c.field, quarantine.c.reason, quarantine.c.problems)
            .order_by(quarantine.c.feed_id, quarantine.c.row_number))]
        sent = [tuple(r) for r in connection.execute(
            select(feeds.c.feed_id, feeds.c.rows_read, feeds.c.rows_stored,
                   feeds.c.rows_quarantined, feeds.c.status).order_by(feeds.c.feed_id))]
    return {"records": records, "quarantine": held, "feeds": sent}


def empty(engine) -> None:
    with engine.begin() as connection:
        for name in ("disputes", "people", "quarantine", "feeds", RECORD_TABLES[Source.PENALTY].name):
            connection.execute(text(f"DELETE FROM {name}"))


@pytest.mark.parametrize(("seed", "chunk"), [(1, 200_000), (2, 7), (3, 1)])
def test_the_staged_ingest_stores_exactly_what_the_row_by_row_upsert_did(
        engine, tmp_path, monkeypatch, seed, chunk):
    rng = np.random.default_rng(seed)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    first = first_feed(rng, 60)
    first.write_csv(one)
    second_feed(rng, first).write_csv(two)
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", chunk)

    fast = [ingest_feed(engine, one, Source.PENALTY)]
    store_side_changes(engine)
    fast += [ingest_feed(engine, two, Source.PENALTY), ingest_feed(engine, two, Source.PENALTY)]
    fast_rows = snapshot(engine)
    empty(engine)
    slow = [reference_ingest(engine, one, Source.PENALTY)]
    store_side_changes(engine)
    slow += [reference_ingest(engine, two, Source.PENALTY),
             reference_ingest(engine, two, Source.PENALTY)]
    slow_rows = snapshot(engine)

    assert [(s.changed_persons, s.rows_stored, s.rows_overruled) for s in fast] == slow
    assert fast[1].rows_overruled == 2 and fast[1].changed_persons, "the story exercised it"
    # sent again, nothing changes: not even a record whose repair the store holds and the
    # feed omits (its `repaired_on` stays, so its person is not re-scored for nothing)
    assert fast[2].changed_persons == set()
    assert fast_rows == slow_rows
    assert len(fast_rows["quarantine"]) == 2


def test_a_chunk_of_only_overruled_rows_stores_nothing_and_counts_them(engine, tmp_path,
                                                                       monkeypatch):
    rng = np.random.default_rng(4)
    path = tmp_path / "one.csv"
    first_feed(rng, 10).write_csv(path)
    ingest_feed(engine, path, Source.PENALTY)
    table = RECORD_TABLES[Source.PENALTY]
    with engine.begin() as connection:
        victims = connection.execute(select(table.c.record_id, table.c.person_key)).all()
        for n, victim in enumerate(victims):
            connection.execute(insert_for(engine, people).values(
                person_key=victim.person_key, first_seen=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            ).on_conflict_do_nothing(index_elements=["person_key"]))
            connection.execute(disputes.insert().values(
                dispute_id=f"{n:032x}", person_key=victim.person_key, source="penalty",
                record_id=victim.record_id, statement="not mine", state="upheld",
                received_on=dt.date(2024, 10, 1), due_on=dt.date(2024, 10, 31)))
        connection.execute(table.delete())
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 3)
    summary = ingest_feed(engine, path, Source.PENALTY)
    assert (summary.rows_overruled, summary.rows_stored, summary.changed_persons) == (10, 0, set())
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_a_lost_connection_inside_the_driver_is_waited_for_like_any_other(engine, tmp_path,
                                                                           monkeypatch):
    """Staging goes through the raw driver cursor (COPY, executemany): its errors must reach
    the retry as SQLAlchemy's, or a restart mid-COPY would stop the ingest at once."""
    import sqlite3

    import psycopg

    rng = np.random.default_rng(5)
    path = tmp_path / "one.csv"
    first_feed(rng, 10).write_csv(path)
    lost = (psycopg.OperationalError("server closed the connection unexpectedly")
            if engine.dialect.name == "postgresql" else sqlite3.OperationalError("database is locked"))
    calls = []

    def flaky(real):
        def stage(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise lost
            return real(*args, **kwargs)
        return stage

    monkeypatch.setattr(ingest_module, "copy_csv", flaky(ingest_module.copy_csv))
    monkeypatch.setattr(ingest_module, "sqlite_insert", flaky(ingest_module.sqlite_insert))
    summary = ingest_feed(engine, path, Source.PENALTY, retry_seconds=10)
    assert len(calls) == 2 and summary.rows_stored == 10
    with engine.connect() as connection:
        stored = select(func.count()).select_from(RECORD_TABLES[Source.PENALTY])
        assert connection.execute(stored).scalar_one() == 10
