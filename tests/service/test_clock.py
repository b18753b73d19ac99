"""The one clock (service/base/clock.py): every rights flow, page and answer dates by it, and a
dispute that passes its due date stops counting on that clock without anyone re-scoring."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import func, select

from features.rules import DISPUTE_OVERDUE
from service.base.clock import CITY_TZ, Clock, city_date, clock_of
from service.base.config import Config, ConfigError
from service.rights.overdue import stale_people, sweep
from service.rights.pages import REASON_TEXT
from service.scoring.score import latest
from service.store.tables import scores
from tests.service.conftest import DEMO_TODAY
from tests.service.test_disputes import LISTING, add_court_listing, open_listing_dispute, record_of
from tests.service.test_repair import GENERAL, add_penalty, apply

BIKE = "bike-deposit-free"


def set_clock(app, day: dt.date) -> None:
    """Freeze the app's clock at `day` (noon, city time), as `OSMANTHUS_AS_OF` would."""
    app.extensions["osmanthus.config"] = app.extensions["osmanthus.config"].with_(as_of=day)


def day_of(stamp: str) -> dt.date:
    """The city's date of an ISO timestamp from the API."""
    return city_date(dt.datetime.fromisoformat(stamp))


# --- the clock itself -----------------------------------------------------------------------
def test_a_frozen_clock_is_noon_of_its_day_in_the_city():
    clock = Clock(dt.date(2026, 1, 1))
    assert clock.now() == dt.datetime(2026, 1, 1, 4, tzinfo=dt.UTC) and clock.kind == "frozen"
    assert clock.today() == dt.date(2026, 1, 1)


def test_a_running_clock_starts_its_day_at_the_given_instant_and_runs_at_real_speed():
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=2, hours=3)
    clock = Clock(dt.date(2026, 1, 1), since)
    expected = dt.datetime(2026, 1, 3, 3, tzinfo=CITY_TZ)
    assert abs((clock.now() - expected).total_seconds()) < 60 and clock.kind == "running"
    assert clock.today() == dt.date(2026, 1, 3)


def test_the_wall_clock_dates_by_the_citys_calendar():
    clock = Clock()
    assert clock.kind == "wall"
    assert clock.today() == dt.datetime.now(CITY_TZ).date()  # UTC+8, not the server's zone
    assert abs((clock.now() - dt.datetime.now(dt.UTC)).total_seconds()) < 5


def test_the_clock_is_read_from_the_environment_and_production_keeps_the_wall_clock():
    config = Config.from_env({"OSMANTHUS_AS_OF": "2026-01-01",
                              "OSMANTHUS_CLOCK_SINCE": "2026-12-06T03:54:00Z"}
                             | _no_secrets_file())
    assert clock_of(config) == Clock(dt.date(2026, 1, 1),
                                     dt.datetime(2026, 12, 6, 3, 54, tzinfo=dt.UTC))
    with pytest.raises(ConfigError, match="OSMANTHUS_AS_OF"):
        Config(clock_since=dt.datetime(2026, 12, 6, tzinfo=dt.UTC)).check()
    secrets = _no_secrets_file()
    production = Config(env="production", jwt_secret=secrets["OSMANTHUS_JWT_SECRET"],
                        consent_key=secrets["OSMANTHUS_CONSENT_KEY"],
                        database_url="postgresql+psycopg://u@db/osmanthus")
    assert clock_of(production.check()).kind == "wall"
    with pytest.raises(ConfigError, match="wall clock"):
        production.with_(as_of=dt.date(2026, 1, 1)).check()
    with pytest.raises(ConfigError, match="OSMANTHUS_CLOCK_SINCE"):
        Config.from_env({"OSMANTHUS_AS_OF": "2026-01-01", "OSMANTHUS_CLOCK_SINCE": "soon"}
                        | _no_secrets_file())


def _no_secrets_file() -> dict[str, str]:
    """Development settings that need no secrets file (Config.from_env would write one)."""
    from service.base.config import new_consent_key

    return {"OSMANTHUS_JWT_SECRET": "t" * 32, "OSMANTHUS_CONSENT_KEY": new_consent_key(),
            "OSMANTHUS_PERSON_KEY": "p" * 32}


