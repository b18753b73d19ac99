"""Ingest: good rows stored once, bad rows quarantined with reasons, resumable, no raw IDs."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from sqlalchemy import func, select, text

from features.identity import make_resident_id
from features.records import Source
from service.store import ingest as ingest_module
from service.store.ingest import ingest_feed
from service.store.tables import RECORD_TABLES, feeds, quarantine

IDS = [make_resident_id(110101, dt.date(1980 + i, 1 + i % 12, 1 + i), 100 + i) for i in range(6)]


def penalty_feed(path, rows=None):
    rows = rows or [
        {"decision_no": f"D-{i}", "resident_id": IDS[i], "decided_on": "2024-03-01",
         "category": "traffic", "severity": "general", "fine": "200", "window_months": "",
         "repaired_on": ""}
        for i in range(6)
    ]
    pl.DataFrame(rows).write_csv(path)
    return path


def count(engine, table):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_feed_lands_once_however_often_it_is_sent(engine, tmp_path):
    feed = penalty_feed(tmp_path / "penalty.csv")
    first = ingest_feed(engine, feed, Source.PENALTY)
    second = ingest_feed(engine, feed, Source.PENALTY)
    assert first.rows_stored == 6 and count(engine, RECORD_TABLES[Source.PENALTY]) == 6
    assert len(first.changed_persons) == 6
    assert second.changed_persons == set(), "an unchanged record is not a change"
    assert count(engine, feeds) == 1


def test_bad_rows_are_quarantined_and_good_rows_still_land(engine, tmp_path):
    rows = [
        {"decision_no": "D-1", "resident_id": IDS[0], "decided_on": "2024-03-01",
         "category": "traffic", "severity": "general", "fine": "200", "window_months": "",
         "repaired_on": ""},
        {"decision_no": "D-2", "resident_id": IDS[1][:17] + ("0" if IDS[1][17] != "0" else "1"),
         "decided_on": "2024-03-01", "category": "traffic", "severity": "general",
         "fine": "200", "window_months": "", "repaired_on": ""},
        {"decision_no": "D-3", "resident_id": IDS[2], "decided_on": "2024-03-01",
         "category": "traffic", "severity": "catastrophic", "fine": "200", "window_months": "",
         "repaired_on": ""},
    ]
    summary = ingest_feed(engine, penalty_feed(tmp_path / "p.csv", rows), Source.PENALTY)
    assert (summary.rows_stored, summary.rows_quarantined) == (1, 2)
    with engine.connect() as connection:
        bad = connection.execute(
            select(quarantine.c.row_number, quarantine.c.field).order_by(quarantine.c.row_number)
        ).all()
    assert [tuple(row) for row in bad] == [(2, "resident_id"), (3, "severity")]


def test_a_feed_cut_off_halfway_is_finished_by_sending_it_again(engine, tmp_path, monkeypatch):
    feed = penalty_feed(tmp_path / "penalty.csv")
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 2)
    real = ingest_module._upsert_records
    calls = {"n": 0}

    def dies_on_the_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_upsert_records", dies_on_the_second_chunk)
    with pytest.raises(ConnectionError):
        ingest_feed(engine, feed, Source.PENALTY)
    assert count(engine, RECORD_TABLES[Source.PENALTY]) == 2
    monkeypatch.setattr(ingest_module, "_upsert_records", real)
    ingest_feed(engine, feed, Source.PENALTY)
    assert count(engine, RECORD_TABLES[Source.PENALTY]) == 6


def test_a_resent_record_keeps_its_dispute(engine, tmp_path):
    feed = penalty_feed(tmp_path / "penalty.csv")
    ingest_feed(engine, feed, Source.PENALTY)
    table = RECORD_TABLES[Source.PENALTY]
    with engine.begin() as connection:
        connection.execute(table.update().values(dispute_opened_on=dt.date(2024, 5, 1)))
    rows = pl.read_csv(feed).with_columns(pl.lit("500").alias("fine"))
    rows.write_csv(tmp_path / "penalty2.csv")
    summary = ingest_feed(engine, tmp_path / "penalty2.csv", Source.PENALTY)
    assert len(summary.changed_persons) == 6
    with engine.connect() as connection:
        stored = connection.execute(select(table.c.fine, table.c.dispute_opened_on)).all()
    assert {tuple(row) for row in stored} == {(500.0, dt.date(2024, 5, 1))}


def test_no_raw_id_number_is_stored_anywhere(engine, tmp_path, caplog):
    rows = [{"decision_no": "D-9", "resident_id": IDS[3][:10], "decided_on": "2024-03-01",
             "category": "traffic", "severity": "general", "fine": "1", "window_months": "",
             "repaired_on": ""}]
    ingest_feed(engine, penalty_feed(tmp_path / "a.csv"), Source.PENALTY)
    ingest_feed(engine, penalty_feed(tmp_path / "b.csv", rows), Source.PENALTY)
    dump = []
    with engine.connect() as connection:
        for table in [*RECORD_TABLES.values(), feeds, quarantine]:
            for row in connection.execute(text(f"SELECT * FROM {table.name}")):
                dump.extend(str(value) for value in row)
    haystack = "\n".join(dump) + caplog.text
    for raw in IDS + [IDS[3][:10]]:
        assert raw not in haystack


def test_a_record_removed_on_an_upheld_dispute_never_comes_back(engine, tmp_path):
    from service.store.tables import disputes, people

    feed = penalty_feed(tmp_path / "penalty.csv")
    ingest_feed(engine, feed, Source.PENALTY)
    table = RECORD_TABLES[Source.PENALTY]
    with engine.begin() as connection:
        victim = connection.execute(select(table.c.record_id, table.c.person_key)).first()
        connection.execute(people.insert().values(person_key=victim.person_key,
                                                  first_seen=dt.datetime.now(dt.UTC)))
        connection.execute(disputes.insert().values(
            dispute_id="d" * 32, person_key=victim.person_key, source="penalty",
            record_id=victim.record_id, statement="not me", received_on=dt.date(2025, 1, 1),
            due_on=dt.date(2025, 1, 31), state="upheld"))
        connection.execute(table.delete().where(table.c.record_id == victim.record_id))
    summary = ingest_feed(engine, feed, Source.PENALTY)
    assert summary.rows_overruled == 1 and summary.rows_stored == 5
    assert count(engine, table) == 5


def _lost_connection() -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("INSERT …", {}, ConnectionError("server closed the connection"))


def test_a_lost_database_is_waited_for_and_the_feed_finishes(engine, tmp_path, monkeypatch):
    feed = penalty_feed(tmp_path / "penalty.csv")
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 2)
    real, calls = ingest_module._upsert_records, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 3):  # the second chunk fails twice, then the database is back
            raise _lost_connection()
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_upsert_records", flaky)
    summary = ingest_feed(engine, feed, Source.PENALTY, retry_seconds=10)
    assert summary.rows_stored == 6 and count(engine, RECORD_TABLES[Source.PENALTY]) == 6
    assert len(summary.changed_persons) == 6 and len(calls) == 5
    with engine.connect() as connection:
        assert connection.execute(select(feeds.c.status)).scalar_one() == "complete"


def test_a_database_away_past_the_budget_is_a_clean_error_and_the_feed_stays_receiving(
        engine, tmp_path, monkeypatch, caplog):
    feed = penalty_feed(tmp_path / "penalty.csv")
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 2)
    real = ingest_module._upsert_records
    calls = []

    def gone_after_the_first_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise _lost_connection()
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_upsert_records", gone_after_the_first_chunk)
    with pytest.raises(ingest_module.IngestError) as raised:
        ingest_feed(engine, feed, Source.PENALTY, retry_seconds=0.3)
    message = str(raised.value)
    assert "2 of 6 good rows" in message and "'receiving'" in message
    assert "INSERT" not in message and raised.value.__cause__ is None
    assert not any(record.exc_info for record in caplog.records)
    with engine.connect() as connection:
        assert connection.execute(select(feeds.c.status)).scalar_one() == "receiving"
    monkeypatch.setattr(ingest_module, "_upsert_records", real)
    ingest_feed(engine, feed, Source.PENALTY)
    assert count(engine, RECORD_TABLES[Source.PENALTY]) == 6
    with engine.connect() as connection:
        assert connection.execute(select(feeds.c.status)).scalar_one() == "complete"


def test_a_mistake_is_not_mistaken_for_an_outage(engine, tmp_path, monkeypatch):
    """SQLite reports a missing table as an OperationalError too: it surfaces at once."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    calls = []

    def no_table(*_args, **_kwargs):
        calls.append(1)
        raise OperationalError("INSERT …", {}, sqlite3.OperationalError("no such table: x"))

    monkeypatch.setattr(ingest_module, "_upsert_records", no_table)
    with pytest.raises(OperationalError):
        ingest_feed(engine, penalty_feed(tmp_path / "p.csv"), Source.PENALTY, retry_seconds=5)
    assert len(calls) == 1
