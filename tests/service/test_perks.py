"""Perk decisions follow the configuration: threshold, conditions, human review."""

from __future__ import annotations

import json

import pytest

from service.rights.perks import Perk, load_perks

BIKE = load_perks().perk("bike-deposit-free")
CLEAN = {"ct_active_listings": 0.0, "pn_serious_counting": 0.0}


def test_the_demo_perks_are_those_of_the_design():
    config = load_perks()
    assert config.thresholds() == {
        "bike-deposit-free": 600, "library-deposit-free": 550, "hospital-pay-later": 650,
        "permit-fast-track": 700,
    }


@pytest.mark.parametrize("score,features,review,answer", [
    (600, CLEAN, "none", "yes"),
    (599.9, CLEAN, "none", "no"),
    (800, {**CLEAN, "ct_active_listings": 1.0}, "none", "no"),
    (800, CLEAN, "pending", "pending"),
    (500, CLEAN, "pending", "pending"),
    (800, CLEAN, "decided", "yes"),
])
def test_a_decision(score, features, review, answer):
    assert BIKE.decide(score, features, review) == answer


@pytest.mark.parametrize("score,outcome,answer", [
    (500, "eligible", "yes"),  # a reviewer's yes stands against the score
    (800, "not_eligible", "no"),
])
def test_a_human_reviewers_decision_replaces_the_scores(score, outcome, answer):
    assert BIKE.decide(score, CLEAN, "decided", outcome) == answer


def test_points_needed():
    assert BIKE.points_needed(560) == 40 and BIKE.points_needed(650) == 0


def test_an_unknown_condition_or_partner_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown conditions"):
        Perk("p", 1, "x", "名", "name", 600, ("no_bad_vibes",))
    path = tmp_path / "perks.json"
    path.write_text(json.dumps({"partners": [], "perks": [
        {"perk_id": "p", "policy_version": 1, "partner_id": "ghost", "name_zh": "名",
         "name_en": "n", "min_score": 600, "conditions": []}]}))
    with pytest.raises(ValueError, match="unknown partner"):
        load_perks(path)


def test_a_thin_file_gets_no_perk_whatever_its_score():
    from service.rights.perks import load_perks, thin_file

    perk = load_perks().perk("library-deposit-free")
    empty = {"sources_reporting": 0.0, "ct_active_listings": 0.0}
    assert thin_file(empty) and perk.decide(900, empty) == "no"
    on_file = {**empty, "sources_reporting": 1.0}
    assert not thin_file(on_file) and perk.decide(900, on_file) == "yes"
    assert not thin_file({})  # a caller that passes no such column is not judged thin
