"""PostgreSQL restarted during an ingest, on a private cluster (never the shared one).

A restart shorter than the retry budget is ridden out: the ingest finishes and the store holds
exactly the feed's good rows. A database that stays away longer stops `osmanthus ingest` with a
one-paragraph message and exit status 1, no traceback, the feed left `receiving`; sending the
feed again then leaves exactly its good rows, no more, no less.
"""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import select

from features.records import Source
from model.bundle import sha256_file
from service.store import ingest as ingest_module
from tests.service.test_faults_feed import reconcile, spoiled_feed
from tests.service.test_faults_servers import need, postgres_bin, private_postgres

ROWS, CHUNK = 3_000, 300


@pytest.fixture
def postgres():
    need(postgres_bin() is not None, "PostgreSQL")
    with private_postgres() as server:
        yield server


@pytest.fixture
def feed(tmp_path):
    frame, expected = spoiled_feed(Source.PENALTY, ROWS, 0.05, seed=3)
    path = tmp_path / "penalty.csv"
    frame.write_csv(path)
    return path, expected


def _engine(url: str):
    from service.store.tables import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    return engine


def _status(engine, feed_id: str) -> str:
    from service.store.tables import feeds

    with engine.connect() as connection:
        return connection.execute(select(feeds.c.status)
                                  .where(feeds.c.feed_id == feed_id)).scalar_one()


@pytest.mark.integration  # a private PostgreSQL server
def test_a_restart_during_an_ingest_is_ridden_out_and_leaves_exactly_the_good_rows(
        postgres, feed, monkeypatch, caplog):
    path, expected = feed
    engine = _engine(postgres.url)
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", CHUNK)
    back: list[threading.Thread] = []

    def restart_after_the_first_chunk(done: int, _total: int) -> None:
        if done == CHUNK:  # down now; up again in a second, while the ingest keeps trying
            postgres.stop()
            timer = threading.Timer(1.0, postgres.start)
            timer.start()
            back.append(timer)

    caplog.set_level(logging.WARNING, logger="service.store.ingest")
    try:
        summary = ingest_module.ingest_feed(engine, path, Source.PENALTY,
                                            on_chunk=restart_after_the_first_chunk,
                                            retry_seconds=20)
    finally:
        for timer in back:
            timer.join(30)
    assert back, "the server was restarted during the ingest"
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
    reconcile(engine, summary.feed_id, Source.PENALTY, expected, ROWS)
    engine.dispose()


@pytest.mark.integration  # a private PostgreSQL server
def test_a_database_that_stays_away_stops_the_cli_cleanly_and_a_rerun_finishes_exactly(
        postgres, feed, monkeypatch, caplog):
    from click.testing import CliRunner

    from service.cli.main import main

    path, expected = feed
    monkeypatch.setenv("DATABASE_URL", postgres.url)
    monkeypatch.setenv("OSMANTHUS_INGEST_RETRY_SECONDS", "1")
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", CHUNK)
    real, calls = ingest_module._upsert_records, []

    def dies_at_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            postgres.stop()  # and it stays down past the retry budget
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_upsert_records", dies_at_the_third_chunk)
    caplog.set_level(logging.INFO)
    args = ["ingest", str(path), "--source", "penalty", "--no-rescore"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "not finished" in result.output and "'receiving'" in result.output
    assert "send it again" in result.output
    assert "Traceback" not in result.output and "INSERT" not in result.output
    assert not any(record.exc_info for record in caplog.records), "no traceback in the logs"

    postgres.start()
    engine = _engine(postgres.url)
    feed_id = sha256_file(path)
    assert _status(engine, feed_id) == "receiving"
    monkeypatch.setattr(ingest_module, "_upsert_records", real)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    reconcile(engine, feed_id, Source.PENALTY, expected, ROWS)
    engine.dispose()


def test_an_error_that_is_not_a_lost_database_is_not_retried(engine, feed, monkeypatch):
    """Only connection-level failures are waited out; anything else surfaces at once."""
    path, _ = feed
    calls = []

    def broken(*_args, **_kwargs):
        calls.append(1)
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(ingest_module, "_upsert_records", broken)
    with pytest.raises(ValueError):
        ingest_module.ingest_feed(engine, path, Source.PENALTY, retry_seconds=5)
    assert len(calls) == 1
