"""The model card's text for a table-mode model (`osmanthus train --table`): a modeller's own
credit table, not the city's records, so the card must not claim the city's purpose, perks or
fairness checks. It says what the model was fit on, which columns it reads in which monotone
direction (declared, inferred or free), what was dropped or repaired in the table, and what the
modeller still has to establish before anyone uses it (Mitchell et al., FAT* 2019; the
model-risk questions of SR 11-7: purpose, data, limitations)."""

from __future__ import annotations

from typing import Any

OUT_OF_SCOPE = (
    "the Osmanthus city score or its deposit-free perks: this model reads the modeller's "
    "table, not the city's records",
    "rows from another population, product or period than the training table without "
    "re-validating on them",
    "any decision about a person without the right to an explanation and to human review",
    "employment, policing, immigration or access to essential public services",
)
FACTORS = (
    "Table mode has no people table, so approval rates and adverse-impact ratios by gender, "
    "age or district were not measured. Before use, the modeller must check that no column is "
    "a protected attribute (gender, age, ethnicity, nationality, marital status …) or a close "
    "proxy for one, and measure the approval rates by group on their own population.")
ETHICS = (
    "The model learns whatever the table's history holds, including past decisions' biases "
    "(a table of approved applicants knows nothing of the refused ones). Every numeric column "
    "moves the score in one direction only unless the catalog declares it free, so a "
    "higher value never helps in one range and hurts in another without the modeller saying so.")
CAVEATS = (
    "Validated only as far as the table allows: cross-validated on the training rows, and on "
    "the validation table if one was given; re-validate on each new period and watch the PSI.",
    "Inferred directions follow the training rows' rank correlation: a weak correlation gives "
    "a direction that could flip on other data; declare the direction in a catalog where the "
    "domain says which way a column should move the score.",
    "Promote only through the registry, whose gates check AUC, score stability and monotone "
    "directions.",
)


def is_table_mode(meta: dict[str, Any]) -> bool:
    """A model that does not read the feature catalog was fit on a modeller's own table."""
    return meta.get("catalog_hash") is None


def intended_use(meta: dict[str, Any]) -> str:
    table = (meta.get("training_report") or {}).get("table") or {}
    report = meta.get("training_report") or {}
    target = table.get("target") or "the target column"
    bad = table.get("bad")
    what = f"`{target}` = {bad!r}" if bad is not None else f"`{target}` = 1"
    rate = report.get("bad_rate_train")
    return (
        f"Estimate, for rows like those of the modeller's table "
        f"{table.get('source') or ''} ({report.get('n_train')} rows, bad rate "
        f"{'—' if rate is None else f'{rate:.3f}'}), the probability of the bad outcome "
        f"{what}, and show it as points per column, so a reviewer can read why a row scored "
        "as it did. What decision it supports is for the modeller to state (the notes above); "
        "it is not the Osmanthus city score.")


def direction_lines(meta: dict[str, Any]) -> list[str]:
    """One table row per feature: its direction, where the direction came from, and how often
    its points change direction (0 = monotone)."""
    report = meta.get("training_report") or {}
    declared = report.get("directions_declared") or {}
    inferred = report.get("directions_inferred") or {}
    changes = report.get("direction_changes") or {}
    text = set(report.get("categorical") or ())
    word = {1: "more raises the score", -1: "more lowers the score", 0: "free"}
    lines = ["| column | direction | from | changes of direction |", "|---|---|---|---|"]
    for name in meta.get("features") or []:
        if name in text:
            lines.append(f"| {name} | categories | text column | — |")
            continue
        direction = int((meta.get("directions") or {}).get(name, 0))
        if name in declared:
            source = "declared" + (" free (U-shape or other allowed)" if not direction else "")
        elif name in inferred:
            row = inferred[name]
            p = row.get("p_value")
            tail = "" if p is None else f", p {p:.3g}"
            source = (f"inferred: Spearman ρ {row['spearman']:+.3f} with bad{tail}" if direction
                      else f"free: no significant direction (Spearman ρ {row['spearman']:+.3f}"
                           f" with bad{tail})")
        else:
            source = "free (inference switched off)"
        lines.append(f"| {name} | {word[direction]} | {source} | {changes.get(name, '—')} |")
    return lines


def table_sections(meta: dict[str, Any]) -> list[str]:
    """Card lines on the table itself: the directions, dropped columns and data warnings."""
    report = meta.get("training_report") or {}
    table = report.get("table") or {}
    lines = ["## Monotone directions", "",
             "Numeric columns the catalog does not declare get the sign of their Spearman "
             "correlation with the target on the training rows when it is significant "
             f"(p < {report.get('direction_alpha') or 'any'}); each is a constraint on the "
             "trees, so its points never change direction. A column without a significant "
             "correlation is left free, and its changes of direction are counted below.", ""]
    lines += direction_lines(meta) + [""]
    dropped = table.get("dropped") or {}
    warnings = [*(table.get("warnings") or []), *(report.get("warnings") or [])]
    lines += ["## Table checks", ""]
    if dropped:
        lines += [f"- dropped `{name}`: {why}" for name, why in dropped.items()]
    notes = [w for w in warnings if "dropped:" not in w]
    lines += [f"- {w}" for w in notes]
    if not dropped and not notes:
        lines += ["No column was dropped and no value was repaired."]
    return lines + [""]


def training_data(meta: dict[str, Any]) -> str:
    report = meta.get("training_report") or {}
    table = report.get("table") or {}
    return (f"The modeller's table {table.get('source') or ''}: {report.get('n_train')} rows, "
            f"{len(meta.get('features') or [])} feature columns, target "
            f"`{table.get('target')}`; table hash {meta.get('training_data_hash')}.")
