"""Scoring from the store: the stored row explains itself and adds up; the vectorised
`score_rows` writes exactly the rows the per-person path wrote."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import RECORDS_COUNTED, build_features
from features.catalog import FEATURE_NAMES
from features.records import Source
from service.scoring.score import latest, score_people, score_rows, trend
from service.scoring.serving import load_serving
from service.store.ingest import ingest_feed
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
    keys = world.people()["person_key"].head(50).to_list()
    rows = score_people(engine, stored, keys, VALID_AS_OF)
    table = build_features(world.records, VALID_AS_OF, keys)
    direct = dict(zip(table["person_key"], stored.scorecard.score_frame(table).score, strict=True))
    assert {r["person_key"]: r["score"] for r in rows} == pytest.approx(direct, abs=1e-9)


def test_the_trend_has_one_point_per_as_of_date(engine, world, stored):
    key = world.people()["person_key"][0]
    for as_of in (dt.date(2024, 1, 1), dt.date(2025, 1, 1), dt.date(2025, 1, 1)):
        score_people(engine, stored, [key], as_of)
    points = trend(engine, key)
    assert [p["as_of"] for p in points] == [dt.date(2024, 1, 1), dt.date(2025, 1, 1)]


# --- score_rows, vectorised, equals the per-person rows ---------------------------------------
def per_person_rows(scorecard, version, table, as_of, run_id=None) -> list[dict]:
    """`score_rows` as it was before the batch path: one `explain` per person (the reference)."""
    from model.explain import explain

    rows = []
    for row in table.iter_rows(named=True):
        explanation = explain(scorecard, row, row.get(RECORDS_COUNTED)).to_dict()
        explanation["features"] = {name: row[name] for name in FEATURE_NAMES}
        explanation["records_counted"] = row.get(RECORDS_COUNTED)
        rows.append({
            "person_key": row["person_key"], "as_of": as_of, "model_version": version,
            "run_id": run_id, "score": explanation["score"],
            "raw_score": explanation["raw_score"], "base_points": explanation["base_points"],
            "band": explanation["band"], "points": explanation.pop("points"),
            "reasons": explanation, "created_at": None,
        })
    return rows


def exact(rows: list[dict]) -> list[str]:
    """Key order, int vs float, −0.0, NaN vs None all show; `created_at` (now) left out."""
    return [json.dumps({**r, "created_at": None}, ensure_ascii=False, default=str)
            for r in rows]


_CHAMPIONS: dict = {}


def _champion(registry):
    from model.registry import Registry

    if registry not in _CHAMPIONS:
        _CHAMPIONS[registry] = Registry(registry).load_champion().scorecard
    return _CHAMPIONS[registry]


def test_score_rows_equals_the_per_person_rows_on_a_city(world):
    scorecard = _champion(world.registry)
    keys = world.people()["person_key"]
    table = build_features(world.records, dt.date(2026, 1, 1), [*keys, "f" * 64])
    assert table.filter(pl.col(RECORDS_COUNTED) == 0).height > 1  # no-record people too
    rows = score_rows(scorecard, world.version, table, VALID_AS_OF, "run-1")
    assert exact(rows) == exact(per_person_rows(scorecard, world.version, table, VALID_AS_OF,
                                                "run-1"))
    assert len({r["created_at"] for r in rows}) == 1


CELL = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 12.0, 61.0, 800.0, -0.0, float("nan"), None]),
                 st.floats(0, 3000, allow_nan=False, width=32))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(data=st.data())
def test_score_rows_equals_the_per_person_rows_on_random_tables(world, data):
    """Random catalog tables: NaN (kept in `features`, None in `values`), nulls, −0.0, people
    with no record, and the champion's unused features tied at zero points."""
    scorecard = _champion(world.registry)
    n = data.draw(st.integers(1, 14))  # up to 8: the few-rows path; more: the vectorised one
    table = pl.DataFrame(
        {"person_key": [f"{i:064x}" for i in range(n)],
         **{name: data.draw(st.lists(CELL, min_size=n, max_size=n)) for name in FEATURE_NAMES},
         RECORDS_COUNTED: data.draw(st.lists(st.sampled_from([0, 3, None]), min_size=n,
                                             max_size=n))},
        schema={"person_key": pl.String, **{name: pl.Float64 for name in FEATURE_NAMES},
                RECORDS_COUNTED: pl.Int64})
    rows = score_rows(scorecard, "v1", table, VALID_AS_OF)
    assert exact(rows) == exact(per_person_rows(scorecard, "v1", table, VALID_AS_OF))


def test_score_rows_names_a_missing_feature_column(world):
    table = build_features(world.records, VALID_AS_OF, world.people()["person_key"].head(3))
    with pytest.raises(KeyError, match="ss_gaps_24m"):
        score_rows(_champion(world.registry), "v1", table.drop("ss_gaps_24m"), VALID_AS_OF)


def test_one_persons_records_load_as_the_store_loads_them(engine, world, stored):
    """One key takes the precompiled one-person path; the same key with a stranger beside it
    (who has no records) takes the list path, which must give the very same frames."""
    from service.store.records import load_records

    stranger = "f" * 64
    keys = world.people()["person_key"].head(15).to_list() + [stranger]
    for key in keys:
        fast, reference = load_records(engine, [key]), load_records(engine, [key, stranger])
        for source in Source:
            assert fast.get(source).equals(reference.get(source)), (source, key)
            assert fast.get(source).schema == reference.get(source).schema
    assert sum(fast.get(s).height for s in Source) == 0  # the stranger
