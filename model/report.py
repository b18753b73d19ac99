"""The modeller's report: one self-contained HTML page about a model on one snapshot, beside the
champion when one is given.

    report.html   every figure embedded as a base64 PNG, inline CSS, no script, no link to
                  anything outside the file: it opens from disk with no server and no network
    *.png         the same figures as files, next to it
    report.json   the numbers behind it (both evaluations, PSI, reason frequencies)

Sections: the metrics side by side; ROC and KS curves; the score distribution by outcome;
calibration by decile; PSI per feature (against the training snapshot) and of the score
(against the champion on the same snapshot, and against the training snapshot); the SHAP
summary of each person's points with the `shap` package; how often each feature is among a
person's top-4 lowering reasons; fairness by gender, age band and district at every perk
threshold; and the model card. The card's Markdown is rendered by markdown-it-py
(`markdown_to_html`: CommonMark and tables, raw HTML escaped, links shown as text).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from markdown_it import MarkdownIt

from features.catalog import BY_NAME
from model import report_plots as plots
from model.evaluate import evaluate, psi
from model.explain import NO_RECORD
from model.fairness import AIR_FLOOR
from model.recalibrate import before_and_after, comparison
from model.shown import apportion, select

TOP_REASONS = 4  # a citizen is shown up to four lowering reasons (model/explain.py)
MIN_POINTS = 0.5  # explain()'s smallest reason
SHAP_SAMPLE = 2000
SECTIONS = ("Summary", "ROC and KS curves", "Score distribution by outcome", "Calibration",
            "Stability (PSI)", "SHAP summary", "Reason-code frequencies",
            "Fairness by gender, age band and district", "Model card")


@dataclass
class Model:
    """A model in the report: what the modeller called it and the loaded bundle."""

    label: str
    loaded: Any  # model.bundle.LoadedModel


@dataclass
class _Figure:
    name: str
    alt: str
    data: bytes


def reason_frequencies(scorecard: Any, frame: pl.DataFrame, *, top: int = TOP_REASONS,
                       min_points: float = MIN_POINTS, scored: Any = None) -> dict[str, float]:
    """Share of people for whom each feature is among their named lowering reasons, chosen as
    `model.explain.explain` chooses them (`model.shown.select`: the `top` lowest at most
    −`min_points`, then more until "smaller factors" is no larger than the smallest); a person with `records_counted` = 0 has the single reason `no_record`,
    a lowering one when the empty file scores below the base points."""
    scored = scored if scored is not None else scorecard.score_frame(frame)
    points = np.asarray(scored.points, dtype=np.float64)
    n, k = points.shape
    if n == 0:
        return {}
    no_record = np.zeros(n, dtype=bool)
    if "records_counted" in frame.columns:
        no_record = (frame["records_counted"] == 0).fill_null(False).to_numpy()
    shown = apportion(points, scored.base_points, scored.raw_score, scored.score)
    order, low, _, _ = select(points, shown.points, no_record, top, min_points)
    hit = np.arange(k)[None, :] < low[:, None]  # the named lowering reasons, in `order`
    counts = np.bincount(order[hit], minlength=k)
    shares = {name: float(counts[j]) / n for j, name in enumerate(scorecard.feature_names)}
    if no_record.any():  # their one reason lowers the score when the empty file is below base
        lowered = no_record & (np.asarray(scored.raw_score) < scored.base_points)
        shares[NO_RECORD] = float(lowered.mean())
    return shares


# --- Markdown → HTML (the model card) --------------------------------------------------------

def _heading(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    token.tag = f"h{min(6, int(token.tag[1:]) + env.get('shift', 0))}"
    return self.renderToken(tokens, idx, options, env)


def _link_open(self, tokens, idx, options, env) -> str:
    env.setdefault("links", []).append(tokens[idx].attrGet("href") or "")
    return ""


def _link_close(self, tokens, idx, options, env) -> str:
    return f" (<code>{html.escape(env['links'].pop())}</code>)"


def _markdown() -> MarkdownIt:
    """CommonMark with tables, raw HTML escaped, no images; a link keeps its text and shows
    its address as text (the report references nothing outside itself)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")
    for name, rule in (("heading_open", _heading), ("heading_close", _heading),
                       ("link_open", _link_open), ("link_close", _link_close),
                       ("softbreak", lambda *_: " ")):
        md.add_render_rule(name, rule)
    return md


