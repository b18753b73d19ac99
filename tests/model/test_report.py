"""The modeller's report: a self-contained HTML page with every figure embedded, alone and
beside a champion, from Python and from the `osmanthus report` command."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from model.bundle import frame_hash, load_model, save_model
from model.evaluate import evaluate
from model.explain import explain
from model.report import SECTIONS, Model, build_report, markdown_to_html, reason_frequencies
from model.report_plots import Curve, roc_ks, shap_summary
from tests.model.test_bundle import fitted, people_for

AS_OF = dt.date(2025, 1, 1)
# The small test models score about 200–530, so the perks sit inside that range.
PERKS = {"library": 350.0, "bike": 400.0, "hospital": 450.0}
PNG = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Two saved models (the champion kind and a weaker one) and the validation snapshot."""
    root = tmp_path_factory.mktemp("bundles")
    scorecard, report, train, y, valid, vy = fitted()
    weaker, weaker_report, *_ = fitted("weaker")
    evaluation = evaluate(scorecard, valid, vy, train_frame=train, people=people_for(valid, 3),
                          thresholds=PERKS, as_of=AS_OF)
    strong = save_model(scorecard, root / "strong", report=report, evaluation=evaluation,
                        training_data_hash=frame_hash(train, y))
    weak = save_model(weaker, root / "weak", report=weaker_report,
                      training_data_hash=frame_hash(train, y))
    return strong, weak, train, valid, vy


def _build(bundles, out, against: bool):
    strong, weak, train, valid, vy = bundles
    champion = Model("weak", load_model(weak)) if against else None
    return build_report(Model("strong", load_model(strong)), valid, vy, out, champion=champion,
                        people=people_for(valid, 3), thresholds=PERKS, train_frame=train,
                        as_of=AS_OF, sample=300)


def _check_self_contained(path) -> str:
    page = path.read_text(encoding="utf-8")
    images = IMAGE.findall(page)
    files = sorted(p.name for p in path.parent.glob("*.png"))
    assert len(images) == len(files) >= 8
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG)
    for name in files:
        assert (path.parent / name).read_bytes().startswith(PNG)
        assert name in page  # each figure is named under its picture
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in page
    assert not re.search(r"https?://", page), "the report must reference nothing outside it"
    assert not re.search(r"<(script|link|iframe)\b", page)
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    return page


def test_report_of_one_model_is_self_contained(bundles, tmp_path):
    path = _build(bundles, tmp_path / "alone", against=False)
    assert path == tmp_path / "alone" / "report.html"
    page = _check_self_contained(path)
    assert len(IMAGE.findall(page)) == 3 + 1 + 1 + 1 + len(PERKS)  # curves, PSI, SHAP, reasons
    for perk, minimum in PERKS.items():
        assert f"{perk} (score ≥ {minimum:g})" in page
    for attribute in ("gender", "age_band", "district"):
        assert attribute in page
    assert "AIR (p-value)" in page
    assert "Score PSI against the training snapshot" in page
    card = page.split('<section id="model-card">')[1]
    assert "<h3>Model card: Osmanthus scorecard</h3>" in card and "<h4>Intended use</h4>" in card
    assert "<li>" in card and "<table>" in card and "<th>AUC</th>" in card
    numbers = json.loads((path.parent / "report.json").read_text())
    assert numbers["models"] == ["strong"]
    assert set(numbers["evaluations"]["strong"]["fairness"]) == set(PERKS)


def test_report_against_a_champion_shows_both(bundles, tmp_path):
    path = _build(bundles, tmp_path / "against", against=True)
    page = _check_self_contained(path)
    assert len(IMAGE.findall(page)) == 3 + 1 + 2 + 1 + len(PERKS)  # a SHAP plot per model
    assert "strong against weak" in page
    summary = page.split('<section id="roc-and-ks-curves">')[0]
    assert "<th>strong</th><th>weak</th>" in summary
    assert "Score PSI against the champion" in page
    numbers = json.loads((path.parent / "report.json").read_text())
    strong, weak = numbers["evaluations"]["strong"], numbers["evaluations"]["weak"]
    assert strong["metrics"]["auc"] > weak["metrics"]["auc"]
    assert strong["stability"]["psi_vs_champion"] > 0
    assert "weak: approval rate" in page
    assert "Model card of weak" in page


def test_reason_frequencies_match_the_citizens_explanations(bundles):
    strong, _, _, valid, _ = bundles
    scorecard = load_model(strong).scorecard
    rows = valid.head(80).with_columns(
        pl.Series("records_counted", [0 if i % 10 == 0 else 3 for i in range(80)]))
    shares = reason_frequencies(scorecard, rows)
    counted: dict[str, int] = {}
    for i in range(rows.height):
        for reason in explain(scorecard, rows[i], lang="en").reasons_lowering:
            counted[reason.feature] = counted.get(reason.feature, 0) + 1
    expected = {k: v / rows.height for k, v in counted.items()}
    assert {k: v for k, v in shares.items() if v} == pytest.approx(expected)
    empty = scorecard.score_frame(rows.filter(pl.col("records_counted") == 0))
    lowered = float(np.mean(empty.raw_score < empty.base_points))
    assert shares["no_record"] == pytest.approx(0.1 * lowered)


