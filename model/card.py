"""The model card: what a model is for, what it must not be used for, and how it did, for
every group we measure — after Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019).

Written from the bundle's metadata and evaluation, so the card can never disagree with them.
"""

from __future__ import annotations

import math
from typing import Any

from model import card_table
from model.fairness import AIR_FLOOR

INTENDED_USE = (
    "Estimate a resident's chance of defaulting on a deposit-free city service (an unpaid fee "
    "or bill more than 30 days overdue within 12 months) and turn it into a points score, so "
    "that partner services (public bicycles, libraries, hospitals) can waive a deposit for "
    "residents who qualify. Every score is explained in points per record, and residents can "
    "see and dispute the records used.")
OUT_OF_SCOPE = (
    "employment, hiring or promotion decisions",
    "lending, credit limits or insurance pricing beyond the configured deposit-free perks",
    "policing, surveillance, immigration or any enforcement decision",
    "access to essential public services (health care, education, housing, social benefits)",
    "ranking or comparing neighbourhoods, families or demographic groups",
    "any decision about a person without their consent and the right to human review "
    "(PIPL Art. 24)",
)
FACTORS = (
    "Gender, age band (18–29, 30–44, 45–59, 60+) and district are never features; they are "
    "used only to measure approval rates and adverse-impact ratios at each perk threshold.")
ETHICS = (
    "Public records reflect enforcement and access as well as behaviour: districts with more "
    "transit inspection or fewer social-security employers may show more negative records. "
    "Penalties count only inside their legal disclosure window. A repaired record stops "
    "counting; a disputed record keeps counting, labelled as under dispute, until the source "
    "answers, and stops counting if no answer comes by the due date (20 days by default). A "
    "person with no records gets the score of an empty file (every feature at its default, "
    "not the base points), and every perk answers no until a record is on file (the thin-file "
    "rule), since such a score rests on no evidence.")
CAVEATS = (
    "Validated out of time on one later snapshot; re-evaluate on every new snapshot and watch "
    "the score PSI (above 0.25 means the population has shifted).",
    "Adverse-impact ratios are measured over groups of a minimum size; small groups are listed "
    "but noisy.",
    "Metrics on the synthetic city show how the method works, not how it will do on real "
    "records; there, the true-probability AUC is the ceiling no model can pass.",
    "Promote only through the registry, whose gates check AUC, score stability, fairness and "
    "monotone directions.",
)


