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

Many people at once. `explain` is the one-person path (the API). `explain_frame` /
`explain_columns` give exactly the same dicts for a whole features table (batch scoring,
`service.scoring.score.score_rows`): one `score_frame`, one stable argsort of the points matrix,
reasons picked by masks and built once per distinct (feature, value, points). What is left is
building the Python dicts themselves, which the store writes: at 10,000 people the vectorised
path ran at about 1.3–1.6× the cost of building just the points, values and features dicts
(the floor in bench/rescore.py), and with whole points (model/shown.py: one more dict per
person, and more reasons named) at 1.8× (a loaded 2-core machine, `--people 1000`), still
about 17× faster than one `explain` per person.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from features.catalog import BY_NAME, NO_RECORD_EN, NO_RECORD_ZH
from model.rows import gc_paused, python_rows
from model.scorecard import BAND_ZH, Scorecard, Scored, band_of
from model.shown import apportion, select

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
    points_shown: int = 0  # the whole points a citizen sees (model/shown.py)

    def line(self, lang: str = "en") -> str:
        """'2 overdue bike returns in the last 12 months: −18 points'."""
        shown = f"{self.points_shown:+d}".replace("-", "−")
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
    # what a citizen sees, in whole points that add up (model/shown.py):
    # base_shown + Σ points_shown + clip_shown = score_shown; other_shown is "smaller factors"
    score_shown: int = 0
    base_shown: int = 0
    points_shown: dict[str, int] = field(default_factory=dict)
    clip_shown: int = 0
    other_shown: int = 0

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
    """Score one person and give the `top` features that lowered and raised the score most,
    and more when the rest ("smaller factors") would outweigh the smallest of them
    (`model.shown.select`). A feature whose points are under `min_points` in size is not one
    of the first `top` (it would show as "0 points"). `records_counted` defaults to the row's
    `records_counted` column when present; 0 means no record yet (see the module
    docstring)."""
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
    shown = apportion(scored.points, scored.base_points, scored.raw_score, scored.score)
    whole = shown.points[0].tolist()
    order, low, high, other = select(scored.points, shown.points,
                                     np.array([records_counted == 0]), top, min_points)
    result = Explanation(score, float(scored.raw_score[0]), band_of(score),
                         BAND_ZH[band_of(score)], float(scored.probability[0]),
                         float(scored.base_points), points, values,
                         score_shown=int(shown.score[0]), base_shown=shown.base,
                         points_shown=dict(zip(names, whole, strict=True)),
                         clip_shown=int(shown.clip[0]), other_shown=int(other[0]))
    if records_counted == 0:
        net = result.raw_score - result.base_points
        reason = Reason(NO_RECORD, net, 0,
                        NO_RECORD_ZH if lang in ("zh", "both") else None,
                        NO_RECORD_EN if lang in ("en", "both") else None, sum(whole))
        (result.reasons_lowering if net < 0 else result.reasons_raising).append(reason)
        result.no_record = True
        return result

    def reason(j: int) -> Reason:
        named = _reason(names[j], values[names[j]], points[names[j]], lang)
        named.points_shown = whole[j]
        return named

    ranking = order[0].tolist()
    result.reasons_lowering = [reason(j) for j in ranking[:int(low[0])]]
    result.reasons_raising = [reason(j) for j in ranking[::-1][:int(high[0])]]
    return result


# --- many people at once (`gc_paused`, `python_rows`: model/rows.py) --------------------------


def _plain_rows(frame: pl.DataFrame) -> tuple[list, list[bool]]:
    """`python_rows` after `_plain` (NaN → None), and per column whether its reason texts may
    be cached by value: one plain type, and no −0.0 (0.0 == −0.0 as a key, yet they print
    differently)."""
    rows = python_rows(frame)
    cacheable, nan_rows = [], np.zeros(frame.height, dtype=bool)
    for series in frame.get_columns():
        dtype = series.dtype
        if dtype.is_float():
            array = series.to_numpy()
            nan_rows |= np.isnan(array)
            cacheable.append(not np.any((array == 0) & np.signbit(array)))
        else:
            plain = dtype.is_integer() or dtype in (pl.String, pl.Boolean, pl.Null)
            cacheable.append(plain)
            if not plain:  # objects, decimals…: whatever `_plain` makes of them
                nan_rows[:] = True
    for i in np.flatnonzero(nan_rows).tolist():
        rows[i] = [_plain(v) for v in rows[i]]
    return rows, cacheable


SMALL = 8  # up to this many people (one online re-score), no Polars work per column