# --- one session, one clock -----------------------------------------------------------------
def test_a_dispute_a_consent_a_review_a_repair_and_the_log_carry_dates_of_one_clock(
        served_app, served_client, auth, people_keys):
    day = DEMO_TODAY + dt.timedelta(days=9)  # neither the world's first day nor the wall's
    assert day != dt.datetime.now(CITY_TZ).date()
    set_clock(served_app, day)
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    add_court_listing(served_app, key)
    add_penalty(served_app, key, GENERAL, "general")
    auth.partner("city-bikes")

    dispute = open_listing_dispute(served_client, headers).get_json()["dispute"]
    consent = served_client.post("/v1/me/consents", headers=headers, json={
        "partner_id": "city-bikes", "perks": [BIKE],
        "until": (day + dt.timedelta(days=30)).isoformat()}).get_json()["consent"]
    review = served_client.post("/v1/me/review", headers=headers,
                                json={"perk_id": BIKE, "reason": "请人工复核"}).get_json()
    repair = apply(served_client, headers, GENERAL).get_json()
    decided = served_client.post(f"/v1/admin/repairs/{repair['repair_id']}/decision",
                                 headers=auth.admin(),
                                 json={"outcome": "approved", "reason": "已缴清"}).get_json()
    revoked = served_client.delete(f"/v1/me/consents/{consent['consent_id']}",
                                   headers=headers).get_json()
    page = served_client.get("/v1/me/score", headers=headers).get_json()
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]

    assert (dispute["received_on"], dispute["due_on"]) == (
        day.isoformat(), (day + dt.timedelta(days=20)).isoformat())
    assert day_of(consent["granted_at"]) == day_of(revoked["revoked_at"]) == day
    assert consent["expires_at"] == dt.datetime.combine(
        day + dt.timedelta(days=31), dt.time(), CITY_TZ).astimezone(dt.UTC).isoformat()
    assert day_of(review["requested_at"]) == day
    assert repair["received_on"] == day.isoformat() and day_of(
        decided["repair"]["resolved_at"]) == day
    assert record_of(served_client, headers, GENERAL)["repaired_on"] == day.isoformat()
    assert page["as_of"] == day.isoformat() == decided["score"]["as_of"]
    actions = {entry["action"] for entry in log}
    assert {"dispute_opened", "consent_granted", "consent_revoked", "review_requested",
            "repair_requested", "repair_decided"} <= actions
    assert {day_of(entry["at"]) for entry in log} == {day}


# --- a dispute past its due date stops counting on time --------------------------------------
def _bike_holder(client, auth, people_keys) -> str:
    """A resident the bicycle perk says yes to now (so that a court listing alone locks it)."""
    for key in people_keys:
        page = client.get("/v1/me/perks", headers=auth.citizen(key)).get_json()
        if next(p for p in page["perks"] if p["perk_id"] == BIKE)["status"] == "yes":
            return key
    pytest.fail("no resident holds the bicycle perk")


def _disputed_listing_with_a_consent(app, client, auth, key: str) -> tuple[str, dict, dict]:
    """A court listing (the perk locks), a consent to the bicycle company, a dispute of the
    listing: (partner's consent token, partner headers, the dispute)."""
    add_court_listing(app, key)
    partner = auth.partner("city-bikes")
    token = client.post("/v1/me/consents", headers=auth.citizen(key), json={
        "partner_id": "city-bikes", "perks": [BIKE],
        "until": (DEMO_TODAY + dt.timedelta(days=60)).isoformat()}).get_json()["token"]
    dispute = open_listing_dispute(client, auth.citizen(key)).get_json()["dispute"]
    return token, partner, dispute


def _ask(client, partner, token) -> str:
    response = client.post("/v1/partner/eligibility", headers=partner,
                           json={"consent_token": token, "perk_id": BIKE})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["eligible"]


def _rows(app, key: str) -> int:
    with app.extensions["osmanthus.engine"].connect() as connection:
        return connection.execute(select(func.count()).select_from(scores)
                                  .where(scores.c.person_key == key)).scalar_one()


def test_the_partner_is_answered_without_the_record_once_the_due_date_has_passed(
        served_app, served_client, auth, people_keys):
    key = _bike_holder(served_client, auth, people_keys)
    token, partner, dispute = _disputed_listing_with_a_consent(served_app, served_client, auth,
                                                               key)
    due = dt.date.fromisoformat(dispute["due_on"])
    assert _ask(served_client, partner, token) == "no"  # labelled, still counting

    set_clock(served_app, due)  # the due date itself: it still counts, nobody is re-scored
    rows = _rows(served_app, key)
    assert _ask(served_client, partner, token) == "no" and _rows(served_app, key) == rows

    set_clock(served_app, due + dt.timedelta(days=1))  # no one re-scores anyone by hand
    assert _ask(served_client, partner, token) == "yes"
    fresh = latest(served_app.extensions["osmanthus.engine"], key)
    assert fresh["as_of"] == due + dt.timedelta(days=1)
    assert fresh["reasons"]["features"]["ct_active_listings"] == 0