def _num(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fairness_lines(evaluation: dict[str, Any]) -> list[str]:
    lines = ["| perk threshold | attribute | groups (approval rate) | AIR |", "|---|---|---|---|"]
    for perk, entry in evaluation["fairness"].items():
        for attribute, detail in entry["attributes"].items():
            groups = ", ".join(f"{g['group']} {_num(g['rate'], 2)} (n={g['count']})"
                               for g in detail["groups"])
            air = _num(detail["air"], 3)
            flag = " ⚠" if detail["air"] is not None and detail["air"] < AIR_FLOOR else ""
            lines.append(f"| {perk} ≥ {entry['threshold']:g} | {attribute} | {groups} | "
                         f"{air}{flag} |")
    return lines


def _scale_lines(scale: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The points scale as the modeller anchored it (`--base-score/--base-odds/--pdo`), and,
    for a recalibrated model, what changed and what did not."""
    lines = []
    if scale.get("pdo") and scale.get("base_odds"):
        factor = scale["pdo"] / math.log(2.0)
        offset = scale["base_score"] - factor * math.log(scale["base_odds"])
        lines.append(f"- Points scale: score = {offset:.4f} + {factor:.4f} · ln(good:bad odds) "
                     f"(base score {scale['base_score']:g} at odds {scale['base_odds']:g}:1, "
                     f"PDO {scale['pdo']:g}).")
    recal = (meta.get("training_report") or {}).get("recalibration")
    if recal:
        parent = meta.get("parent") or recal.get("parent") or {}
        named = parent.get("version") or f"bundle {str(parent.get('digest'))[:16]}"
        before, after = recal["calibration_before"], recal["calibration_after"]
        lines.append(
            f"- Recalibrated from {named} on the snapshot of {recal['as_of']} ({recal['n']} "
            "people): the trees are the parent's, unchanged; Platt calibration "
            f"({before['intercept']:.4f}, {before['slope']:.4f}) → ({after['intercept']:.4f}, "
            f"{after['slope']:.4f}); Brier {recal['before']['brier']:.4f} → "
            f"{recal['after']['brier']:.4f}; mean predicted default rate "
            f"{recal['before']['mean_predicted']:.4f} → {recal['after']['mean_predicted']:.4f} "
            f"against {recal['after']['observed_rate']:.4f} observed; points scale "
            + ("unchanged." if recal["scale_before"] == recal["scale_after"] else
               f"{recal['scale_before']['base_score']:g}/{recal['scale_before']['base_odds']:g}"
               f"/{recal['scale_before']['pdo']:g} → {recal['scale_after']['base_score']:g}/"
               f"{recal['scale_after']['base_odds']:g}/{recal['scale_after']['pdo']:g} "
               "(base score/base odds/PDO)."))
    return lines


def _without_points(evaluation: dict[str, Any] | None) -> str:
    """`; N carry no points (names)` when the evaluation found scored features without points:
    a feature listed as used but worth nothing to anyone must say so on the card."""
    unpointed = ((evaluation or {}).get("points") or {}).get("features_without_points") or []
    return f"; {len(unpointed)} carry no points ({', '.join(unpointed)})" if unpointed else ""


def model_card(meta: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    """The Markdown model card for a bundle's metadata and (optional) evaluation."""
    scale = meta.get("points_scaling") or {}
    versions = meta.get("library_versions") or {}
    features = meta.get("features") or []
    monotone = {k: v for k, v in (meta.get("directions") or {}).items() if v}
    table = card_table.is_table_mode(meta)
    lines = [
        "# Model card: Osmanthus scorecard" + (" (table mode)" if table else ""), "",
        "## Model details", "",
        f"- Created: {meta.get('created_at')}",
        "- Type: LightGBM binary classifier with monotone constraints, "
        + ("trees of one feature each except the declared pairs "
           f"{(meta.get('scorecard') or {}).get('interactions')}"
           if (meta.get("scorecard") or {}).get("interactions") else
           "trees of one feature each (an exact scorecard)")
        + ", Platt-calibrated, scaled to points "
        f"({scale.get('base_score')} points at {scale.get('base_odds')}:1 good:bad odds, "
        f"{scale.get('pdo')} points to double the odds, clipped to "
        f"{scale.get('min_score')}–{scale.get('max_score')}).",
        f"- Features: {len(features)} ({len(monotone)} with a monotone direction)"
        + _without_points(evaluation) + ".",
        f"- Feature catalog: {meta.get('catalog_hash') or 'none (a modeller’s own table)'}",
        f"- Training data hash: {meta.get('training_data_hash')}",
        f"- Seed: {meta.get('seed')}; libraries: "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
    ]
    engine = (meta.get("training_report") or {}).get("engine") or {}
    if engine.get("name") == "dask":
        lines.append(f"- Trained on a Dask cluster: {engine.get('workers')} workers, "
                     f"{engine.get('partitions')} partitions, trees of one split each; "
                     f"rounds {engine.get('rounds_from')}.")
    if meta.get("description"):
        lines.append(f"- Notes: {meta['description']}")
    lines += _scale_lines(scale, meta)
    intended = card_table.intended_use(meta) if table else INTENDED_USE
    lines += ["", "## Intended use", "", intended, "", "## Out-of-scope use", "",
              "This model must not be used for:", ""]
    lines += [f"- {item}" for item in (card_table.OUT_OF_SCOPE if table else OUT_OF_SCOPE)]
    lines += ["", "## Factors", "", card_table.FACTORS if table else FACTORS, "", "## Metrics", "",
              "AUC, KS and Gini (ranking), Brier score and a calibration table by decile "
              "(probability accuracy), PSI (stability), approval rate and adverse-impact ratio "
              f"(lowest group ÷ highest; below {AIR_FLOOR} with a statistically significant gap "
              f"fails) at each perk threshold.", ""]
    training = meta.get("metrics") or {}
    plain = {k: v for k, v in training.items() if isinstance(v, int | float)}
    if plain:
        lines += ["Summary metrics: " + ", ".join(f"{k} {_num(v)}" for k, v in
                                                  sorted(plain.items())), ""]
    lines += ["## Training data", "",
              card_table.training_data(meta) if table else
              "Features as of one snapshot date (records known before it) and defaults in the "
              f"12 months after it; table hash {meta.get('training_data_hash')}.", ""]
    if table:
        lines += card_table.table_sections(meta)
    lines += ["## Evaluation data", ""]
    if evaluation is None:
        lines += ["No evaluation was attached to this bundle.", ""]
    else:
        m = evaluation["metrics"]
        lines += [(f"The validation table: {evaluation.get('rows')} rows" if table else
                   f"A later snapshot, as of {evaluation.get('as_of')}: {evaluation.get('rows')} "
                   "people") + f", default rate {_num(evaluation.get('default_rate'))}.", "",
                  "## Quantitative analyses", "",
                  "| AUC | KS | Gini | Brier | true-probability AUC | score PSI |",
                  "|---|---|---|---|---|---|",
                  f"| {_num(m['auc'])} | {_num(m['ks'])} | {_num(m['gini'])} | "
                  f"{_num(m['brier'])} | {_num((evaluation.get('true_pd') or {}).get('auc'))} | "
                  f"{_num((evaluation.get('stability') or {}).get('score_psi'))} |", ""]
        if evaluation.get("fairness"):
            lines += ["### Disaggregated results (approval rates by group)", ""]
            lines += _fairness_lines(evaluation) + [""]
            failures = evaluation.get("fairness_failures") or []
            lines += ["Fairness failures: " + ("; ".join(failures) if failures else "none"), ""]
        else:
            lines += ["No disaggregated results: no people table was given.", ""]
    lines += ["## Ethical considerations", "", card_table.ETHICS if table else ETHICS, "",
              "## Caveats and recommendations", ""]
    lines += [f"- {item}" for item in (card_table.CAVEATS if table else CAVEATS)]
    return "\n".join(lines) + "\n"