def _score_few(scorecard: Scorecard, table: pl.DataFrame) -> tuple[Scored, list, list]:
    """(scores, plain values, records_counted) of a handful of rows, each scored from its
    dict as `explain` scores it: Polars' fixed cost per operation would dwarf the work."""
    names = scorecard.feature_names
    rows = table.rows(named=True)
    each = [scorecard.score_frame({name: row.get(name) for name in names}) for row in rows]
    scored = Scored(*(np.concatenate([getattr(s, f) for s in each])
                      for f in ("probability", "raw_score", "score")),
                    each[0].base_points, np.vstack([s.points for s in each]), list(names))
    values = [[_plain(row.get(name)) for name in names] for row in rows]
    return scored, values, [row.get("records_counted") for row in rows]


@dataclass
class Explained:
    """Many people's explanations, column by column (`Explanation.to_dict()`'s fields, one
    list per field, one entry per person): what `explain_frame` and the batch path zip into
    rows."""

    score: list[float]
    raw_score: list[float]
    band: list[str]
    band_zh: list[str]
    probability: list[float]
    base_points: float
    points: list[dict[str, float]]
    values: list[dict[str, Any]]
    reasons_lowering: list[list[dict[str, Any]]]
    reasons_raising: list[list[dict[str, Any]]]
    no_record: list[bool]
    score_shown: list[int]
    base_shown: int
    points_shown: list[dict[str, int]]
    clip_shown: list[int]
    other_shown: list[int]

    def rows(self) -> list[dict[str, Any]]:
        """One `Explanation.to_dict()` per person, keys in the same order."""
        base, whole = self.base_points, self.base_shown
        return [{"score": s, "raw_score": r, "band": b, "band_zh": bz, "probability": p,
                 "base_points": base, "points": pts, "values": v, "reasons_lowering": lo,
                 "reasons_raising": hi, "no_record": nr, "score_shown": ss, "base_shown": whole,
                 "points_shown": ps, "clip_shown": cs, "other_shown": os}
                for s, r, b, bz, p, pts, v, lo, hi, nr, ss, ps, cs, os in zip(
                    self.score, self.raw_score, self.band, self.band_zh, self.probability,
                    self.points, self.values, self.reasons_lowering, self.reasons_raising,
                    self.no_record, self.score_shown, self.points_shown, self.clip_shown,
                    self.other_shown, strict=True)]


class _Reasons:
    """Reason dicts for (person, feature) pairs. Texts depend on the feature, the value and
    the sign of the points only, so each distinct (feature, value, points) reason is built
    once and copied into every person who has it (a city has few distinct values per
    feature); uncacheable columns are built one by one."""

    def __init__(self, names: list[str], values: list, cacheable: list[bool],
                 lang: str, min_points: float) -> None:
        self.names, self.values = names, values  # values: rows, as `_plain_rows` gives them
        # 0.0 == −0.0 as a key too: with min_points ≤ 0 a reason may carry either
        self.cacheable = cacheable if min_points > 0 else [False] * len(names)
        self.zh, self.en = lang in ("zh", "both"), lang in ("en", "both")
        self.cache: dict[tuple[int, Any, float], dict[str, Any]] = {}

    def build(self, j: int, value: Any, points: float) -> dict[str, Any]:
        name = self.names[j]
        return {"feature": name, "points": points, "value": value,
                "text_zh": reason_text(name, value, points, "zh") if self.zh else None,
                "text_en": reason_text(name, value, points, "en") if self.en else None,
                "points_shown": 0}  # set per person by the caller (it is not per value)

    def __call__(self, people: np.ndarray, features: np.ndarray, points: np.ndarray,
                 numbers: np.ndarray | None) -> list[dict[str, Any]]:
        """The reasons of (people[e], features[e]) with `points[e]`, in that order. `numbers`:
        the features as a float matrix when every column is Float64 (then reasons are
        grouped by their bits in Polars, not keyed one by one in Python)."""
        if numbers is not None and len(people):
            return self._grouped(people, features, points, numbers)
        values, cacheable, cache, build = self.values, self.cacheable, self.cache, self.build
        out = []
        append = out.append
        for i, j, p in zip(people.tolist(), features.tolist(), points.tolist(),
                           strict=False):  # equal lengths
            v = values[i][j]
            if cacheable[j]:
                key = (j, v, p)
                reason = cache.get(key)
                if reason is None:
                    reason = cache[key] = build(j, v, p)
                append(reason.copy())
            else:
                append(build(j, v, p))
        return out

    def _grouped(self, people: np.ndarray, features: np.ndarray, points: np.ndarray,
                 numbers: np.ndarray) -> list[dict[str, Any]]:
        """Group the reasons by (feature, value bits, points bits) — bits, so that 0.0 and
        −0.0 stay apart; every NaN is one value, None — build one per group, copy it out."""
        value = numbers[people, features]
        bits = value.view(np.int64).copy()
        bits[np.isnan(value)] = 0x7FF8000000000000
        keys = pl.DataFrame({"j": features, "v": bits, "p": points.view(np.int64)})
        groups = keys.with_row_index("e").group_by("j", "v", "p").agg(pl.col("e"))
        members = groups["e"]
        first = members.list.first().to_list()
        made = [self.build(j, self.values[people[e]][j], p) for e, j, p in zip(
            first, features[first].tolist(), points[first].tolist(), strict=False)]
        group = np.empty(len(people), dtype=np.int64)
        group[members.explode().to_numpy()] = np.repeat(np.arange(len(made)),
                                                        members.list.len().to_numpy())
        return [made[g].copy() for g in group.tolist()]