def test_the_citizens_score_leaves_the_record_out_once_the_due_date_has_passed(
        served_app, served_client, auth, people_keys):
    key, headers = people_keys[1], auth.citizen(people_keys[1])
    _, _, dispute = _disputed_listing_with_a_consent(served_app, served_client, auth, key)
    due = dt.date.fromisoformat(dispute["due_on"])
    counted = served_client.get("/v1/me/score", headers=headers).get_json()  # cached now
    assert counted["as_of"] == DEMO_TODAY.isoformat()

    set_clock(served_app, due + dt.timedelta(days=1))
    page = served_client.get("/v1/me/score", headers=headers).get_json()
    assert page["as_of"] == (due + dt.timedelta(days=1)).isoformat()
    fresh = latest(served_app.extensions["osmanthus.engine"], key)
    assert fresh["reasons"]["features"]["ct_active_listings"] == 0  # left out, not cached
    assert page["score"] == math.floor(fresh["score"]) >= counted["score"]
    explanation = served_client.get("/v1/me/explanation", headers=headers).get_json()
    assert explanation["score"] == page["score"]
    record = record_of(served_client, headers, LISTING)
    assert record["counts"] is False and record["reason_en"] == REASON_TEXT[DISPUTE_OVERDUE][1]
    shown = served_client.get(f"/v1/me/disputes/{dispute['dispute_id']}",
                              headers=headers).get_json()
    assert shown["overdue"] is True and shown["state"] == "open"


def test_the_sweep_rescores_exactly_the_people_whose_dispute_went_overdue(
        served_app, served_client, auth, people_keys):
    overdue_one, later_one, calm = people_keys[2], people_keys[3], people_keys[4]
    _disputed_listing_with_a_consent(served_app, served_client, auth, overdue_one)
    set_clock(served_app, DEMO_TODAY + dt.timedelta(days=5))  # a dispute due five days later
    add_court_listing(served_app, later_one, record_id="c1" * 16)
    assert open_listing_dispute(served_client, auth.citizen(later_one),
                                record_id="c1" * 16).status_code == 201
    rows = {key: _rows(served_app, key) for key in (overdue_one, later_one, calm)}

    set_clock(served_app, DEMO_TODAY + dt.timedelta(days=21))  # only the first is overdue
    engine = served_app.extensions["osmanthus.engine"]
    with engine.connect() as connection:
        assert stale_people(connection, DEMO_TODAY + dt.timedelta(days=21)) == [overdue_one]
    assert sweep(served_app) == [overdue_one]
    assert {key: _rows(served_app, key) for key in rows} == {
        **rows, overdue_one: rows[overdue_one] + 1}
    assert latest(engine, overdue_one)["reasons"]["features"]["ct_active_listings"] == 0
    assert sweep(served_app) == []  # re-scored after the due date: no longer stale

    set_clock(served_app, DEMO_TODAY + dt.timedelta(days=26))
    assert sweep(served_app) == [later_one]


def test_osmanthus_disputes_sweep_rescores_the_overdue_on_the_configured_clock(
        served_app, served_client, auth, people_keys, monkeypatch):
    from click.testing import CliRunner

    from service.cli.main import main

    key = people_keys[5]
    _disputed_listing_with_a_consent(served_app, served_client, auth, key)
    config = served_app.extensions["osmanthus.config"]
    later = DEMO_TODAY + dt.timedelta(days=21)
    monkeypatch.setenv("DATABASE_URL", config.database_url)
    monkeypatch.setenv("OSMANTHUS_REGISTRY", str(config.registry_dir))
    monkeypatch.setenv("OSMANTHUS_AS_OF", later.isoformat())
    monkeypatch.delenv("OSMANTHUS_CLOCK_SINCE", raising=False)
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)

    result = CliRunner().invoke(main, ["disputes", "sweep"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert f"re-scored 1 people whose dispute went overdue (as of {later})" in result.output
    fresh = latest(served_app.extensions["osmanthus.engine"], key)
    assert fresh["as_of"] == later and fresh["reasons"]["features"]["ct_active_listings"] == 0
    again = CliRunner().invoke(main, ["disputes", "sweep"], catch_exceptions=False)
    assert "re-scored 0 people" in again.output


def test_each_worker_sweeps_by_itself(served_app, served_client, auth, people_keys):
    import time

    from service.rights.overdue import start_sweeping

    assert start_sweeping(served_app, 0) is None  # OSMANTHUS_SWEEP_SECONDS=0: never
    key = people_keys[6]
    _disputed_listing_with_a_consent(served_app, served_client, auth, key)
    set_clock(served_app, DEMO_TODAY + dt.timedelta(days=21))
    engine = served_app.extensions["osmanthus.engine"]
    stop = start_sweeping(served_app, 0.05)
    try:
        deadline = time.monotonic() + 30
        while latest(engine, key)["as_of"] == DEMO_TODAY and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert latest(engine, key)["as_of"] == DEMO_TODAY + dt.timedelta(days=21)