def test_figures_are_deterministic():
    rng = np.random.default_rng(0)
    target = (rng.random(400) < 0.3).astype(np.int64)
    score = 500 - 80 * target + rng.normal(0, 40, 400)
    curve = Curve("m", score, 1 / (1 + np.exp((score - 400) / 40)), target,
                  {"auc": 0.8, "ks": 0.5}, [])
    assert roc_ks([curve]) == roc_ks([curve])
    points, values = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    first = shap_summary(points, values, ["a", "b", "c"], "t", seed=1)
    assert first.startswith(PNG) and first == shap_summary(points, values, ["a", "b", "c"],
                                                           "t", seed=1)


def test_markdown_to_html_covers_the_model_card_subset():
    text = ("# Card <b>\n\n## Use\n\nA paragraph\nover two lines with **bold** and `code`.\n\n"
            "- one\n- two\n\n1. first\n2. second\n\n| a | b |\n|---|---|\n| 1 | 2 ≥ 1 |\n\n"
            "See [the docs](https://example.org/x).\n")
    out = markdown_to_html(text, shift=2).replace("\n", "")  # between blocks only
    assert "<h3>Card &lt;b&gt;</h3>" in out and "<h4>Use</h4>" in out
    assert "<p>A paragraph over two lines with <strong>bold</strong> and <code>code</code>.</p>" \
        in out
    assert "<ul><li>one</li><li>two</li></ul>" in out
    assert "<ol><li>first</li><li>second</li></ol>" in out
    assert "<tr><th>a</th><th>b</th></tr>" in out and "<tr><td>1</td><td>2 ≥ 1</td></tr>" in out
    assert "href" not in out and "the docs" in out  # a link is text, never a reference


def test_report_command(bundles, tmp_path):
    from service.cli.main import main

    strong, weak, train, valid, vy = bundles
    features, outcomes = tmp_path / "features.parquet", tmp_path / "outcomes.parquet"
    people, train_path, perks = (tmp_path / "people.parquet", tmp_path / "train.parquet",
                                 tmp_path / "perks.json")
    valid.with_columns(pl.lit(AS_OF).alias("snapshot")).write_parquet(features)
    pl.DataFrame({"person_key": valid["person_key"], "snapshot": [AS_OF] * valid.height,
                  "defaulted": vy}).write_parquet(outcomes)
    people_for(valid, 3).write_parquet(people)
    train.write_parquet(train_path)
    perks.write_text(json.dumps({"perks": [{"perk_id": k, "min_score": v}
                                           for k, v in PERKS.items()]}))
    out = tmp_path / "report"
    args = ["report", str(strong), "--against", str(weak), "--features", str(features),
            "--outcomes", str(outcomes), "--as-of", AS_OF.isoformat(), "--people", str(people),
            "--train-features", str(train_path), "--perks", str(perks), "--sample", "200",
            "--registry", str(tmp_path / "registry"), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'}" in result.output
    page = _check_self_contained(out / "report.html")
    assert "strong against weak" in page and "bike (score ≥ 400)" in page

    missing = CliRunner().invoke(main, [*args[:1], "v0009", *args[2:]])
    assert missing.exit_code != 0 and "v0009" in missing.output


def test_a_perk_nobody_reaches_gets_a_note_not_an_empty_fairness_panel(bundles, tmp_path):
    strong, weak, train, valid, vy = bundles
    path = build_report(Model("strong", load_model(strong)), valid, vy, tmp_path / "out",
                        people=people_for(valid, 3), thresholds={**PERKS, "palace": 999.0},
                        train_frame=train, as_of=AS_OF, sample=300)
    page = _check_self_contained(path)
    assert "Nobody in this snapshot reaches 999" in page
    assert "not measurable at: palace" in page
    assert "Approval rates at palace" not in page


def test_report_against_the_same_model_warns(bundles, tmp_path):
    from service.cli.main import main

    strong, weak, train, valid, vy = bundles
    features, outcomes = tmp_path / "features.parquet", tmp_path / "outcomes.parquet"
    valid.with_columns(pl.lit(AS_OF).alias("snapshot")).write_parquet(features)
    pl.DataFrame({"person_key": valid["person_key"], "snapshot": [AS_OF] * valid.height,
                  "defaulted": vy}).write_parquet(outcomes)
    args = ["report", str(strong), "--against", str(strong), "--features", str(features),
            "--outcomes", str(outcomes), "--as-of", AS_OF.isoformat(), "--sample", "200",
            "--registry", str(tmp_path / "registry"), "--out", str(tmp_path / "report")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "is the same model as" in result.output
    other = CliRunner().invoke(main, [*args[:3], str(weak), *args[4:]])
    assert other.exit_code == 0 and "same model" not in other.output