def explain_columns(scorecard: Scorecard, table: pl.DataFrame, lang: str = "both", *,
                    top: int = 4, min_points: float = 0.5) -> Explained:
    """Everyone's explanation at once, column by column (see `explain_frame`)."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}")
    names = scorecard.feature_names
    n, k = table.height, len(names)
    if n == 0:
        return Explained([], [], [], [], [], float(scorecard.base_points), [], [], [], [], [],
                         [], int(np.floor(scorecard.base_points)), [], [], [])
    numbers = None
    if n <= SMALL:
        scored, values, counted = _score_few(scorecard, table)
        cacheable = [False] * k
    else:
        missing = [pl.lit(None).alias(c) for c in names if c not in table.columns]
        frame = (table.with_columns(missing) if missing else table).select(names)
        scored = scorecard.score_frame(frame)
        counted = (table["records_counted"].to_list() if "records_counted" in table.columns
                   else [None] * n)
        values, cacheable = _plain_rows(frame)
        if n >= 64 and k and all(t == pl.Float64 for t in frame.dtypes):
            numbers = frame.to_numpy()  # reasons grouped in Polars: pays from a few dozen on
    points = scored.points
    no_record = [c == 0 for c in counted]
    skip = np.array(no_record, dtype=bool).reshape(n)
    shown = apportion(points, scored.base_points, scored.raw_score, scored.score)
    order, low_n, high_n, other = select(points, shown.points, skip, top, min_points)
    rank, people = np.arange(k), np.arange(n)
    reasons = _Reasons(names, values, cacheable, lang, min_points)
    picked = []
    for count, ranking in ((low_n, order), (high_n, order[:, ::-1])):
        rows, cols = np.repeat(people, count), ranking[rank < count[:, None]]
        flat = reasons(rows, cols, points[rows, cols], numbers)
        for reason, whole in zip(flat, shown.points[rows, cols].tolist(), strict=True):
            reason["points_shown"] = whole
        ends = np.cumsum(count).tolist()
        picked.append([flat[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=False)])
    lowering, raising = picked
    score, raw = scored.score.tolist(), scored.raw_score.tolist()
    base = float(scored.base_points)
    net_shown = shown.points.sum(axis=1)
    for i in np.flatnonzero(skip).tolist():
        net = raw[i] - base
        (lowering[i] if net < 0 else raising[i]).append(
            {"feature": NO_RECORD, "points": net, "value": 0,
             "text_zh": NO_RECORD_ZH if reasons.zh else None,
             "text_en": NO_RECORD_EN if reasons.en else None,
             "points_shown": int(net_shown[i])})
    bands = scored.bands
    # strict=False: every row has exactly len(names) entries (and is the fast zip)
    return Explained(
        score, raw, bands, [BAND_ZH[b] for b in bands], scored.probability.tolist(), base,
        [dict(zip(names, row, strict=False)) for row in points.tolist()],
        [dict(zip(names, row, strict=False)) for row in values], lowering, raising, no_record,
        shown.score.tolist(), shown.base,
        [dict(zip(names, row, strict=False)) for row in shown.points.tolist()],
        shown.clip.tolist(), other.tolist())


def explain_frame(scorecard: Scorecard, table: pl.DataFrame, lang: str = "both", *,
                  top: int = 4, min_points: float = 0.5) -> list[dict[str, Any]]:
    """`explain(scorecard, row, row["records_counted"], lang, top=…, min_points=…).to_dict()`
    for every row of a features table, computed for all rows at once.

    One `score_frame` gives every point; one stable argsort of the points matrix ranks each
    row's features (ties keep catalog order, as `explain`'s sort key does); the reasons kept
    are a prefix of that ranking (lowering) and of its reverse (raising), picked with one
    mask each; a reason is built once per distinct (feature, value, points). The dicts are
    equal, key order and floats included, to the per-row ones (tests/model/test_explain.py
    proves it on random tables); `explain` stays the one-person path of the API. A missing
    feature column reads as null, as `explain` reads a missing key; without a
    `records_counted` column nobody is "no record yet"."""
    with gc_paused():
        return explain_columns(scorecard, table, lang, top=top, min_points=min_points).rows()
