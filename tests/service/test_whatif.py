"""What a person's score would be without some records (service/scoring/whatif.py): several
removals in one variant give what removing the records one by one gives, and advice's "every
adverse record cleared" is exactly that variant."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from features.records import Source
from service.base import clock
from service.scoring.score import rescore
from service.scoring.whatif import scores_without
from service.store.records import load_records
from service.store.tables import RECORD_TABLES
from tests.service.test_disputes import LISTING, add_court_listing, spoil_latest_transit_month


def test_removing_several_records_at_once_equals_removing_them_one_by_one(
        served_app, auth, people_keys):
    key = people_keys[0]
    engine = served_app.extensions["osmanthus.engine"]
    month = spoil_latest_transit_month(served_app, key)
    add_court_listing(served_app, key)
    day = clock.today(served_app)
    records = load_records(engine, [key])
    both = [("transit", month), ("court", LISTING)]

    together, first, alone = scores_without(served_app, records, [both, both[0], None], day)
    # one by one: the records without the first, then without the second of what remains
    without_month = load_records(engine, [key])
    without_month = type(without_month)(**{
        s.value: (without_month.get(s).filter(without_month.get(s)["record_id"] != month)
                  if s is Source.TRANSIT else without_month.get(s)) for s in Source})
    (step_one, _), (step_two, features) = scores_without(
        served_app, without_month, [None, ("court", LISTING)], day)

    assert step_one == pytest.approx(first[0])
    assert together[0] == pytest.approx(step_two)
    # every feature value, not only the score (the variant's own key aside)
    assert {**together[1], "person_key": None} == {**features, "person_key": None}
    assert together[0] > alone[0]  # clearing a costly month and a listing restores points

    # and the store agrees: deleting both and re-scoring gives the same score
    with engine.begin() as connection:
        for source, record_id in ((Source.TRANSIT, month), (Source.COURT, LISTING)):
            table = RECORD_TABLES[source]
            connection.execute(delete(table).where(table.c.record_id == record_id))
    assert rescore(served_app, key)["score"] == pytest.approx(together[0])


def test_advice_says_what_clearing_every_adverse_record_would_give(
        served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    spoil_latest_transit_month(served_app, key)
    add_court_listing(served_app, key)
    page = served_client.get("/v1/me/advice", headers={**headers, "Accept-Language": "en"})
    assert page.status_code == 200, page.get_json()
    adverse = [(a["source"], a["record_id"]) for a in page.get_json()["records"]]
    assert ("court", LISTING) in adverse
    cleared, = scores_without(served_app, load_records(engine, [key]), [adverse],
                              clock.today(served_app))
    perks = page.get_json()["perks"]
    assert perks  # an active listing locks the bicycle perk, at least
    for perk in perks:
        assert perk["score_if_all_cleared"] == pytest.approx(cleared[0])
