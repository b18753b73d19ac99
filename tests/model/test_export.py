"""The printed scorecard: summing a person's rows reproduces their score exactly."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from model.export import BASE_ROW, export_scorecard
from tests.model import make_people, small_scorecard


def _bin(rows: list[dict], value: float | None) -> dict:
    """Find the person's bin by reading the table as a human would: (lower, upper]."""
    if value is None or math.isnan(value):
        (hit,) = [r for r in rows if r["bin"] == "missing"]
        return hit
    hits = [r for r in rows if r["bin"] != "missing" and r["lower"] < value <= r["upper"]]
    if not hits:  # the last bin is (t, inf)
        hits = [r for r in rows if r["upper"] == math.inf and value > r["lower"]]
    assert len(hits) == 1
    return hits[0]


def _bin_points(rows: list[dict], value: float | None) -> float:
    return _bin(rows, value)["points"]


@pytest.fixture(scope="module")
def card():
    return small_scorecard()[0]


def test_points_table_shape(card) -> None:
    table = card.points_table()
    assert table.columns == ["feature", "bin", "lower", "upper", "points"]
    assert set(table["feature"]) == set(card.feature_names)
    for name in card.feature_names:
        rows = table.filter(pl.col("feature") == name)
        finite = rows.drop_nulls("lower")
        assert finite["lower"][0] == -math.inf and finite["upper"][-1] == math.inf
        assert finite["lower"][1:].to_list() == finite["upper"][:-1].to_list()  # contiguous


def test_summing_rows_reproduces_the_score(card, tmp_path) -> None:
    csv_path, md_path = export_scorecard(card, tmp_path)
    table = pl.read_csv(csv_path)
    base = table.filter(pl.col("feature") == BASE_ROW)["points"][0]
    assert base == card.base_points
    by_feature = {n: table.filter(pl.col("feature") == n).to_dicts() for n in card.feature_names}
    people, _ = make_people(60, 41)
    people = people.with_columns(pl.when(pl.col("ss_arrears_latest") > 500).then(None)
                                 .otherwise(pl.col("ss_arrears_latest"))
                                 .alias("ss_arrears_latest"))
    scored = card.score_frame(people)
    for i, person in enumerate(people.iter_rows(named=True)):
        total = base
        for name in card.feature_names:
            total += _bin_points(by_feature[name], person[name])
        assert total == scored.raw_score[i]  # same floats, same order: exact
    text = md_path.read_text()
    assert f"Base points: {math.floor(card.base_points)}** (exact {card.base_points:.4f})" in text
    assert all(f"## {n}" in text for n in card.feature_names)


def test_the_card_prints_the_whole_points_a_page_shows(card, tmp_path) -> None:
    """The card's base is every page's base; a page shows a bin's whole points from the card
    in every feature but as few as the sum needs (|floor(raw) − card sum| of them, each the
    other whole number next to the exact points)."""
    from model.explain import explain_frame

    csv_path, md_path = export_scorecard(card, tmp_path)
    table = pl.read_csv(csv_path)
    base = table.filter(pl.col("feature") == BASE_ROW).row(0, named=True)
    by_feature = {n: table.filter(pl.col("feature") == n).to_dicts() for n in card.feature_names}
    people, _ = make_people(200, 43)
    differing = 0
    for person, page in zip(people.iter_rows(named=True), explain_frame(card, people),
                            strict=True):
        assert page["base_shown"] == base["points_whole"] == math.floor(card.base_points)
        on_card = {}
        for name in card.feature_names:
            row = _bin(by_feature[name], person[name])
            on_card[name] = row["points_whole"]
            assert row["points_whole"] == math.floor(row["points"] + 0.5)
            assert abs(page["points_shown"][name] - row["points"]) < 1
        card_total = base["points_whole"] + sum(on_card.values())
        moved = [n for n in on_card if page["points_shown"][n] != on_card[n]]
        assert len(moved) == abs(math.floor(page["raw_score"]) - card_total)
        differing += len(moved)
    assert 0 < differing < 0.1 * 200 * len(card.feature_names)
    assert "| +" in md_path.read_text() or "| -" in md_path.read_text()


def test_categorical_bins_export(tmp_path) -> None:
    from model.train import train_scorecard

    rng = np.random.default_rng(0)
    n = 800
    colour = rng.choice(["red", "green", "blue"], n)
    y = (rng.random(n) < np.where(colour == "red", 0.5, 0.15)).astype(int)
    frame = pl.DataFrame({"colour": colour, "x": rng.normal(size=n)})
    card, _ = train_scorecard(frame, y, seed=0, max_rounds=50, patience=10)
    csv_path, _ = export_scorecard(card, tmp_path)
    rows = pl.read_csv(csv_path).filter(pl.col("feature") == "colour")
    assert set(rows["bin"]) == {"blue", "green", "red", "missing"}
    red = rows.filter(pl.col("bin") == "red")["points"][0]
    assert red < rows.filter(pl.col("bin") == "green")["points"][0]
