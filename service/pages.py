"""A citizen's pages, assembled from the store: score, explanation, records, perks, access log.

Everything here reads one person's rows (a few indexed reads); nothing here is audited, since
these pages are only ever served to the person themselves. The one costly page is perks: for
each locked perk it asks which single counting record, if cleared, would unlock it, by building
the person's features once per record left out — all variants in one feature build and one
scoring pass, since a person has at most a few hundred records.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from flask import Flask

from features import rules
from features.build import build_features
from features.records import SCHEMAS, Records, Source
from model.scorecard import BAND_ZH
from service.audit import entries_for
from service.disputes import latest_by_record
from service.errors import ApiError
from service.perks import CONDITIONS, Perk
from service.review import review_state
from service.scoring import latest, newest_of_each_date, rescore, today, trend_of
from service.store import load_records

# rules' reasons in plain words: (zh, en)
REASON_TEXT: dict[str, tuple[str, str]] = {
    rules.NOT_YET_KNOWN: ("该记录晚于评分日期，尚未计入",
                          "too recent: dated on or after the scoring date"),
    rules.DISPUTED: ("异议处理中，暂不计入", "under dispute: frozen until the dispute is resolved"),
    rules.REPAIRED: ("已完成信用修复，不再计入", "credit repair accepted: no longer counts"),
    rules.FULFILLED: ("失信被执行已履行，不再计入", "court listing fulfilled: no longer counts"),
    rules.REMOVED: ("失信被执行已撤销，不再计入", "court listing removed: no longer counts"),
    rules.MINOR: ("轻微行政处罚，不予公示", "minor penalty: never counts"),
    rules.OUTSIDE_WINDOW: ("已过公示期，不再计入",
                           "its disclosure period is over: no longer counts"),
    rules.PAST_RETENTION: ("超过五年保存期限，不再计入", "older than five years: no longer counts"),
}


def _engine(app: Flask):
    return app.extensions["osmanthus.engine"]


def score_row(app: Flask, person_key: str) -> dict:
    """The person's latest score row; someone never scored is scored now."""
    row = latest(_engine(app), person_key)
    if row is not None:
        return row
    if not app.extensions["osmanthus.model"].ready:
        raise ApiError(503, "no score yet, and no model is loaded to compute one")
    return rescore(app, person_key)


def score_brief(row: dict) -> dict:
    return {"score": row["score"], "band": row["band"], "band_zh": BAND_ZH[row["band"]],
            "model_version": row["model_version"], "as_of": row["as_of"]}


def score_page(app: Flask, person_key: str) -> dict:
    """Score, band, model, as-of date and the trend (oldest first, the last `TREND_POINTS`
    dates), from one query on one connection (`newest_of_each_date`: a page never reads the
    JSON of reasons it does not show). Someone never scored is scored first."""
    points = newest_of_each_date(_engine(app), person_key)
    if not points:
        score_row(app, person_key)
        points = newest_of_each_date(_engine(app), person_key)
    newest = max(points, key=lambda point: point["id"])
    history = [{**point, "band_zh": BAND_ZH[point["band"]]} for point in trend_of(points)]
    return {**score_brief(newest), "trend": history}


def explanation(app: Flask, person_key: str, lang: str) -> dict:
    """Base points and every reason, both texts always present, `text` in `lang`.

    `other_points` is what features too small to be a reason (or beyond the top few) add up
    to, so that base + reasons + other = the score before clipping."""
    row = score_row(app, person_key)
    stored = row["reasons"]
    reasons = sorted(stored["reasons_lowering"] + stored["reasons_raising"],
                     key=lambda r: r["points"])
    shown = [{"feature": r["feature"], "points": r["points"], "value": r["value"],
              "text_zh": r["text_zh"], "text_en": r["text_en"],
              "text": r["text_zh"] if lang == "zh" else r["text_en"]} for r in reasons]
    return {**score_brief(row), "language": lang, "base_points": row["base_points"],
            "raw_score": row["raw_score"], "no_record": bool(stored.get("no_record")),
            "other_points": row["raw_score"] - row["base_points"] - sum(r["points"] for r in shown),
            "reasons": shown}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _own_columns(source: Source) -> list[str]:
    return [name for name in SCHEMAS[source].column_names if name != "resident_id"]


def explained_records(app: Flask, person_key: str) -> tuple[Records, dt.date, list[dict]]:
    """The person's records, each with counts/reason as of today (rows hold the source's own
    columns, never the person key)."""
    as_of = today(app.extensions["osmanthus.config"])
    records = load_records(_engine(app), [person_key])
    out = []
    for source in Source:
        spec = SCHEMAS[source]
        for row in rules.explain_records(source, records.get(source), as_of).iter_rows(named=True):
            out.append({"source": source.value, "record_id": row["record_id"],
                        "date": row[spec.date_column], "counts": row["counts"],
                        "rule": row["reason"], "repaired_on": row["repaired_on"],
                        "details": {c: _plain(row[c]) for c in _own_columns(source)}})
    out.sort(key=lambda r: (r["date"], r["source"], r["record_id"]), reverse=True)
    return records, as_of, out


