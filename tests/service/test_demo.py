"""`osmanthus demo` end to end, small: a champion, a scored store, partners and a consent."""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from model.registry import Registry
from service.base.clock import city_date
from service.cli import service as cli_service
from service.cli.main import main
from service.store.tables import consents, make_engine, partners, perks, quarantine, scores

DEMO_SETTINGS = ("DATABASE_URL", "OSMANTHUS_REGISTRY", "OSMANTHUS_AS_OF", "OSMANTHUS_CLOCK_SINCE",
                 "OSMANTHUS_VALIDATION_FEATURES", "OSMANTHUS_VALIDATION_OUTCOMES",
                 "OSMANTHUS_VALIDATION_PEOPLE", "OSMANTHUS_VALIDATION_AS_OF", "OSMANTHUS_ENV",
                 "REDIS_URL")


@pytest.mark.slow
def test_the_demo_ends_with_a_scored_city_ready_to_serve(tmp_path, monkeypatch):
    for name in DEMO_SETTINGS:  # the demo sets its own: recorded here, so undone afterwards
        monkeypatch.setenv(name, "recorded")
        monkeypatch.delenv(name)
    served = []
    monkeypatch.setattr(cli_service, "execute", lambda argv, env: served.append(argv))
    root = tmp_path / "demo"
    # seed 3: a 1,500-person city whose champion passes every gate, fairness included
    result = CliRunner().invoke(main, ["demo", "--people", "1500", "--seed", "3", "--no-serve",
                                       "--dir", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    assert served == []
    assert os.environ["OSMANTHUS_AS_OF"] == "2026-01-01", "the demo city lives in its own time"
    # ... on its own clock, which began that day at the build and runs on (service/base/clock)
    since = dt.datetime.fromisoformat(os.environ["OSMANTHUS_CLOCK_SINCE"])
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - since < dt.timedelta(hours=1)
    assert f"the city's 2026-01-01 began at {os.environ['OSMANTHUS_CLOCK_SINCE']}" in result.output

    assert Registry(root / "registry").champion() == "v0001"
    engine = make_engine(f"sqlite:///{root / 'osmanthus.db'}")

    def count(table, *where) -> int:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(table)
                                      .where(*where)).scalar_one()

    try:
        assert count(scores, scores.c.as_of == dt.date(2026, 1, 1)) == 1500
        # and at the three quarter-starts before, so every resident's trend has four points
        for day in (dt.date(2025, 4, 1), dt.date(2025, 7, 1), dt.date(2025, 10, 1)):
            assert count(scores, scores.c.as_of == day) == 1500, day
        newest = select(scores.c.as_of).order_by(scores.c.id.desc()).limit(1)
        with engine.connect() as connection:  # the latest row (the page's score) is today's
            assert connection.execute(newest).scalar_one() == dt.date(2026, 1, 1)
        assert count(quarantine) > 0, "the spoiled rows were quarantined by the ingest"
        assert count(partners) == 4 and count(consents) == 1 and count(perks) == 4
        with engine.connect() as connection:  # the demo's consent is of the city's clock too
            granted, expires = connection.execute(
                select(consents.c.granted_at, consents.c.expires_at)).one()
        assert city_date(granted.replace(tzinfo=granted.tzinfo or dt.UTC)) == dt.date(2026, 1, 1)
        assert city_date(expires.replace(tzinfo=expires.tzinfo or dt.UTC)) == dt.date(2026, 2, 1)
    finally:
        engine.dispose()
    assert "bands:  needs improvement" in result.output and "excellent" in result.output
    for perk in ("bike-deposit-free", "library-deposit-free", "hospital-pay-later",
                 "permit-fast-track"):
        assert re.search(rf"{perk} +\(≥\d+\) approved +[\d,]+ +refused +[\d,]+",
                         result.output), perk
    for line in ("curl -s $OSM/healthz", "curl -s $OSM/readyz", "/v1/me/score",
                 "/v1/me/explanation", "/v1/me/perks", "/v1/partner/eligibility",
                 "export CITIZEN_TOKEN=", "export CONSENT_TOKEN=", "export BIKE_KEY=osk_"):
        assert line in result.output, line
