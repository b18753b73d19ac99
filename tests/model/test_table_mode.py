"""Table mode (`osmanthus train --table`): inferred monotone directions, stray text, unseen
categories, catalog keys, useless columns, delimiters, the table-mode card and base points."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from model.bundle import load_model
from model.columns import row_numbers
from model.table_mode import (
    direction_changes,
    infer_directions,
    prepare_table,
    spearman,
    spearman_p,
    stray_text,
    useless_columns,
)
from model.train import train_scorecard
from service.cli.main import main

FAST = {"max_rounds": 200, "patience": 20, "params": {"learning_rate": 0.2}}


def _table(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Income lowers the default rate, debt raises it, both with a noisy, weak slope (so an
    unconstrained fit wiggles); purpose is text; status is the text target."""
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(8, 0.5, n), 2)
    debt = np.round(rng.exponential(1, n), 3)
    purpose = rng.choice(["car", "house", "education"], n)
    logit = -1 - 0.0002 * (income - 3000) + 0.5 * debt + 0.6 * (purpose == "education")
    bad = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pl.DataFrame({"Income": income, "debt": debt, "purpose": purpose,
                         "status": np.where(bad, "default", "paid")})


def _numeric_points(card, name: str) -> np.ndarray:
    table = card.points_table().filter((pl.col("feature") == name) & pl.col("lower").is_not_null())
    return table["points"].to_numpy()


def test_numeric_columns_get_inferred_directions_and_monotone_points() -> None:
    frame = _table()
    card, report = train_scorecard(frame, "status", bad="default", seed=0, **FAST)
    assert card.directions == {"Income": 1, "debt": -1, "purpose": 0}
    assert report["directions_inferred"]["Income"]["spearman"] < 0
    assert report["directions_inferred"]["debt"]["spearman"] > 0
    income, debt = _numeric_points(card, "Income"), _numeric_points(card, "debt")
    assert len(income) > 5 and len(debt) > 5  # real step functions, not a flat line
    assert np.all(np.diff(income) >= -1e-9) and np.all(np.diff(debt) <= 1e-9)
    assert report["direction_changes"] == {"Income": 0, "debt": 0}
    # the opt-out leaves them free, and free points on a noisy slope do wiggle
    free, free_report = train_scorecard(frame, "status", bad="default", seed=0,
                                        infer_directions=False, **FAST)
    assert free.directions["Income"] == 0 and not free_report["directions_inferred"]
    assert sum(free_report["direction_changes"].values()) > 0


def test_only_a_declared_column_may_bend() -> None:
    """A U-shaped risk: free (and bent) only when the catalog declares it 0."""
    rng = np.random.default_rng(3)
    n = 4000
    age = rng.uniform(18, 80, n)
    bad = rng.random(n) < 1 / (1 + np.exp(-(-1.2 + 0.002 * (age - 45) ** 2)))
    frame = pl.DataFrame({"age": age, "y": bad.astype(int)})
    bent, report = train_scorecard(frame, "y", directions={"age": 0}, seed=0, **FAST)
    assert bent.directions == {"age": 0} and report["directions_declared"] == {"age": 0}
    assert report["direction_changes"]["age"] >= 1
    straight, report = train_scorecard(frame, "y", seed=0, **FAST)
    assert straight.directions["age"] != 0
    assert report["direction_changes"]["age"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.booleans()), min_size=3, max_size=60))
def test_direction_is_the_sign_of_spearman_and_survives_monotone_transforms(rows) -> None:
    x = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    dirs, rho, _ = infer_directions(np.column_stack([x, x ** 3 / 7 - 11]), y,
                                    ["x", "t"], {}, {})
    assert dirs["x"] == dirs["t"]  # unchanged by a strictly increasing transformation
    expected = spearmanr(x, y).statistic if x.std() and y.std() else 0.0
    assert rho["x"] == pytest.approx(0.0 if np.isnan(expected) else expected, abs=1e-9)
    assert dirs["x"] == (-1 if rho["x"] > 0 else 1)
    assert spearman(np.array([1.0, np.nan, 2.0, 3.0]), np.array([0.0, 1.0, 0.0, 1.0])) > 0


