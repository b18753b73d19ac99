"""What each kind of adverse record costs in a scorecard's points, read off the model itself.

A citizen is promised that an adverse record costs points they would recognise (DESIGN.md): an
active court listing tens of points, not zero. This module measures it on a snapshot of real
people, the way a regulator would check it: for everyone who holds a kind of record, the points
that record's features take away against the same person without it (the features of that
source at their "no record" defaults, every other feature as it is). Because every scored
feature is monotone (a catalog direction) and each tree uses one feature, that cost is the sum
of a few fixed steps of the printed scorecard, so it is exact and the same online and in batch.

It also checks the two properties a printed scorecard must have: each feature's points move
only in its declared direction, and no single positive-record feature swings the score by more
than `POSITIVE_SPAN_LIMIT` points (a good deed is a modest signal, not a second score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from features.catalog import BY_NAME
from features.records import Source

POSITIVE_SPAN_LIMIT = 30.0  # points: issue 11's ceiling for one positive-record feature
NO_POINTS = 0.05  # points: a span or a cost below this rounds to nothing on any page


@dataclass(frozen=True)
class RecordType:
    """A kind of adverse record: who holds it, and which features it moves."""

    name: str
    holds: pl.Expr  # true for the people who hold at least one such record
    features: tuple[str, ...]  # reset to their catalog defaults to remove the record


_PN = tuple(f.name for f in BY_NAME.values() if f.source == Source.PENALTY)
RECORD_TYPES: tuple[RecordType, ...] = (
    RecordType("active court listing", pl.col("ct_active_listings") > 0,
               tuple(f.name for f in BY_NAME.values() if f.source == Source.COURT)),
    # Penalties are measured on people holding one severity only, so that a serious penalty's
    # fine and recency are not charged to a general one beside it (or the other way round).
    RecordType("serious penalty counting",
               (pl.col("pn_serious_counting") > 0) & (pl.col("pn_general_counting") == 0), _PN),
    RecordType("general penalty counting",
               (pl.col("pn_general_counting") > 0) & (pl.col("pn_serious_counting") == 0), _PN),
    RecordType("unpaid transit fees",
               (pl.col("tr_max_unpaid_fees_12m") > 0) | (pl.col("tr_unpaid_fees_latest") > 0),
               ("tr_unpaid_fees_latest", "tr_max_unpaid_fees_12m",
                "tr_months_with_unpaid_fees_12m")),
    RecordType("missed social-security months", pl.col("ss_months_missed_36m") > 0,
               ("ss_months_missed_12m", "ss_months_missed_36m", "ss_gaps_24m",
                "ss_arrears_latest", "ss_months_with_arrears_24m")),
    RecordType("overdue bike returns", pl.col("tr_overdue_returns_24m") > 0,
               ("tr_overdue_returns_12m", "tr_overdue_returns_24m", "tr_months_since_overdue")),
    RecordType("fare evasions", pl.col("tr_fare_evasions_24m") > 0, ("tr_fare_evasions_24m",)),
    RecordType("damaged bikes", pl.col("tr_damage_incidents_24m") > 0,
               ("tr_damage_incidents_24m",)),
)
for _type in RECORD_TYPES:
    assert all(n in BY_NAME for n in _type.features), _type.name


def record_costs(scorecard: Any, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """For each record type: how many people in `frame` hold it, and the points it costs them
    (min, median, max; a cost is positive when the record lowers the score). Features the
    model does not score cost nothing."""
    rows = []
    for kind in RECORD_TYPES:
        holders = frame.filter(kind.holds)
        row: dict[str, Any] = {"record": kind.name, "holders": holders.height,
                               "min": None, "median": None, "max": None}
        if holders.height:
            cleared = holders.with_columns(
                [pl.lit(BY_NAME[n].default, dtype=pl.Float64).alias(n) for n in kind.features])
            cost = (np.asarray(scorecard.score_frame(cleared).raw_score)
                    - np.asarray(scorecard.score_frame(holders).raw_score))
            row.update(min=float(cost.min()), median=float(np.median(cost)),
                       max=float(cost.max()))
        rows.append(row)
    return rows


def feature_spans(scorecard: Any) -> dict[str, float]:
    """Each feature's points span (highest bin − lowest bin) in the printed scorecard."""
    table = scorecard.points_table().filter(pl.col("bin") != "missing")
    spans = table.group_by("feature").agg((pl.col("points").max() - pl.col("points").min())
                                          .alias("span"))
    return dict(zip(spans["feature"], spans["span"], strict=True))


def monotone_violations(scorecard: Any, tolerance: float = 1e-9) -> list[str]:
    """Features whose points move against their declared direction from one bin to the next
    (bins in ascending order of value); empty for a sound scorecard."""
    table = scorecard.points_table().filter(pl.col("lower").is_not_null())
    bad = []
    for name, direction in scorecard.directions.items():
        if not direction or name in scorecard.categories:
            continue
        points = np.asarray(table.filter(pl.col("feature") == name).sort("lower")["points"])
        steps = np.diff(points) * direction
        if (steps < -tolerance).any():
            bad.append(name)
    return bad


def positive_spans(scorecard: Any) -> dict[str, float]:
    """The span of every scored positive-record feature."""
    spans = feature_spans(scorecard)
    return {n: spans.get(n, 0.0) for n in scorecard.feature_names
            if n in BY_NAME and BY_NAME[n].source == Source.POSITIVE}


def points_summary(scorecard: Any, frame: pl.DataFrame) -> dict[str, Any]:
    """Everything above, JSON-able: what `osmanthus evaluate` reports."""
    spans = feature_spans(scorecard)
    return {"record_costs": record_costs(scorecard, frame),
            "features_without_points": [n for n in scorecard.feature_names
                                        if spans.get(n, 0.0) < NO_POINTS],
            "positive_spans": positive_spans(scorecard),
            "positive_span_limit": POSITIVE_SPAN_LIMIT,
            "monotone_violations": monotone_violations(scorecard)}


def points_markdown(summary: dict[str, Any]) -> list[str]:
    """The report's section: the points cost of each adverse record type."""
    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    lines = ["## Points cost of each adverse record type", "",
             "For everyone holding the record: their score without it (that source's features "
             "at their no-record defaults) minus their score with it.", "",
             "| record | people holding it | min | median | max |", "|---|---|---|---|---|"]
    lines += [f"| {r['record']} | {r['holders']} | {number(r['min'])} | {number(r['median'])} "
              f"| {number(r['max'])} |" for r in summary["record_costs"]]
    spans = ", ".join(f"{k} {v:.1f}" for k, v in summary["positive_spans"].items())
    violations = summary["monotone_violations"]
    # a record type nobody loses a point for is still on residents' files and pages, shown as
    # counting: say so, rather than let a table of zeros pass unremarked
    free = [r["record"] for r in summary["record_costs"]
            if r["holders"] and r["max"] is not None and r["max"] < NO_POINTS]
    unpointed = summary.get("features_without_points") or []
    lines += ["", "Record types that cost no holder a point in this model (the trees found no "
              "signal in them; they stay on the file and are shown): "
              + (", ".join(free) if free else "none") + ".",
              "Scored features that carry no points: "
              + (", ".join(unpointed) if unpointed else "none") + "."]
    lines += ["", f"Positive-record features' points spans (limit "
              f"{summary['positive_span_limit']:g}): {spans or 'none scored'}.",
              "Features moving against their declared direction: "
              + (", ".join(violations) if violations else "none") + ".", ""]
    return lines
