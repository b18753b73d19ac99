"""A person's score in points and the reasons behind it, in Chinese and English.

The reasons are the feature points themselves (SHAP values times the points scale), so they add
up to the score exactly: `base_points + Σ points = raw_score` (the score before clipping).

A person with no record yet. DESIGN.md gives them "the base score and the reason 'no record
yet'". We read "the base score" as the score of an empty file — every feature at its catalog
default — which is exactly what the model gives such a person in batch scoring too; it is
NOT `base_points` (the score of the average training person). Why: a no-record person must get
the same number from the online explanation, the nightly batch and the perk check, and must
not outscore someone whose file holds one good record (the monotone constraints guarantee the
empty file is ordered correctly; a forced `base_points` would not be). Their explanation shows
every feature's points as usual, and a single reason, NO_RECORD, carrying the net points of the
empty file, in place of per-feature reasons that would describe records they do not have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from features.catalog import BY_NAME, NO_RECORD_EN, NO_RECORD_ZH
from model.scorecard import BAND_ZH, Scorecard, band_of

NO_RECORD = "no_record"
LANGS = ("zh", "en", "both")


@dataclass
class Reason:
    """One feature's effect: its points, the person's value, and the catalog text."""

    feature: str
    points: float
    value: Any
    text_zh: str | None
    text_en: str | None

    def line(self, lang: str = "en") -> str:
        """'2 overdue bike returns in the last 12 months: −18 points'."""
        shown = f"{self.points:+.0f}".replace("-", "−")
        if lang == "zh":
            return f"{self.text_zh}：{shown}分"
        return f"{self.text_en}: {shown} points"


@dataclass
class Explanation:
    score: float
    raw_score: float
    band: str
    band_zh: str
    probability: float
    base_points: float
    points: dict[str, float]
    values: dict[str, Any]
    reasons_lowering: list[Reason] = field(default_factory=list)
    reasons_raising: list[Reason] = field(default_factory=list)
    no_record: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN values become None)."""
        out = asdict(self)
        out["values"] = {k: _plain(v) for k, v in self.values.items()}
        for key in ("reasons_lowering", "reasons_raising"):
            for reason in out[key]:
                reason["value"] = _plain(reason["value"])
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _row(features_row: Any) -> dict[str, Any]:
    if isinstance(features_row, dict):
        return dict(features_row)
    if isinstance(features_row, pl.DataFrame):
        if features_row.height != 1:
            raise ValueError(f"explain takes one person, got {features_row.height} rows")
        return features_row.row(0, named=True)
    if len(features_row) != 1:  # pandas
        raise ValueError(f"explain takes one person, got {len(features_row)} rows")
    return features_row.iloc[0].to_dict()


def reason_text(feature: str, value: Any, points: float, lang: str) -> str:
    """The catalog's text for a catalog feature; a plain 'name = value' otherwise."""
    if feature in BY_NAME and value is not None:
        return BY_NAME[feature].text(float(value), points, lang)
    return f"{feature}为{value}" if lang == "zh" else f"{feature} = {value}"


def _reason(feature: str, value: Any, points: float, lang: str) -> Reason:
    zh = reason_text(feature, value, points, "zh") if lang in ("zh", "both") else None
    en = reason_text(feature, value, points, "en") if lang in ("en", "both") else None
    return Reason(feature, float(points), _plain(value), zh, en)


def explain(scorecard: Scorecard, features_row: Any, records_counted: int | None = None,
            lang: str = "both", *, top: int = 4, min_points: float = 0.5) -> Explanation:
    """Score one person and give the up-to-`top` features that lowered and raised the score
    most. A feature whose points are under `min_points` in size is not a reason (it would show
    as "0 points"). `records_counted` defaults to the row's `records_counted` column when
    present; 0 means no record yet (see the module docstring)."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}")
    row = _row(features_row)
    if records_counted is None and row.get("records_counted") is not None:
        records_counted = int(row["records_counted"])
    scored = scorecard.score_frame({n: row.get(n) for n in scorecard.feature_names})
    names = scorecard.feature_names
    points = {n: float(p) for n, p in zip(names, scored.points[0], strict=True)}
    values = {n: _plain(row.get(n)) for n in names}
    score = float(scored.score[0])
    result = Explanation(score, float(scored.raw_score[0]), band_of(score),
                         BAND_ZH[band_of(score)], float(scored.probability[0]),
                         float(scored.base_points), points, values)
    if records_counted == 0:
        net = result.raw_score - result.base_points
        reason = Reason(NO_RECORD, net, 0,
                        NO_RECORD_ZH if lang in ("zh", "both") else None,
                        NO_RECORD_EN if lang in ("en", "both") else None)
        (result.reasons_lowering if net < 0 else result.reasons_raising).append(reason)
        result.no_record = True
        return result
    order = sorted(names, key=lambda n: (points[n], names.index(n)))
    result.reasons_lowering = [_reason(n, values[n], points[n], lang)
                               for n in order if points[n] <= -min_points][:top]
    result.reasons_raising = [_reason(n, values[n], points[n], lang)
                              for n in reversed(order) if points[n] >= min_points][:top]
    return result
