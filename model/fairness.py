"""Fairness of a scorecard's decisions: approval rates and adverse-impact ratios by gender, age
band and district at each perk threshold, with the significance test that keeps a ratio of a
few dozen approvals from failing a model on noise (29 CFR 1607.4D). Part of every evaluation
(`model.evaluate`) and of the registry's promotion gates.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import polars as pl

AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("18-29", 18, 29), ("30-44", 30, 44), ("45-59", 45, 59), ("60+", 60, 200))
FAIRNESS_ATTRIBUTES = ("gender", "age_band", "district")
AIR_FLOOR = 0.8  # the four-fifths rule
SIGNIFICANCE = 0.05  # a gap must also be statistically significant to count as adverse impact
MIN_GROUP = 30  # groups smaller than this are reported but left out of the ratio (noise)


def age_bands(birth_dates: pl.Series, as_of: dt.date) -> pl.Series:
    """Age band of each birth date at `as_of` (under 18 and unknown are kept apart)."""
    if birth_dates.dtype == pl.String:
        born = birth_dates.str.to_date(strict=False)
    elif birth_dates.dtype == pl.Datetime:
        born = birth_dates.dt.date()
    else:
        born = birth_dates.cast(pl.Date)
    frame = pl.DataFrame({"born": born})
    age = frame.select(
        (pl.lit(as_of.year) - pl.col("born").dt.year()
         - ((pl.lit(as_of.month * 100 + as_of.day)
             < pl.col("born").dt.month().cast(pl.Int32) * 100 + pl.col("born").dt.day()))
         .cast(pl.Int32)).alias("age"))["age"]
    expr = pl.when(pl.col("age").is_null()).then(pl.lit("unknown"))
    expr = expr.when(pl.col("age") < 18).then(pl.lit("under 18"))
    for name, low, high in AGE_BANDS:
        expr = expr.when(pl.col("age").is_between(low, high)).then(pl.lit(name))
    return pl.DataFrame({"age": age}).select(expr.otherwise(pl.lit("unknown")).alias("age_band"))[
        "age_band"]


def fairness(scores: np.ndarray, groups: pl.DataFrame, thresholds: dict[str, float],
             min_group: int = MIN_GROUP) -> dict[str, Any]:
    """For each threshold and attribute: each group's approval rate (score ≥ threshold) and the
    adverse-impact ratio, lowest rate ÷ highest, over groups of at least `min_group` people.
    A ratio is null when nobody in those groups is approved (nobody is treated differently)."""
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, Any] = {}
    for perk, minimum in thresholds.items():
        approved = scores >= float(minimum)
        per_attribute = {}
        for attribute in groups.columns:
            values = np.asarray(groups[attribute].cast(pl.String).fill_null("unknown").to_list())
            rows = []
            for group in np.unique(values):
                mask = values == group
                rows.append({"group": str(group), "count": int(mask.sum()),
                             "approved": int(approved[mask].sum()),
                             "rate": float(approved[mask].mean()),
                             "in_ratio": bool(mask.sum() >= min_group)})
            counted = [r for r in rows if r["in_ratio"]]
            rates = [r["rate"] for r in counted]
            ratio = (min(rates) / max(rates)) if rates and max(rates) > 0 else None
            lowest = min(counted, key=lambda r: r["rate"], default=None)
            highest = max(counted, key=lambda r: r["rate"], default=None)
            p_value = None
            if ratio is not None and lowest is not highest:
                pairs = len(counted) * (len(counted) - 1) // 2
                p_value = min(1.0, pairs * two_proportion_p(lowest, highest))
            per_attribute[attribute] = {
                "groups": rows, "air": ratio,
                "lowest_group": lowest["group"] if lowest and ratio is not None else None,
                "highest_group": highest["group"] if highest and ratio is not None else None,
                "p_value": p_value}
        out[perk] = {"threshold": float(minimum), "approval_rate": float(approved.mean()) if len(approved) else None,
                     "attributes": per_attribute}
    return out


def two_proportion_p(low: dict[str, Any], high: dict[str, Any]) -> float:
    """Two-sided p-value of a two-proportion z-test between two groups' approval rates."""
    n1, n2 = low["count"], high["count"]
    pooled = (low["approved"] + high["approved"]) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = abs(high["approved"] / n2 - low["approved"] / n1) / spread
    return math.erfc(z / math.sqrt(2))


def fairness_failures(result: dict[str, Any], floor: float = AIR_FLOOR,
                      alpha: float = SIGNIFICANCE) -> list[str]:
    """Every (perk, attribute) with adverse impact, as readable text: a ratio below `floor`
    whose gap is statistically significant (Bonferroni over the attribute's pairs of groups).

    The four-fifths rule's own source (Uniform Guidelines, 29 CFR 1607.4D) says a larger gap
    "may not constitute adverse impact where the differences are based on small numbers and
    are not statistically significant": at a high threshold only a few dozen people in a
    district may qualify, and a ratio of such counts is mostly noise. Such ratios are still
    reported (`fairness_notes`), never hidden."""
    reasons = []
    for perk, entry in (result.get("fairness") or {}).items():
        for attribute, detail in entry["attributes"].items():
            air = detail["air"]
            p_value = detail.get("p_value")
            if air is not None and air < floor and (p_value is None or p_value < alpha):
                reasons.append(f"adverse-impact ratio {air:.3f} < {floor} for {attribute} "
                               f"(group {detail['lowest_group']}) at {perk} "
                               f"(score ≥ {entry['threshold']:g}, p = {p_value or 0:.2g})")
    return reasons


def fairness_notes(result: dict[str, Any], floor: float = AIR_FLOOR,
                   alpha: float = SIGNIFICANCE) -> list[str]:
    """Ratios below `floor` whose gap is not statistically significant: shown, not gated."""
    notes = []
    for perk, entry in (result.get("fairness") or {}).items():
        for attribute, detail in entry["attributes"].items():
            air, p_value = detail["air"], detail.get("p_value")
            if air is not None and air < floor and p_value is not None and p_value >= alpha:
                notes.append(f"adverse-impact ratio {air:.3f} for {attribute} (group "
                             f"{detail['lowest_group']}) at {perk} is not significant "
                             f"(p = {p_value:.2g}): too few approvals to tell")
    return notes


def group_frame(frame: pl.DataFrame, people: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The fairness attributes of each row of `frame`, in its order (unknown when missing)."""
    if "person_key" not in frame.columns:
        raise ValueError("fairness needs a person_key column in the evaluated frame")
    cols = ["person_key", *[c for c in ("gender", "birth_date", "district") if c in people.columns]]
    joined = frame.select("person_key").with_row_index("_row").join(
        people.select(cols).unique("person_key", keep="first"), on="person_key", how="left"
    ).sort("_row")
    out = {}
    if "gender" in joined.columns:
        out["gender"] = joined["gender"].cast(pl.String)
    if "birth_date" in joined.columns:
        out["age_band"] = age_bands(joined["birth_date"], as_of)
    if "district" in joined.columns:
        out["district"] = joined["district"].cast(pl.String)
    return pl.DataFrame(out)