def records_page(app: Flask, person_key: str, lang: str) -> dict:
    _, as_of, records = explained_records(app, person_key)
    disputes = latest_by_record(_engine(app), person_key)
    for record in records:
        zh, en = REASON_TEXT.get(record["rule"], (record["rule"], record["rule"])) \
            if record["rule"] else (None, None)
        dispute = disputes.get((record["source"], record["record_id"]))
        record.update(reason_zh=zh, reason_en=en, reason=zh if lang == "zh" else en,
                      dispute=dispute, dispute_state=dispute["state"] if dispute else "none",
                      can_dispute=record["counts"])
        del record["rule"]
    counting = sum(r["counts"] for r in records)
    return {"as_of": as_of, "counting": counting, "not_counting": len(records) - counting,
            "records": records}


def _without_each(app: Flask, records: Records, candidates: list[dict],
                  as_of: dt.date) -> list[tuple[float, dict]]:
    """For each candidate record, the person's (score, features) with only that record
    removed: one variant person per candidate, all built and scored together."""
    frames: dict[str, list[pl.DataFrame]] = {s.value: [] for s in Source}
    for i, candidate in enumerate(candidates):
        variant = pl.lit(f"v{i:05d}")
        for source in Source:
            frame = records.get(source)
            if source.value == candidate["source"]:
                frame = frame.filter(pl.col("record_id") != candidate["record_id"])
            frames[source.value].append(frame.with_columns(variant.alias("person_key")))
    variants = Records(**{name: pl.concat(parts) for name, parts in frames.items()})
    keys = [f"v{i:05d}" for i in range(len(candidates))]
    table = build_features(variants, as_of, keys)  # sorted by key, i.e. by candidate
    scored = app.extensions["osmanthus.model"].scorecard.score_frame(table)
    return [(float(score), row) for score, row in
            zip(scored.score, table.iter_rows(named=True), strict=True)]


def _condition(name: str, features: dict) -> dict:
    feature, most, zh, en = CONDITIONS[name]
    return {"condition": name, "text_zh": zh, "text_en": en,
            "met": features.get(feature, 0.0) <= most}


def perks_page(app: Flask, person_key: str) -> dict:
    """Each perk: the person's answer, and for a locked one the points still needed and the
    counting records whose clearing alone would unlock it."""
    row = score_row(app, person_key)
    score, features = row["score"], row["reasons"]["features"]
    review_now = review_state(_engine(app), person_key)
    review, outcome = review_now["state"], review_now["outcome"]
    config = app.extensions["osmanthus.perks"]
    partner_names = {p["partner_id"]: p.get("name") for p in config.partners}
    locked = [perk for perk in config.perks if perk.decide(score, features) == "no"]
    what_if: list[tuple[dict, float, dict]] = []
    if locked and app.extensions["osmanthus.model"].ready:
        records, as_of, listed = explained_records(app, person_key)
        candidates = [r for r in listed if r["counts"]]
        if candidates:
            variants = _without_each(app, records, candidates, as_of)
            what_if = [(c, s, f) for c, (s, f) in zip(candidates, variants, strict=True)]

    def unlocked_by(perk: Perk) -> list[dict]:
        return [{"source": c["source"], "record_id": c["record_id"], "date": c["date"],
                 "score_without": s} for c, s, f in what_if
                if s >= perk.min_score and not perk.failed_conditions(f)]

    perks = []
    for perk in config.perks:
        is_locked = perk in locked
        perks.append({
            "perk_id": perk.perk_id, "policy_version": perk.policy_version,
            "name_zh": perk.name_zh, "name_en": perk.name_en, "partner_id": perk.partner_id,
            "partner_name": partner_names.get(perk.partner_id), "min_score": perk.min_score,
            "status": perk.decide(score, features, review, outcome), "locked": is_locked,
            "points_needed": perk.points_needed(score),
            "conditions": [_condition(name, features) for name in perk.conditions],
            "unlocked_by": unlocked_by(perk) if is_locked else [],
        })
    return {"score": score, "review_state": review, "perks": perks}


def access_log(app: Flask, person_key: str, *, before: int | None = None,
               limit: int = 200) -> list[dict]:
    """Who asked about the person or acted on their file, newest first. A partner's question
    is shown with its perk and answer (`detail.perk_id`, `detail.eligible`)."""
    out = []
    for entry in entries_for(_engine(app), person_key, limit, before=before):
        actor, detail = entry["actor"], entry["detail"] or {}
        role, _, name = actor.partition(":")
        at = entry["at"]
        out.append({
            "seq": entry["seq"],
            "at": at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at,
            "actor": actor, "action": entry["action"],
            "partner_id": name if role == "partner" else None,
            "perk_id": detail.get("perk_id", detail.get("perk")),
            "answer": detail.get("eligible", detail.get("answer")),
            "detail": detail,
        })
    return out
