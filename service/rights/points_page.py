"""The explanation page in whole points that add up (model/shown.py), from a stored score row.

A row stored by this version carries its whole points (`score_shown`, `base_shown`,
`points_shown`, `clip_shown`, `other_shown`, each named reason's `points_shown`): the page
shows exactly those, so the batch, an online re-score and the API give the same integers. A
row stored before them carries the exact points only; its whole points and named reasons are
worked out here from those with the same functions (`apportion`, `select`), which is what a
re-score would store.

The page: `base_points + Σ reasons' points + other_points + clip_points = score`, all whole
numbers; `smaller_factors` lists every feature inside `other_points` (one tap on the page
shows them); each number's exact value is beside it (`*_exact`) for modellers.
"""

from __future__ import annotations

import math

import numpy as np

from features.catalog import NO_RECORD_EN, NO_RECORD_ZH
from model.explain import NO_RECORD, reason_text
from model.shown import apportion, select

TOP, MIN_POINTS = 4, 0.5  # as `explain` names reasons


def _text(feature: str, value, points: float, lang: str) -> str:
    if feature == NO_RECORD:
        return NO_RECORD_ZH if lang == "zh" else NO_RECORD_EN
    return reason_text(feature, value, points, lang)


def _worked_out(row: dict) -> dict:
    """The whole points of a row stored without them (see the module docstring)."""
    stored, exact = row["reasons"], row["points"]
    names = list(exact)
    points = np.array([[float(exact[n]) for n in names]])
    shown = apportion(points, float(row["base_points"]), np.array([float(row["raw_score"])]),
                      np.array([float(row["score"])]))
    no_record = bool(stored.get("no_record"))
    order, low, high, other = select(points, shown.points, np.array([no_record]), TOP,
                                     MIN_POINTS)
    whole = dict(zip(names, shown.points[0].tolist(), strict=True))
    ranking = [names[j] for j in order[0].tolist()]
    named = ([{"feature": NO_RECORD, "points": row["raw_score"] - row["base_points"],
               "value": 0, "points_shown": sum(whole.values())}] if no_record else
             [{"feature": n, "points": exact[n], "value": stored["values"].get(n),
               "points_shown": whole[n]}
              for n in ranking[:int(low[0])] + ranking[::-1][:int(high[0])]])
    return {"score_shown": int(shown.score[0]), "base_shown": shown.base, "points_shown": whole,
            "clip_shown": int(shown.clip[0]), "other_shown": int(other[0]), "named": named}


def _line(feature: str, value, exact: float, whole: int, lang: str) -> dict:
    zh, en = _text(feature, value, exact, "zh"), _text(feature, value, exact, "en")
    return {"feature": feature, "points": whole, "points_exact": exact, "value": value,
            "text_zh": zh, "text_en": en, "text": zh if lang == "zh" else en}


def explanation_body(row: dict, lang: str) -> dict:
    """The explanation's numbers and reasons (everything but the score brief) for a row."""
    stored = row["reasons"]
    if "points_shown" in stored:
        whole = stored
        named = stored["reasons_lowering"] + stored["reasons_raising"]
    else:
        whole = _worked_out(row)
        named = whole["named"]
    reasons = [_line(r["feature"], r["value"], r["points"], r["points_shown"], lang)
               for r in named]
    reasons.sort(key=lambda r: (r["points"], r["points_exact"]))
    names = {r["feature"] for r in named}
    exact, values = row["points"], stored.get("values") or {}
    smaller = [] if stored.get("no_record") else [  # no record: one reason carries it all
        _line(f, values.get(f), exact[f], p, lang)
        for f, p in whole["points_shown"].items() if f not in names and p != 0]
    smaller.sort(key=lambda r: (r["points"], r["points_exact"]))
    other_exact = (0.0 if stored.get("no_record") else
                   row["raw_score"] - row["base_points"] - sum(r["points_exact"] for r in reasons))
    return {"score": whole["score_shown"], "score_exact": row["score"],
            "base_points": whole["base_shown"], "base_points_exact": row["base_points"],
            "raw_score": row["raw_score"], "no_record": bool(stored.get("no_record")),
            "other_points": whole["other_shown"], "other_points_exact": other_exact,
            "clip_points": whole["clip_shown"], "reasons": reasons, "smaller_factors": smaller}


def whole_score(score: float) -> int:
    """The score a citizen sees: cut to a whole number, never rounded up."""
    return int(math.floor(score))