def test_a_column_without_a_significant_trend_is_left_free_and_said_so() -> None:
    """Noise gets no guessed direction at the default level; with `alpha=None` every sign
    counts. The p-value is scipy's for the same rank correlation."""
    rng = np.random.default_rng(11)
    n = 3000
    signal, noise = rng.standard_normal(n), rng.standard_normal(n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 0.8 * signal)))).astype(float)
    x = np.column_stack([signal, noise])
    dirs, rho, p = infer_directions(x, y, ["signal", "noise"], {}, {}, alpha=0.05)
    assert p["signal"] < 1e-6 and dirs["signal"] == -1
    assert p["noise"] >= 0.05 and dirs["noise"] == 0
    assert p["noise"] == pytest.approx(spearmanr(noise, y).pvalue, rel=1e-6)
    assert spearman_p(rho["noise"], n) == p["noise"]
    forced, _, _ = infer_directions(x, y, ["signal", "noise"], {}, {}, alpha=None)
    assert forced["noise"] == (-1 if rho["noise"] > 0 else 1)
    frame = pl.DataFrame({"signal": signal, "noise": noise, "y": y.astype(int)})
    card, report = train_scorecard(frame, "y", seed=0, **FAST)
    assert card.directions == {"signal": -1, "noise": 0}
    assert report["directions_inferred"]["noise"]["p_value"] >= 0.05
    assert report["direction_alpha"] == 0.05


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_row_numbers_are_the_first_true_rows_counted_from_one(mask) -> None:
    text = row_numbers(np.array(mask))
    hits = [i + 1 for i, m in enumerate(mask) if m]
    assert text.endswith(f"({len(hits)} in all)")
    shown = text.split(" (")[0].split(" ", 1)[1].replace(", …", "")
    assert [int(v) for v in shown.split(", ") if v] == hits[:5]


def test_stray_text_is_missing_at_training_not_a_category(tmp_path) -> None:
    frame = _table(2000, 1)
    values = frame["Income"].cast(pl.String).to_list()
    values[5], values[77], values[78] = "n/a", "unknown", "n/a"
    frame = frame.with_columns(pl.Series("Income", values))
    assert stray_text(frame["Income"]).sum() == 3
    assert stray_text(frame["purpose"]) is None  # real text stays text
    card, report = train_scorecard(frame, "status", bad="default", seed=0, **FAST)
    assert "Income" not in card.categories and card.directions["Income"] == 1
    [warning] = report["warnings"]
    assert "'Income'" in warning and "rows 6, 78, 79 (3 in all)" in warning
    assert "'n/a' ×2" in warning and "'unknown'" in warning


def test_useless_columns_are_named_and_dropped() -> None:
    n = 100
    frame = pl.DataFrame({"row": np.arange(n), "acct": [f"A{i}" for i in range(n)],
                          "same": [7] * n, "empty": [None] * n, "few": [1, None] * 50,
                          "amount": np.arange(n) * 1.5, "y": [0, 1] * 50})
    why = useless_columns(frame, [c for c in frame.columns if c != "y"])
    assert set(why) == {"row", "acct", "same", "empty"}
    assert "index-like" in why["row"] and "index-like" in why["acct"]
    assert "same value" in why["same"] and "missing" in why["empty"]
    # a declared column is the modeller's word: never index-like
    assert "row" not in useless_columns(frame, ["row"], {"row": 1})
    prepared = prepare_table(frame, "y")
    assert prepared.features == ["few", "amount"]
    assert sum("dropped" in w for w in prepared.warnings) == 4


def test_catalog_keys_and_delimiters_are_checked() -> None:
    frame = _table(50)
    with pytest.raises(ValueError, match="catalog keys match no column.*'Incom'"):
        prepare_table(frame, "status", catalog={"Incom": 1})
    with pytest.raises(ValueError, match="target or an id column"):
        prepare_table(frame, "status", catalog={"status": 1})
    with pytest.raises(ValueError, match="no column 'target'; columns found: 'Income'"):
        prepare_table(frame, "target")
    one = pl.DataFrame({"Income;debt;status": ["1;2;0"]})
    with pytest.raises(ValueError, match="one column.*';'"):
        prepare_table(one, "status")


