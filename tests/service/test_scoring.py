"""Scoring from the store: the stored row explains itself and adds up."""

from __future__ import annotations

import pytest

from features.records import Source
from service.ingest import ingest_feed
from service.scoring import latest, score_people, trend
from service.serving import load_serving
from tests.service.world import VALID_AS_OF


@pytest.fixture
def stored(engine, world):
    for source in Source:
        ingest_feed(engine, world.feed(source), source)
    return load_serving(world.registry)


def test_a_stored_score_adds_up_and_carries_its_reasons(engine, world, stored):
    keys = world.people()["person_key"].head(20).to_list()
    rows = score_people(engine, stored, keys, VALID_AS_OF)
    assert sorted(r["person_key"] for r in rows) == sorted(keys)
    for row in rows:
        saved = latest(engine, row["person_key"])
        assert saved["score"] == pytest.approx(row["score"])
        assert saved["base_points"] + sum(saved["points"].values()) == pytest.approx(
            saved["raw_score"], abs=1e-6)
        assert saved["model_version"] == world.version
        assert set(saved["reasons"]["features"]) >= {"ct_active_listings", "pn_serious_counting"}


def test_scoring_from_the_store_equals_scoring_the_validated_records(engine, world, stored):
    from features.build import build_features

    keys = world.people()["person_key"].head(50).to_list()
    rows = score_people(engine, stored, keys, VALID_AS_OF)
    table = build_features(world.records, VALID_AS_OF, keys)
    direct = dict(zip(table["person_key"], stored.scorecard.score_frame(table).score, strict=True))
    assert {r["person_key"]: r["score"] for r in rows} == pytest.approx(direct, abs=1e-9)


def test_the_trend_has_one_point_per_as_of_date(engine, world, stored):
    import datetime as dt

    key = world.people()["person_key"][0]
    for as_of in (dt.date(2024, 1, 1), dt.date(2025, 1, 1), dt.date(2025, 1, 1)):
        score_people(engine, stored, [key], as_of)
    points = trend(engine, key)
    assert [p["as_of"] for p in points] == [dt.date(2024, 1, 1), dt.date(2025, 1, 1)]
