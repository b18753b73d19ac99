"""Advice that helps: for every adverse record and every locked perk, what to do, the exact
points it would restore, and the date it would happen by itself.

The points are never a guess: the person's own records are re-scored by the real feature
builder and scorecard with that record left out (`whatif.scores_without`), all variants in one
pass. "By itself" is the record's own expiry (`features.repair.terms`), and for a perk the first
date within a year on which the person's score, re-computed as of that date from the records
they have now, would pass the perk (nothing new is assumed, good or bad). The dates tried are
the first of each coming month, when the features' 12-, 24- and 36-month windows move on, and
each adverse record's expiry: most of a score's points fade as its records leave those
windows, years before the records themselves expire, so expiries alone would promise a perk
far too late or never. Nothing impossible is advised: a court listing is fulfilled, not
repaired; repair is offered only from its date; a perk that even clearing every adverse
record would not reach is said to be out of reach this year, with the score that clearing
would give (waiting is not tried for it: waiting only lets records leave their windows, which
clearing does at once).
"""

from __future__ import annotations

import datetime as dt
import math

from flask import Flask

from features.rules import add_months
from service.rights.pages import explained_records, score_row
from service.rights.perks import CONDITIONS
from service.scoring.whatif import scores_without

HORIZON = dt.timedelta(days=365)
MAX_EXPIRIES = 12  # expiry dates tried for "by itself", beside the 12 month starts


def _actions(source: str, record: dict, given, as_of: dt.date) -> list[dict]:
    """What the citizen can do about one adverse record, in the order a bureau would say it."""
    out = []
    if given.obligation_en:
        out.append({"action": "fulfil", "text_zh": given.obligation_zh,
                    "text_en": given.obligation_en})
    if given.repairable and given.repairable_from is not None:
        when = given.repairable_from
        out.append({"action": "apply_for_repair", "from": max(when, as_of),
                    "text_zh": f"履行义务后申请信用修复（自 {when.isoformat()} 起可申请）",
                    "text_en": f"then apply for credit repair (possible from {when.isoformat()})"})
    out.append({"action": "dispute_if_wrong", "text_zh": "如记录有误，可提出异议",
                "text_en": "if the record is wrong, dispute it"})
    return out


def advice(app: Flask, person_key: str, lang: str) -> dict:
    row = score_row(app, person_key)
    score = row["score"]
    records, as_of, listed = explained_records(app, person_key)
    adverse = [r for r in listed if r["counts"] and r["terms"].adverse]
    serving = app.extensions["osmanthus.model"]
    each = [(r["source"], r["record_id"]) for r in adverse]
    # one pass: as now, without each adverse record, and without all of them at once
    variants = scores_without(app, records, [None, *each, each], as_of) if serving.ready else []
    now_score = variants[0][0] if variants else score
    items = []
    for record, (without, _) in zip(adverse, variants[1:-1], strict=False):
        given = record["terms"]
        items.append({
            "source": record["source"], "record_id": record["record_id"], "date": record["date"],
            "points_restored": round(without - now_score, 1),
            "stops_by_itself_on": given.expires_on,
            "repairable_from": given.repairable_from if given.repairable else None,
            "actions": [{**a, "text": a["text_zh"] if lang == "zh" else a["text_en"]}
                        for a in _actions(record["source"], record, given, as_of)],
        })
    items.sort(key=lambda a: -a["points_restored"])
    cleared = variants[-1] if variants else None
    perks = _perk_advice(app, records, as_of, score, row["reasons"]["features"], adverse,
                         cleared, lang)
    return {"as_of": as_of, "score": score, "records": items, "perks": perks}


def _perk_advice(app: Flask, records, as_of: dt.date, score: float, features: dict,
                 adverse: list[dict], cleared: tuple[float, dict] | None,
                 lang: str) -> list[dict]:
    """`cleared`: the (score, features) with every adverse counting record cleared."""
    config = app.extensions["osmanthus.perks"]
    locked = [p for p in config.perks if p.decide(score, features) == "no"]
    if not locked or cleared is None:
        return []
    # waiting lets records leave their windows, which clearing them does at once: a date is
    # looked for only where clearing would reach the perk (and no build is spent otherwise)
    reachable_now = [p for p in locked if p.decide(*cleared) == "yes"]
    unlocked = _unlock_dates(app, records, as_of, adverse, reachable_now)
    out = []
    for perk in locked:
        by_itself = unlocked.get(perk.perk_id)
        reachable = perk in reachable_now
        failed = perk.failed_conditions(features)
        texts = [(CONDITIONS[c][2], CONDITIONS[c][3]) for c in failed]
        if reachable:
            needed = math.ceil(perk.points_needed(score))  # as the page counts: never short
            zh = f"还差 {needed} 分" + (
                "；" + "、".join(t[0] for t in texts) if texts else "")
            en = f"{needed} points to go" + (
                "; needs " + ", ".join(t[1] for t in texts) if texts else "")
        else:
            zh = (f"今年内无法达到：即使清除全部不良记录，分数约为 {cleared[0]:.0f}，"
                  f"低于 {perk.min_score:.0f}")
            en = (f"out of reach this year: even with every adverse record cleared your score "
                  f"would be about {cleared[0]:.0f}, below {perk.min_score:.0f}")
        out.append({"perk_id": perk.perk_id, "points_needed": perk.points_needed(score),
                    "reachable_this_year": reachable, "score_if_all_cleared": cleared[0],
                    "unlocks_by_itself_on": by_itself, "failed_conditions": failed,
                    "text_zh": zh, "text_en": en, "text": zh if lang == "zh" else en})
    return out


def _month_starts(as_of: dt.date, horizon: dt.timedelta) -> list[dt.date]:
    """The first day of each month after `as_of`, up to `as_of + horizon`."""
    first, last = as_of.replace(day=1), as_of + horizon
    starts = (add_months(first, k) for k in range(1, horizon.days // 28 + 2))
    return [day for day in starts if day <= last]


def _unlock_dates(app: Flask, records, as_of: dt.date, adverse: list[dict],
                  locked: list) -> dict[str, dt.date]:
    """perk_id → the first date within a year on which the person's score, from the records
    they have now, passes that perk; one feature build per date, in date order, stopping once
    every locked perk has its date."""
    expiries = sorted({r["terms"].expires_on for r in adverse if r["terms"].expires_on
                       and as_of < r["terms"].expires_on <= as_of + HORIZON})[:MAX_EXPIRIES]
    found: dict[str, dt.date] = {}
    if not locked:
        return found
    for day in sorted({*_month_starts(as_of, HORIZON), *expiries}):
        score, features = scores_without(app, records, [None], day)[0]
        for perk in locked:
            if perk.perk_id not in found and perk.decide(score, features) == "yes":
                found[perk.perk_id] = day
        if len(found) == len(locked):
            break
    return found