def markdown_to_html(text: str, shift: int = 0) -> str:
    """A model card's Markdown as HTML (markdown-it-py), heading levels moved down by
    `shift` so that the card sits under the report's own headings."""
    return _markdown().render(text, {"shift": shift})


# --- the report ------------------------------------------------------------------------------

def _num(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table{f" class={cls!r}" if cls else ""}><tr>{head}</tr>{body}</table>'


def _img(figure: _Figure) -> str:
    data = base64.b64encode(figure.data).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.alt)}">'
            f"<figcaption>{html.escape(figure.alt)} ({figure.name})</figcaption></figure>")


def build_report(challenger: Model, frame: pl.DataFrame, target: np.ndarray, out_dir: str | Path,
                 *, champion: Model | None = None, people: pl.DataFrame | None = None,
                 thresholds: dict[str, float] | None = None, true_pd: np.ndarray | None = None,
                 train_frame: pl.DataFrame | None = None, as_of: dt.date | None = None,
                 sample: int = SHAP_SAMPLE, seed: int = 0) -> Path:
    """Evaluate `challenger` (and `champion`, on the same rows) and write the report into
    `out_dir`; return the path of report.html. `frame`/`target` are one snapshot's features and
    outcomes (`model.evaluate.snapshot`); `people` gives the fairness tables, `train_frame` the
    PSI against training, `thresholds` the perk minimum scores (default: the band floors)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    as_of = as_of or dt.date.today()
    target = np.asarray(target, dtype=np.int64)
    models = [challenger] + ([champion] if champion is not None else [])
    evaluations, scored, reasons = [], [], {}
    for model in models:
        card = model.loaded.scorecard
        evaluations.append(evaluate(card, frame, target, train_frame=train_frame,
                                    people=people, thresholds=thresholds, true_pd=true_pd,
                                    as_of=as_of))
        scored.append(card.score_frame(frame))
        reasons[model.label] = reason_frequencies(card, frame, scored=scored[-1])
    if champion is not None:
        evaluations[0]["stability"]["psi_vs_champion"] = psi(
            np.asarray(scored[1].score, dtype=np.float64),
            np.asarray(scored[0].score, dtype=np.float64))
    curves = [plots.Curve(m.label, np.asarray(s.score, dtype=np.float64),
                          np.asarray(s.probability, dtype=np.float64), target, e["metrics"],
                          e["calibration"]) for m, s, e in zip(models, scored, evaluations,
                                                                strict=True)]
    recal = before_and_after(challenger.loaded.scorecard, challenger.loaded.metadata, frame,
                             target, champion.loaded.scorecard if champion else None)
    if recal is not None:  # a recalibration: its parent's calibration on the same rows too
        curves.append(plots.Curve(f"{challenger.label} before recalibration", target=target,
                                  metrics={"brier": recal[0]["before"]["brier"]},
                                  calibration=recal[0]["before"]["calibration"], **recal[1]))
    figures = _figures(models, curves, evaluations, scored, reasons, frame, sample, seed)
    for figure in figures.values():
        (out / figure.name).write_bytes(figure.data)
    numbers = {"as_of": as_of.isoformat(), "models": [m.label for m in models],
               "evaluations": dict(zip([m.label for m in models], evaluations, strict=True)),
               "reason_frequencies": reasons, "figures": [f.name for f in figures.values()]}
    if recal is not None:
        numbers["recalibration"] = recal[0]
    (out / "report.json").write_text(json.dumps(numbers, indent=2, sort_keys=True,
                                                ensure_ascii=False) + "\n")
    path = out / "report.html"
    path.write_text(_html(models, evaluations, reasons, figures, as_of,
                          recal[0] if recal else None),
                    encoding="utf-8")
    return path


def _figures(models: list[Model], curves: list[plots.Curve], evaluations: list[dict],
             scored: list[Any], reasons: dict[str, dict[str, float]], frame: pl.DataFrame,
             sample: int, seed: int) -> dict[str, _Figure]:
    """Every figure; `curves` has one per model, then any drawn on the calibration plot only
    (a recalibrated model before its recalibration)."""
    thresholds = evaluations[0]["thresholds"]
    figures = {
        "roc_ks": _Figure("roc_ks.png", "ROC and KS curves", plots.roc_ks(curves[:len(models)])),
        "distribution": _Figure("score_distribution.png", "Score distribution by outcome",
                                plots.score_distribution(curves[:len(models)], thresholds)),
        "calibration": _Figure("calibration.png", "Predicted vs observed default rate by "
                               "decile", plots.calibration(curves)),
    }
    feature_psi = evaluations[0]["stability"].get("feature_psi")
    if feature_psi:
        figures["psi"] = _Figure("psi_features.png", "PSI per feature against the training "
                                 "snapshot", plots.psi_bars(feature_psi, "Feature PSI, "
                                                            "validation vs training snapshot"))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(frame.height, min(frame.height, sample), replace=False))
    for i, (model, result) in enumerate(zip(models, scored, strict=True)):
        card = model.loaded.scorecard
        figures[f"shap{i}"] = _Figure(
            f"shap_summary_{i + 1}.png", f"SHAP summary of {model.label} ({len(rows)} people)",
            plots.shap_summary(np.asarray(result.points)[rows], card.encode(frame[rows]),
                               list(card.feature_names), f"{model.label}: points per feature",
                               seed=seed))
    figures["reasons"] = _Figure("reason_codes.png", "Reason-code frequencies",
                                 plots.reason_bars(reasons))
    for j, perk in enumerate(evaluations[0].get("fairness") or {}):
        if _nobody_reaches(evaluations, perk):
            continue  # an empty panel would read as "fair"; the section says why instead
        entries = [(m.label, e["fairness"][perk]) for m, e in zip(models, evaluations,
                                                                  strict=True)]
        figures[f"fair{j}"] = _Figure(f"fairness_{j + 1}.png", f"Approval rates at {perk}",
                                      plots.fairness_bars(perk, entries, AIR_FLOOR))
    return figures


def _summary(models: list[Model], evaluations: list[dict]) -> str:
    def row(name: str, get: Any, digits: int = 4) -> list[str]:
        return [name] + [_num(get(e), digits) for e in evaluations]

    rows = [["created", *[str(m.loaded.metadata.get("created_at")) for m in models]],
            ["bundle digest", *[m.loaded.digest[:16] or "—" for m in models]],
            ["features", *[str(len(m.loaded.scorecard.feature_names)) for m in models]],
            ["people", *[str(e["rows"]) for e in evaluations]],
            row("default rate", lambda e: e["default_rate"]),
            row("AUC", lambda e: e["metrics"]["auc"]), row("KS", lambda e: e["metrics"]["ks"]),
            row("Gini", lambda e: e["metrics"]["gini"]),
            row("Brier", lambda e: e["metrics"]["brier"]),
            row("true-probability AUC (ceiling)", lambda e: (e.get("true_pd") or {}).get("auc")),
            row("mean score", lambda e: e["score"]["mean"], 1),
            row("score PSI vs training", lambda e: e["stability"].get("score_psi")),
            row("score PSI vs champion", lambda e: e["stability"].get("psi_vs_champion"))]
    for perk, minimum in evaluations[0]["thresholds"].items():
        rows.append(row(f"approved at {perk} (≥ {minimum:g})",
                        lambda e, p=perk: (e.get("fairness") or {}).get(p, {}).get(
                            "approval_rate"), 3))
    rows.append(["fairness failures", *[str(len(e.get("fairness_failures") or []))
                                        if "fairness" in e else "not checked"
                                        for e in evaluations]])
    return _table(["", *[m.label for m in models]], rows, "metrics")


def _bands(models: list[Model], evaluations: list[dict]) -> str:
    header = ["band"] + [f"{m.label}: {c}" for m in models for c in ("people", "default rate")]
    rows = []
    for i, band in enumerate(evaluations[0]["bands"]):
        cells = [band["band"]]
        for e in evaluations:
            b = e["bands"][i]
            cells += [f"{b['count']} ({_num(b['share'], 3)})", _num(b.get("default_rate"))]
        rows.append(cells)
    return _table(header, rows)


def _psi_section(evaluations: list[dict], figures: dict[str, _Figure]) -> str:
    stability = evaluations[0]["stability"]
    parts = ["<p>PSI compares two distributions: below 0.1 stable, 0.1–0.25 worth watching, "
             "above 0.25 shifted.</p>"]
    lines = []
    if "psi_vs_champion" in stability:
        lines.append(f"Score PSI against the champion's scores on the same snapshot: "
                     f"<strong>{_num(stability['psi_vs_champion'])}</strong>.")
    if "score_psi" in stability:
        lines.append(f"Score PSI against the training snapshot: "
                     f"<strong>{_num(stability['score_psi'])}</strong>.")
    if not lines:
        lines.append("No reference distribution: give the training snapshot's features "
                     "(--train-features) or a champion (--against).")
    parts += [f"<p>{line}</p>" for line in lines]
    if "psi" in figures:
        parts.append(_img(figures["psi"]))
        ranked = sorted(stability["feature_psi"].items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append("<details><summary>PSI per feature (table)</summary>"
                     + _table(["feature", "PSI"], [[k, _num(v)] for k, v in ranked])
                     + "</details>")
    return "\n".join(parts)


def _reasons_section(models: list[Model], reasons: dict[str, dict[str, float]],
                     figures: dict[str, _Figure]) -> str:
    first = reasons[models[0].label]
    names = sorted(set().union(*map(set, reasons.values())), key=lambda n: (-first.get(n, 0), n))
    rows = [[n, BY_NAME[n].description_en if n in BY_NAME else
             ("no record yet" if n == NO_RECORD else ""),
             *[_num(reasons[m.label].get(n, 0.0), 3) for m in models]] for n in names]
    return (f"<p>How often each feature is among a person's top {TOP_REASONS} lowering "
            f"reasons (at least {MIN_POINTS} points), chosen as the citizen's explanation "
            "chooses them.</p>" + _img(figures["reasons"])
            + _table(["feature", "meaning", *[f"{m.label}: share" for m in models]], rows))


def _fairness_section(models: list[Model], evaluations: list[dict],
                      figures: dict[str, _Figure]) -> str:
    if "fairness" not in evaluations[0]:
        return "<p>Not measured: give the people table (--people).</p>"
    parts = [f"<p>Approval rate (score ≥ the perk's minimum) of each group. Adverse-impact ratio "
             f"(AIR) = lowest group's rate ÷ highest, over groups of at least "
             f"{evaluations[0]['fairness_min_group']} people; below {AIR_FLOOR} fails when the "
             "gap is significant (two-proportion z-test, Bonferroni-adjusted p &lt; 0.05).</p>"]
    unmeasured = []
    for j, (perk, entry) in enumerate(evaluations[0]["fairness"].items()):
        parts.append(f"<h3>{html.escape(perk)} (score ≥ {entry['threshold']:g})</h3>")
        if _nobody_reaches(evaluations, perk):
            unmeasured.append(perk)
            parts.append(f"<p class=\"note\">Nobody in this snapshot reaches {entry['threshold']:g}"
                         ", so fairness at this perk cannot be measured here (no approvals to "
                         "compare).</p>")
            continue
        parts.append(_img(figures[f"fair{j}"]))
        rows = []
        for attribute, detail in entry["attributes"].items():
            others = [e["fairness"][perk]["attributes"][attribute] for e in evaluations]
            for g, group in enumerate(detail["groups"]):
                rows.append([attribute, group["group"], group["count"],
                             *[_num(o["groups"][g]["rate"], 3) for o in others]])
            rows.append([attribute, "AIR (p-value)", "",
                         *[f"{_num(o['air'], 3)} (p = {_num(o.get('p_value'), 3)})"
                           for o in others]])
        parts.append(_table(["attribute", "group", "people",
                             *[f"{m.label}: approval rate" for m in models]], rows))
    for model, e in zip(models, evaluations, strict=True):
        failures = e.get("fairness_failures") or []
        notes = e.get("fairness_notes") or []
        parts.append(f"<p><strong>{html.escape(model.label)}</strong> — failures: "
                     + (html.escape("; ".join(failures)) if failures else "none")
                     + ("" if not unmeasured else " (not measurable at: "
                        + html.escape(", ".join(unmeasured)) + ")")
                     + ("" if not notes else "; noted, not significant: "
                        + html.escape("; ".join(notes))) + "</p>")
    return "\n".join(parts)


def _nobody_reaches(evaluations: list[dict], perk: str) -> bool:
    """No group of any model has anyone at or above the perk's minimum."""
    return all(group["rate"] in (0, 0.0, None)
               for e in evaluations
               for detail in e["fairness"][perk]["attributes"].values()
               for group in detail["groups"])