def _write_tables(tmp_path) -> pl.DataFrame:
    frame = _table(1500, 4).with_row_index("id")
    frame = frame.with_columns(pl.lit("x").alias("constant"))
    values = frame["Income"].cast(pl.String).to_list()
    values[9] = "n/a"
    frame.with_columns(pl.Series("Income", values)).write_csv(tmp_path / "train.csv")
    return frame


def test_cli_table_mode_end_to_end(tmp_path) -> None:
    frame = _write_tables(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--table", str(tmp_path / "train.csv"), "--target",
                                  "status", "--bad", "default", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "'Income'" in result.output and "row 10 (1 in all)" in result.output
    assert "'id' dropped: index-like" in result.output
    assert "'constant' dropped" in result.output
    assert "2 inferred" in result.output
    loaded = load_model(tmp_path / "m")
    card = loaded.scorecard
    assert card.feature_names == ["Income", "debt", "purpose"]
    assert card.directions == {"Income": 1, "debt": -1, "purpose": 0}
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["base_points"] == pytest.approx(card.base_points)
    text = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "(table mode)" in text and "`status` = 'default'" in text
    assert "public bicycles" not in text and "deposit-free city service" not in text
    assert "| Income | more raises the score | inferred: Spearman ρ -" in text
    assert "dropped `id`" in text

    # scoring: unseen categories are counted, scored as missing and reported
    later = frame.head(40).with_columns(
        pl.when(pl.col("id") < 3).then(pl.lit("boat")).otherwise(pl.col("purpose"))
        .alias("purpose"))
    later.write_csv(tmp_path / "later.csv")
    result = runner.invoke(main, ["score", "--model", str(tmp_path / "m"), "--table",
                                  str(tmp_path / "later.csv"), "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert "'purpose': 3 row(s)" in result.output and "rows 1, 2, 3 (3 in all)" in result.output
    assert "base points" in result.output
    scores = pl.read_csv(tmp_path / "s.csv")
    missing = card.points_table().filter((pl.col("feature") == "purpose")
                                         & (pl.col("bin") == "missing"))["points"][0]
    assert scores["points_purpose"].head(3).to_list() == pytest.approx([missing] * 3)

    # text in a numeric column at scoring: a message naming column and rows, exit 1
    values = later["Income"].cast(pl.String).to_list()
    values[1] = "n/a"
    later.with_columns(pl.Series("Income", values)).write_csv(tmp_path / "bad.csv")
    result = runner.invoke(main, ["score", "--model", str(tmp_path / "m"), "--table",
                                  str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b.csv")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "'Income' must hold numbers" in result.output and "row 2 (1 in all)" in result.output
    assert "Traceback" not in result.output


def test_cli_table_mode_errors(tmp_path) -> None:
    _write_tables(tmp_path)
    runner = CliRunner()
    (tmp_path / "cat.json").write_text('{"income": 1}')
    result = runner.invoke(main, ["train", "--table", str(tmp_path / "train.csv"), "--target",
                                  "status", "--bad", "default", "--catalog",
                                  str(tmp_path / "cat.json"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "'income'" in result.output
    text = (tmp_path / "train.csv").read_text().replace(",", ";")
    (tmp_path / "semi.csv").write_text(text)
    result = runner.invoke(main, ["train", "--table", str(tmp_path / "semi.csv"), "--target",
                                  "status", "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "one column" in result.output
    assert "'id;Income;debt;purpose;status;constant'" in result.output
    result = runner.invoke(main, ["train", "--table", str(tmp_path / "semi.csv"), "--target",
                                  "status", "--bad", "default", "--separator", ";",
                                  "--no-infer-directions", "--out", str(tmp_path / "free")])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "free").scorecard.directions["Income"] == 0


def test_direction_changes_counts_turns() -> None:
    points = pl.DataFrame({"feature": ["a"] * 5 + ["b"] * 4, "lower": [0.0] * 9,
                           "points": [1.0, 2.0, 2.0, 1.0, 3.0, 5.0, 4.0, 3.0, 3.0]})
    assert direction_changes(points) == {"a": 2, "b": 0}
