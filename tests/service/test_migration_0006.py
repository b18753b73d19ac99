"""Migration 0006 adds the transit and social-security feeds' `paid_early` without touching
stored months: a month stored before it has no value (no evidence, not "paid late"), and the
step can be undone."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from service.store import tables
from service.store.tables import make_engine, migrate


def test_0006_adds_paid_early_as_null_to_stored_months_and_downgrades(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine, "0004")
    assert "paid_early" not in {c["name"] for c in inspect(engine).get_columns("records_transit")}
    with engine.begin() as c:
        c.execute(text("INSERT INTO records_transit (record_id, person_key, month, rides, "
                       "bike_rides, overdue_returns, unpaid_fees, fare_evasions, "
                       "damage_incidents) VALUES ('r1', 'p1', '2025-01-01', 3, 0, 0, 0.0, 0, 0)"))
        c.execute(text("INSERT INTO records_social_security (record_id, person_key, month, "
                       "status, contribution_base, arrears) VALUES ('s1', 'p1', '2025-01-01', "
                       "'paid', 5000.0, 0.0)"))
    migrate(engine, "0006")
    with engine.begin() as c:
        assert c.execute(text("SELECT paid_early FROM records_social_security")).scalar_one() is None
        assert c.execute(text("SELECT paid_early FROM records_transit")).scalar_one() is None
        c.execute(text("UPDATE records_transit SET paid_early = 1"))
        assert c.execute(text("SELECT rides, paid_early FROM records_transit")).one() == (3, 1)
    config = Config()
    config.set_main_option("script_location", str(Path(tables.__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    for table in ("records_transit", "records_social_security"):
        assert "paid_early" not in {c["name"] for c in inspect(engine).get_columns(table)}
    with engine.connect() as c:
        assert c.execute(text("SELECT status FROM records_social_security")).scalar_one() == "paid"
        assert c.execute(text("SELECT rides FROM records_transit")).scalar_one() == 3
    engine.dispose()