def _card(model: Model) -> str:
    path = Path(model.loaded.directory) / "MODEL_CARD.md"
    if not path.is_file():
        return "<p>This bundle has no MODEL_CARD.md.</p>"
    return markdown_to_html(path.read_text(encoding="utf-8"), shift=2)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:0 auto;
max-width:1100px;padding:1rem 1.5rem;color:#222;line-height:1.45}
h1{color:#8a3a1f}h2{border-bottom:2px solid #e8c07d;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f7efe2}table.metrics td:not(:first-child){font-variant-numeric:tabular-nums}
figure{margin:.8rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
table{display:block;max-width:100%;overflow-x:auto}td,th{overflow-wrap:anywhere}
pre{overflow-x:auto}body{overflow-wrap:anywhere}@media (max-width:600px){body{padding:.5rem .75rem}}
figcaption{font-size:.8rem;color:#555}nav a{margin-right:.8rem}
code{background:#f3f3f3;padding:0 .2rem}details{margin:.5rem 0}
"""


def _recalibration_table(models: list[Model], recal: dict[str, Any] | None) -> str:
    """Calibration before and after a recalibration, beside the champion, on this snapshot."""
    if recal is None:
        return ""
    labels, rows = comparison(recal, models[1].label if len(models) > 1 else None)
    parent = recal["parent"].get("version") or str(recal["parent"].get("digest"))[:16]
    return (f"<h3>Recalibration</h3><p>{html.escape(models[0].label)} keeps the trees of "
            f"{html.escape(parent)} and refits their calibration on the snapshot of "
            f"{html.escape(recal['fit_on'])}; on this snapshot:</p>"
            + _table(["", *labels], [[r[0], *map(_num, r[1:])] for r in rows], "metrics"))


def _html(models: list[Model], evaluations: list[dict], reasons: dict[str, dict[str, float]],
          figures: dict[str, _Figure], as_of: dt.date, recal: dict[str, Any] | None = None
          ) -> str:
    title = f"Osmanthus model report: {models[0].label}" + (
        f" against {models[1].label}" if len(models) > 1 else "")
    ids = [re.sub(r"[^a-z]+", "-", s.lower()).strip("-") for s in SECTIONS]
    shap = "".join(_img(f) for k, f in figures.items() if k.startswith("shap"))
    cards = _card(models[0]) + "".join(
        f"<details><summary>Model card of {html.escape(m.label)}</summary>{_card(m)}</details>"
        for m in models[1:])
    body = [
        _summary(models, evaluations),
        _img(figures["roc_ks"]),
        _img(figures["distribution"]) + _bands(models, evaluations),
        _img(figures["calibration"]) + _recalibration_table(models, recal) + "".join(
            f"<details><summary>Calibration table of {html.escape(m.label)}</summary>"
            + _table(["decile", "people", "predicted", "observed"],
                     [[r["decile"], r["count"], _num(r["predicted"]), _num(r["observed"])]
                      for r in e["calibration"]]) + "</details>"
            for m, e in zip(models, evaluations, strict=True)),
        _psi_section(evaluations, figures),
        "<p>Each dot is one person's points for one feature (the model's SHAP values times "
        "the points scale), coloured by the feature's value; drawn with the shap package on "
        "a random sample.</p>" + shap,
        _reasons_section(models, reasons, figures),
        _fairness_section(models, evaluations, figures),
        cards,
    ]
    nav = "".join(f'<a href="#{i}">{html.escape(s)}</a>' for i, s in zip(ids, SECTIONS,
                                                                           strict=True))
    sections = "\n".join(f'<section id="{i}"><h2>{html.escape(s)}</h2>\n{b}</section>'
                         for i, s, b in zip(ids, SECTIONS, body, strict=True))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Snapshot as of {as_of.isoformat()}: "
            f"{evaluations[0]['rows']} people, default rate "
            f"{_num(evaluations[0]['default_rate'])}.</p><nav>{nav}</nav>\n{sections}\n"
            "</body></html>\n")
