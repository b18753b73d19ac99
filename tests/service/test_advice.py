"""Advice that helps: exact points per adverse record, its own date, and honest perk advice."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import delete
from sqlalchemy.exc import NoResultFound

from features.records import Source
from service.scoring.score import latest, rescore
from service.store.tables import RECORD_TABLES
from tests.service.test_disputes import LISTING, add_court_listing, spoil_latest_transit_month


def advice(client, headers, lang: str = "en") -> dict:
    response = client.get("/v1/me/advice", headers={**headers, "Accept-Language": lang})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_each_adverse_record_gets_the_exact_points_its_clearing_restores(
        served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    costly = spoil_latest_transit_month(served_app, key)
    add_court_listing(served_app, key)
    page = advice(served_client, headers)
    by_id = {a["record_id"]: a for a in page["records"]}
    assert costly in by_id and LISTING in by_id
    month = by_id[costly]
    assert [a["action"] for a in month["actions"]] == ["fulfil", "apply_for_repair",
                                                       "dispute_if_wrong"]
    assert month["stops_by_itself_on"] is not None and month["repairable_from"] is not None
    court = by_id[LISTING]
    assert court["stops_by_itself_on"] is None and court["repairable_from"] is None
    assert [a["action"] for a in court["actions"]] == ["fulfil", "dispute_if_wrong"]
    # the points are exactly what re-scoring without the record gives
    before = latest(engine, key)["score"]
    table = RECORD_TABLES[Source.TRANSIT]
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.record_id == costly))
    after = rescore(served_app, key)["score"]
    assert month["points_restored"] == pytest.approx(after - before, abs=0.06)
    assert month["points_restored"] > 0
    points = [a["points_restored"] for a in page["records"]]
    assert points == sorted(points, reverse=True)


def test_a_perk_out_of_reach_this_year_is_said_to_be(served_app, served_client, auth,
                                                     people_keys, monkeypatch):
    shipped = served_app.extensions["osmanthus.perks"]
    # beside the shipped perks (whether one of them is out of someone's reach depends on the
    # city), one that no clearing reaches, so both kinds of advice are seen
    beyond = dataclasses.replace(shipped.perks[-1], perk_id="beyond-reach", min_score=999)
    perk_config = dataclasses.replace(shipped, perks=(*shipped.perks, beyond))
    monkeypatch.setitem(served_app.extensions, "osmanthus.perks", perk_config)
    seen = set()
    for key in people_keys:  # until both kinds are seen: which people are which is the city's
        if len(seen) == 2:
            break
        page = advice(served_client, auth.citizen(key))
        for perk in page["perks"]:
            minimum = perk_config.perk(perk["perk_id"]).min_score
            if perk["reachable_this_year"]:
                seen.add("reachable")
                assert perk["score_if_all_cleared"] >= minimum
                assert "points to go" in perk["text"]
            else:
                seen.add("out of reach")
                assert perk["text"].startswith("out of reach this year")
                assert perk["unlocks_by_itself_on"] is None  # never promised the impossible
                if perk["score_if_all_cleared"] < minimum:
                    assert f"{perk['score_if_all_cleared']:.0f}" in perk["text"]
    assert seen == {"reachable", "out of reach"}


def test_a_locked_perk_unlocks_by_itself_when_its_records_leave_the_score_windows(
        served_app, served_client, auth, people_keys):
    """Most of a record's points fade as it leaves the features' 12–36-month windows, years
    before it expires: the advice dates the unlock by those windows, the first month on which
    the person's own records, re-scored as of that day, pass the perk — not by expiries only
    (which put it years away, or said nothing)."""
    import datetime as dt

    from service.rights.advice import _month_starts
    from service.rights.pages import explained_records
    from service.scoring.whatif import scores_without

    perks = served_app.extensions["osmanthus.perks"]
    seen = 0
    for key in people_keys[:12]:
        try:
            spoil_latest_transit_month(served_app, key)  # fees unpaid in the latest month
        except NoResultFound:
            continue  # no transit account
        page = advice(served_client, auth.citizen(key))
        expiries = [dt.date.fromisoformat(a["stops_by_itself_on"]) for a in page["records"]
                    if a["stops_by_itself_on"]]
        with served_app.app_context():
            records, as_of, _ = explained_records(served_app, key)
        for tip in page["perks"]:
            if tip["unlocks_by_itself_on"] is None:
                continue
            day = dt.date.fromisoformat(tip["unlocks_by_itself_on"])
            assert tip["reachable_this_year"] and as_of < day <= as_of + dt.timedelta(days=365)
            perk = perks.perk(tip["perk_id"])
            with served_app.app_context():
                assert perk.decide(*scores_without(served_app, records, [None], day)[0]) == "yes"
                earlier = [d for d in _month_starts(as_of, dt.timedelta(days=365)) if d < day]
                for before in earlier:  # and not on any month start before it
                    assert perk.decide(*scores_without(served_app, records, [None],
                                                       before)[0]) == "no"
            if expiries and day < min(expiries):
                seen += 1
    assert seen, "no perk was dated by its records leaving the score's windows"
