"""Whole points that add up: what a citizen sees, checkable with a pencil.

The exact points are floats (SHAP values times the points scale): `base + Σ points = raw`.
Shown as whole numbers each on its own, they would not add up (82 of 300 sampled people did
not). So the page shows integers chosen to add up exactly:

- the score shown is `floor(score)`: the score is cut, never rounded up, so 599.6 reads 599
  and is "fair" (bands and perk minimums are whole numbers: `floor(score) ≥ 600` exactly when
  `score ≥ 600`, so what a citizen sees and what a partner is told never disagree);
- the base shown is `floor(base points)`, one number for everyone (the printed scorecard's);
- each feature's shown points are its exact points rounded down or up, by largest remainder
  (Hamilton's method): every feature gets `floor(points)`, and the few units still missing
  to reach `floor(raw) − base shown` go to the features with the largest fractional parts.
  So every shown number is within 1 of its exact value, and the shown numbers differ from
  plain rounding in as few features as possible (those nearest a half). Equal fractions
  (also those float rounding makes equal) go to the larger exact point first, then to the
  later feature in catalog order, so shown points never run against the exact ones: sorting
  by (exact points, catalog order) also sorts the shown points;
- clipping to the scale's limits (0–1000) is a line of its own, `clip`: the shown score
  minus `floor(raw)`, zero unless the raw score left the scale. So
  `base + Σ shown points + clip = shown score`, always.

`select` picks the reasons a page names: at least `top` each way (as before), then more,
largest first, until "smaller factors" (the shown points of every feature not named) is no
larger in size than the smallest named reason.

Everything here works on many people at once (an (n, k) matrix); one person is n = 1, so the
API, the nightly batch and an online re-score give the same integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Shown:
    """n people's whole points: base (one for all), per feature (n, k), clip and score (n,)."""

    base: int
    points: np.ndarray  # int64 (n, k), columns in feature order
    clip: np.ndarray  # int64 (n,): shown score − floor(raw score)
    score: np.ndarray  # int64 (n,): floor(score)


def apportion(points: np.ndarray, base_points: float, raw_score: np.ndarray,
              score: np.ndarray) -> Shown:
    """Largest-remainder integers for `points` (n, k) so that, per row,
    `floor(base) + Σ shown + clip = floor(score)` (see the module docstring)."""
    points = np.asarray(points, dtype=np.float64).reshape(len(raw_score), -1)
    n, k = points.shape
    base = int(np.floor(base_points))
    total = np.floor(np.asarray(raw_score, dtype=np.float64)).astype(np.int64)
    shown_score = np.floor(np.asarray(score, dtype=np.float64)).astype(np.int64)
    clip = shown_score - total
    if k == 0:  # nothing to share: the score is the base (raw == base)
        return Shown(base, np.zeros((n, 0), dtype=np.int64), shown_score - base, shown_score)
    low = np.floor(points)
    fraction = points - low
    # units to hand out beyond every floor; 0 ≤ missing ≤ k in exact arithmetic, and divmod
    # keeps the sum exact even if float noise of the raw score pushed it one past either end
    missing = total - base - low.astype(np.int64).sum(axis=1)
    each, extra = np.divmod(missing, k)
    # rank by fraction, largest first; ties (also those float rounding makes, as a tiny negative
    # point's fraction rounds to 1.0): the larger exact point first, so the shown points keep the
    # exact points' order; then the later catalog feature first
    later = np.broadcast_to(-np.arange(k), (n, k))
    order = np.lexsort((later, -points, -fraction), axis=1)
    shown = low.astype(np.int64)
    shown += each[:, None]
    shown[np.arange(n)[:, None], order] += np.arange(k)[None, :] < extra[:, None]
    return Shown(base, shown, clip, shown_score)


def _kept(counts: np.ndarray, top: int) -> np.ndarray:
    """len(range(c)[:top]) for every count c: how many candidates a `[:top]` slice keeps."""
    return np.minimum(counts, top) if top >= 0 else np.maximum(counts + top, 0)


def select(points: np.ndarray, shown: np.ndarray, skip: np.ndarray, top: int,
           min_points: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reasons to name, per row: (order, lowering count, raising count, smaller factors).

    `order` ranks each row's features by exact points (stable: ties keep catalog order); the
    lowering reasons are its first `low[i]` entries, the raising ones the first `high[i]` of its
    reverse. At first, as many as `[:top]` keeps of the features whose exact and shown points
    are at least `min_points` in size; then, while the shown points of the features not named add up
    to more (in size) than the smallest named reason, the next feature on the side the rest
    leans to is named too. Rows in `skip` (no record yet) name none. `other[i]`: the shown
    points of the features not named, summed (what "smaller factors" shows)."""
    n, k = points.shape
    order = np.argsort(points, axis=1, kind="stable")
    # a candidate is at least `min_points` in size, exact and shown (no "0 points" reason);
    # both orders agree, so the candidates are a prefix of the ranking
    lowering = (points <= -min_points) & (shown <= -min_points)
    raising = (points >= min_points) & (shown >= min_points)
    low = np.where(skip, 0, _kept(np.count_nonzero(lowering, axis=1), top))
    high = np.where(skip, 0, _kept(np.count_nonzero(raising, axis=1), top))
    if k == 0:
        return order, low, high, np.zeros(n, dtype=np.int64)
    by_order = np.take_along_axis(shown, order, axis=1)
    rank = np.arange(k)[None, :]
    named = np.zeros((n, k), dtype=bool)  # in `order`'s positions
    named |= rank < low[:, None]
    named |= rank[:, ::-1] < high[:, None]
    other = np.where(named, 0, by_order).sum(axis=1)
    smallest = np.where(named, np.abs(by_order), np.iinfo(np.int64).max).min(axis=1)
    smallest = np.where(named.any(axis=1), smallest, 0)
    rows = np.arange(n)
    for _ in range(2 * k):  # each pass names one more feature in every row that needs it
        need = ~skip & (np.abs(other) > smallest)
        if not need.any():
            break
        lower = need & (other < 0) & (low < k)
        raise_ = need & (other > 0) & (high < k)
        for mask, side in ((lower, "low"), (raise_, "high")):
            if not mask.any():
                continue
            i = rows[mask]
            position = low[i] if side == "low" else k - 1 - high[i]
            if side == "low":
                low[i] += 1
            else:
                high[i] += 1
            fresh = ~named[i, position]
            named[i, position] = True
            value = by_order[i, position]
            other[i] -= np.where(fresh, value, 0)
            smallest[i] = np.minimum(smallest[i], np.abs(value))
    return order, low, high, np.where(skip, 0, other)  # no record: one reason carries all
