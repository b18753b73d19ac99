"""How good and how fair a scorecard is on one snapshot: the numbers a modeller reads before
promoting a model, and the registry's gates read before letting it serve.

Discrimination (AUC, KS, Gini), calibration (Brier, deciles), stability (PSI of scores and of
each feature against the training sample) and fairness (approval rates and adverse-impact ratios
by gender, age band and district at every perk threshold). Perk thresholds come from the caller:
the perk configuration lives in the service layer, which `model/` never imports.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from model.fairness import (  # noqa: F401 - re-exported: the fairness half of an evaluation
    AIR_FLOOR,
    MIN_GROUP,
    SIGNIFICANCE,
    age_bands,
    fairness,
    fairness_failures,
    fairness_notes,
    group_frame,
)
from model.scorecard import BANDS

# The band floors of DESIGN.md (550/600/700/750), the thresholds when the caller gives none.
BAND_THRESHOLDS: dict[str, float] = {name: low for low, name in BANDS if math.isfinite(low)}
PSI_EPSILON = 1e-4  # an empty bin counts as this share, so that ln(a/e) stays finite


def _f(value: Any) -> float | None:
    """A JSON-safe float (NaN and infinities become null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --- discrimination and calibration ---------------------------------------------------------

def discrimination(target: np.ndarray, probability: np.ndarray) -> dict[str, float | None]:
    """AUC, KS, Gini and Brier of a predicted P(bad); AUC is undefined with one class."""
    target = np.asarray(target, dtype=np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    brier = brier_score_loss(target, probability)
    if len(np.unique(target)) < 2:
        return {"auc": None, "ks": None, "gini": None, "brier": _f(brier)}
    auc = roc_auc_score(target, probability)
    fpr, tpr, _ = roc_curve(target, probability)
    return {"auc": _f(auc), "ks": _f(np.max(tpr - fpr)), "gini": _f(2 * auc - 1),
            "brier": _f(brier)}


def calibration_table(target: np.ndarray, probability: np.ndarray,
                      groups: int = 10) -> list[dict[str, float | int | None]]:
    """Predicted against observed default rate by decile of predicted risk (1 = safest)."""
    probability = np.asarray(probability, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n = len(probability)
    if n == 0:
        return []
    order = np.argsort(probability, kind="stable")
    decile = np.empty(n, dtype=np.int64)
    decile[order] = np.arange(n) * groups // n
    rows = []
    for d in range(groups):
        mask = decile == d
        if not mask.any():
            continue
        rows.append({"decile": d + 1, "count": int(mask.sum()),
                     "predicted": _f(probability[mask].mean()),
                     "observed": _f(target[mask].mean()),
                     "min_probability": _f(probability[mask].min()),
                     "max_probability": _f(probability[mask].max())})
    return rows


def band_distribution(scores: np.ndarray, bands: np.ndarray, target: np.ndarray | None = None,
                      order: list[str] | None = None) -> list[dict[str, Any]]:
    """People, share and default rate per band, lowest band first; bands in `order` are
    listed even when empty, so reports from different models line up."""
    scores = np.asarray(scores, dtype=np.float64)
    bands = np.asarray(bands).astype(str)
    present = sorted(np.unique(bands), key=lambda b: scores[bands == b].min())
    rows = []
    for band in list(order or []) + [b for b in present if b not in (order or [])]:
        mask = bands == band
        row: dict[str, Any] = {"band": str(band), "count": int(mask.sum()),
                               "share": _f(mask.mean()) if len(bands) else None,
                               "min_score": _f(scores[mask].min()) if mask.any() else None,
                               "max_score": _f(scores[mask].max()) if mask.any() else None}
        if target is not None:
            row["default_rate"] = (_f(np.asarray(target, dtype=np.float64)[mask].mean())
                                   if mask.any() else None)
        rows.append(row)
    return rows


# --- stability -------------------------------------------------------------------------------

def _bin_numeric(expected: np.ndarray, actual: np.ndarray,
                 bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin indexes from the expected sample's quantiles. Few distinct values get a bin each,
    plus one below and one above (so a shift off a constant still shows); missing values get
    a bin of their own."""
    present = expected[~np.isnan(expected)]
    unique = np.unique(present)
    few = len(unique) <= bins
    cuts = ((unique[1:] + unique[:-1]) / 2 if few
            else np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])))
    n_bins = len(cuts) + 4  # below the lowest value, the intervals, above the highest, missing

    def index(x: np.ndarray) -> np.ndarray:
        out = np.searchsorted(cuts, x, side="right") + 1
        if few and len(unique):
            out[x < unique[0]] = 0
            out[x > unique[-1]] = len(cuts) + 2
        out[np.isnan(x)] = n_bins - 1
        return out
    return index(expected), index(actual), n_bins


def psi(expected: np.ndarray | pl.Series, actual: np.ndarray | pl.Series,
        bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, with quantile bins from
    `expected`. Text values are compared as categories. 0 means the same distribution; above
    0.25 is the usual "shifted" mark."""
    e_series, a_series = pl.Series(expected), pl.Series(actual)
    if len(e_series) == 0 or len(a_series) == 0:
        return 0.0
    if e_series.dtype.is_numeric() and a_series.dtype.is_numeric():
        e_idx, a_idx, n_bins = _bin_numeric(e_series.cast(pl.Float64).fill_null(np.nan).to_numpy(),
                                            a_series.cast(pl.Float64).fill_null(np.nan).to_numpy(),
                                            bins)
    else:
        levels = {v: i for i, v in enumerate(sorted(set(e_series.cast(pl.String).fill_null(
            "\x00missing").to_list())))}
        n_bins = len(levels) + 1  # the last: a category unseen in `expected`

        def codes(s: pl.Series) -> np.ndarray:
            return np.array([levels.get(v, n_bins - 1) for v in
                             s.cast(pl.String).fill_null("\x00missing").to_list()], dtype=np.int64)
        e_idx, a_idx = codes(e_series), codes(a_series)
    e_share = np.bincount(e_idx, minlength=n_bins) / len(e_idx)
    a_share = np.bincount(a_idx, minlength=n_bins) / len(a_idx)
    e_share, a_share = np.maximum(e_share, PSI_EPSILON), np.maximum(a_share, PSI_EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def feature_psi(train_frame: pl.DataFrame, frame: pl.DataFrame,
                features: list[str]) -> dict[str, float]:
    """PSI of each model feature, the training sample being the expected distribution."""
    return {name: psi(train_frame[name], frame[name]) for name in features
            if name in train_frame.columns and name in frame.columns}


# --- one snapshot's rows ----------------------------------------------------------------------

def _on(frame: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The rows of `as_of` when the table has a snapshot column (else every row)."""
    if "snapshot" not in frame.columns:
        return frame
    column = pl.col("snapshot")
    if frame["snapshot"].dtype == pl.Datetime:
        column = column.dt.date()
    return frame.filter(column.cast(pl.String) == as_of.isoformat())


def snapshot(features: pl.DataFrame, outcomes: pl.DataFrame, as_of: dt.date,
             truth: pl.DataFrame | None = None
             ) -> tuple[pl.DataFrame, np.ndarray, np.ndarray | None]:
    """Features joined to their outcomes (person_key, snapshot, defaulted) for one snapshot:
    (frame, target, true_pd or None). People without an outcome are left out."""
    labels = _on(outcomes, as_of).select("person_key", pl.col("defaulted").cast(pl.Int64))
    frame = _on(features, as_of).join(labels.unique("person_key"), on="person_key",
                                      how="inner", maintain_order="left")
    if frame.height == 0:
        raise ValueError(f"no person has both features and an outcome as of {as_of}")
    true_pd = None
    if truth is not None:
        truth = _on(truth, as_of).select("person_key", pl.col("true_pd").cast(pl.Float64))
        frame = frame.join(truth.unique("person_key"), on="person_key", how="left",
                           maintain_order="left")
        if frame["true_pd"].null_count():
            raise ValueError(f"{frame['true_pd'].null_count()} people have no true_pd")
        true_pd = frame["true_pd"].to_numpy()
        frame = frame.drop("true_pd")
    return frame.drop("defaulted"), frame["defaulted"].to_numpy(), true_pd


# --- the whole evaluation --------------------------------------------------------------------

def evaluate(scorecard: Any, frame: pl.DataFrame, target: np.ndarray, *,
             train_scores: np.ndarray | None = None, train_frame: pl.DataFrame | None = None,
             people: pl.DataFrame | None = None, thresholds: dict[str, float] | None = None,
             true_pd: np.ndarray | None = None, as_of: dt.date | None = None,
             min_group: int = MIN_GROUP) -> dict[str, Any]:
    """Evaluate `scorecard` on one snapshot (`frame` with its outcomes `target`, 1 = default).

    Training scores (given, or computed from `train_frame`) give the score PSI; `train_frame`
    also gives per-feature PSI; `people` (person_key, gender, birth_date, district) gives the
    fairness tables; `true_pd` gives the true-probability AUC, the upper bound no model passes.
    """
    target = np.asarray(target, dtype=np.int64)
    if len(target) != frame.height:
        raise ValueError(f"{frame.height} rows but {len(target)} outcomes")
    scored = scorecard.score_frame(frame)
    probability = np.asarray(scored.probability, dtype=np.float64)
    scores = np.asarray(scored.score, dtype=np.float64)
    thresholds = dict(thresholds) if thresholds else dict(BAND_THRESHOLDS)
    as_of = as_of or dt.date.today()
    result: dict[str, Any] = {
        "as_of": as_of.isoformat(), "rows": int(frame.height),
        "default_rate": _f(target.mean()) if len(target) else None,
        "metrics": discrimination(target, probability),
        "calibration": calibration_table(target, probability),
        "bands": band_distribution(scores, np.asarray(scored.bands), target,
                                   [name for _, name in BANDS]),
        "score": {"mean": _f(scores.mean()), "std": _f(scores.std()),
                  "min": _f(scores.min()), "max": _f(scores.max())},
        "thresholds": {k: float(v) for k, v in thresholds.items()},
    }
    if true_pd is not None:
        upper = discrimination(target, np.asarray(true_pd, dtype=np.float64))
        result["true_pd"] = {"auc": upper["auc"], "model_auc": result["metrics"]["auc"],
                             "gap": _f(upper["auc"] - result["metrics"]["auc"])
                             if upper["auc"] is not None and result["metrics"]["auc"] is not None
                             else None}
    if train_scores is None and train_frame is not None:
        train_scores = np.asarray(scorecard.score_frame(train_frame).score, dtype=np.float64)
    stability: dict[str, Any] = {}
    if train_scores is not None:
        stability["score_psi"] = psi(np.asarray(train_scores, dtype=np.float64), scores)
    if train_frame is not None:
        stability["feature_psi"] = feature_psi(train_frame, frame, list(scorecard.feature_names))
    result["stability"] = stability
    points = _points_section(scorecard, frame)
    if points is not None:
        result["points"] = points
    if people is not None:
        groups = group_frame(frame, people, as_of)
        result["fairness"] = fairness(scores, groups, thresholds, min_group)
        result["fairness_min_group"] = min_group
        result["fairness_failures"] = fairness_failures(result)
        result["fairness_notes"] = fairness_notes(result)
    return result


def _points_section(scorecard: Any, frame: pl.DataFrame) -> dict[str, Any] | None:
    """What each adverse record type costs (model/costs.py), for a catalog scorecard that is a
    table of points; None for a table-mode model or one with interactions."""
    from model.costs import RECORD_TYPES, points_summary

    needed = {n for kind in RECORD_TYPES for n in kind.features} | {
        "ct_active_listings", "pn_serious_counting", "pn_general_counting"}
    if not getattr(scorecard, "additive", False) or not needed <= set(frame.columns):
        return None
    return points_summary(scorecard, frame)


# --- the report ------------------------------------------------------------------------------

def _num(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def to_markdown(result: dict[str, Any]) -> str:
    """The evaluation as readable Markdown tables."""
    m = result["metrics"]
    lines = [f"# Evaluation as of {result['as_of']}", "",
             f"{result['rows']} people, default rate {_num(result['default_rate'])}.", "",
             "## Discrimination and calibration", ""]
    rows = [["model", _num(m["auc"]), _num(m["ks"]), _num(m["gini"]), _num(m["brier"])]]
    if "true_pd" in result:
        rows.append(["true probability (upper bound)", _num(result["true_pd"]["auc"]),
                     "", "", ""])
    lines += _table(["", "AUC", "KS", "Gini", "Brier"], rows)
    lines += ["### Calibration by decile of predicted risk", ""]
    lines += _table(["decile", "people", "predicted", "observed"],
                    [[r["decile"], r["count"], _num(r["predicted"]), _num(r["observed"])]
                     for r in result["calibration"]])
    lines += ["## Scores by band", ""]
    lines += _table(["band", "people", "share", "scores", "default rate"],
                    [[r["band"], r["count"], _num(r["share"], 3),
                      "—" if r["min_score"] is None else f"{r['min_score']:.0f}–{r['max_score']:.0f}",
                      _num(r.get("default_rate"))]
                     for r in result["bands"]])
    if result.get("points"):
        from model.costs import points_markdown

        lines += points_markdown(result["points"])
    stability = result.get("stability") or {}
    if stability:
        lines += ["## Stability against the training sample (PSI)", ""]
        if "score_psi" in stability:
            lines += [f"Score PSI: {_num(stability['score_psi'])} (above 0.25 is a shift).", ""]
        if stability.get("feature_psi"):
            ranked = sorted(stability["feature_psi"].items(), key=lambda kv: -kv[1])
            lines += _table(["feature", "PSI"], [[k, _num(v)] for k, v in ranked])
    if "fairness" in result:
        lines += ["## Fairness: approval rates by group", "",
                  f"Adverse-impact ratio (AIR) = lowest group's approval rate ÷ highest, over "
                  f"groups of at least {result['fairness_min_group']} people. Below "
                  f"{AIR_FLOOR} fails when the gap between the lowest and highest group is "
                  f"statistically significant (two-proportion z-test, Bonferroni-adjusted "
                  f"p < {SIGNIFICANCE}); a ratio resting on too few approvals is noted.", ""]
        for perk, entry in result["fairness"].items():
            lines += [f"### {perk} (score ≥ {entry['threshold']:g}): "
                      f"{_num(entry['approval_rate'], 3)} approved", ""]
            rows = []
            for attribute, detail in entry["attributes"].items():
                for g in detail["groups"]:
                    rows.append([attribute, g["group"], g["count"], _num(g["rate"], 3)])
                p_value = detail.get("p_value")
                rows.append([attribute, "**AIR**", "" if p_value is None else f"p = {p_value:.2g}",
                             f"**{_num(detail['air'], 3)}**"])
            lines += _table(["attribute", "group", "people", "approval rate"], rows)
        failures = result.get("fairness_failures") or []
        lines += ["**Fairness failures:** " + ("; ".join(failures) if failures else "none"), ""]
        notes = result.get("fairness_notes") or []
        if notes:
            lines += ["**Noted, not significant:** " + "; ".join(notes), ""]
    return "\n".join(lines)


def write_report(result: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write evaluation.json and evaluation.md into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "evaluation.json", directory / "evaluation.md"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    md_path.write_text(to_markdown(result))
    return json_path, md_path
