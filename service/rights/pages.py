"""A citizen's pages, assembled from the store: score, explanation, records, perks, access log.

Everything here reads one person's rows (a few indexed reads); nothing here is audited, since
these pages are only ever served to the person themselves. The one costly page is perks: for
each locked perk it asks which single counting record, if cleared, would unlock it, by building
the person's features once per record left out — all variants in one feature build and one
scoring pass, since a person has at most a few hundred records.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl
from flask import Flask

from features import rules
from features.catalog import BY_NAME
from features.records import SCHEMAS, Records, Source
from features.repair import terms as repair_terms
from model.scorecard import BAND_ZH
from service.base import clock
from service.base.errors import ApiError
from service.rights.audit import entries_for
from service.rights.disputes import latest_by_record
from service.rights.overdue import refreshed
from service.rights.perks import CONDITIONS, Perk, thin_file_condition
from service.rights.points_page import explanation_body, whole_score
from service.rights.repair import latest_by_record as repairs_by_record
from service.rights.review import answer_for, review_states
from service.scoring.score import latest, newest_of_each_date, rescore, trend_of
from service.scoring.whatif import scores_without
from service.store.records import load_records

# rules' reasons in plain words: (zh, en)
REASON_TEXT: dict[str, tuple[str, str]] = {
    rules.NOT_YET_KNOWN: ("该记录晚于评分日期，尚未计入",
                          "too recent: dated on or after the scoring date"),
    rules.DISPUTE_OVERDUE: ("异议逾期未答复，答复前暂不计入",
                            "dispute not answered by its due date: not counted until answered"),
    rules.REPAIRED: ("已完成信用修复，不再计入", "credit repair accepted: no longer counts"),
    rules.FULFILLED: ("失信被执行已履行，不再计入", "court listing fulfilled: no longer counts"),
    rules.REMOVED: ("失信被执行已撤销，不再计入", "court listing removed: no longer counts"),
    rules.MINOR: ("轻微行政处罚，不予公示", "minor penalty: never counts"),
    rules.OUTSIDE_WINDOW: ("已过公示期，不再计入",
                           "its disclosure period is over: no longer counts"),
    rules.PAST_RETENTION: ("超过五年保存期限，不再计入", "older than five years: no longer counts"),
}


UNDER_DISPUTE = ("异议处理中", "under dispute")  # the label beside a disputed record


def _engine(app: Flask):
    return app.extensions["osmanthus.engine"]


def score_row(app: Flask, person_key: str) -> dict:
    """The person's latest score row; someone never scored is scored now, and a score that
    still counts a record whose dispute went overdue is re-scored first (`overdue`)."""
    row = latest(_engine(app), person_key)
    if row is not None:
        return refreshed(app, person_key) or row
    if not app.extensions["osmanthus.model"].ready:
        raise ApiError(503, "no score yet, and no model is loaded to compute one")
    return rescore(app, person_key)


def score_brief(row: dict) -> dict:
    """Score (whole: cut, never rounded up), band, model and as-of date of a score row."""
    return {"score": whole_score(row["score"]), "band": row["band"], "band_zh": BAND_ZH[row["band"]],
            "model_version": row["model_version"], "as_of": row["as_of"]}


def score_page(app: Flask, person_key: str) -> dict:
    """Score, band, model, as-of date and the trend (oldest first, the last `TREND_POINTS`
    dates), from one query on one connection (`newest_of_each_date`: a page never reads the
    JSON of reasons it does not show). Someone never scored is scored first."""
    points = newest_of_each_date(_engine(app), person_key)
    if not points:
        score_row(app, person_key)
    if not points or refreshed(app, person_key) is not None:  # (never scored, or stale)
        points = newest_of_each_date(_engine(app), person_key)
    newest = max(points, key=lambda point: point["id"])
    history = [{**point, "score": whole_score(point["score"]), "band_zh": BAND_ZH[point["band"]]}
               for point in trend_of(points)]
    return {**score_brief(newest), "trend": history, "today": clock.today(app)}


def explanation(app: Flask, person_key: str, lang: str) -> dict:
    """Base points and every reason in whole points that add up to the score, both texts
    always present, `text` in `lang` (`service.rights.points_page`): base + reasons + other
    ("smaller factors", each listed) + clip = score."""
    row = score_row(app, person_key)
    body = explanation_body(row, lang)
    disputed = disputed_records(app, person_key, lang)
    sources = {d["source"] for d in disputed}
    for reason in body["reasons"] + body["smaller_factors"]:
        reason["under_dispute"] = feature_source(reason["feature"]) in sources
    return {**score_brief(row), "language": lang, **body, "under_dispute": disputed}


def feature_source(name: str) -> str | None:
    """The record source a feature is computed from (None for derived or unknown ones)."""
    feature = BY_NAME.get(name)
    source = getattr(feature, "source", None)
    return source.value if isinstance(source, Source) else source


def disputed_records(app: Flask, person_key: str, lang: str) -> list[dict]:
    """The person's records with an open dispute as of today, labelled "under dispute"."""
    as_of = clock.today(app)
    records = load_records(_engine(app), [person_key])
    out = []
    for source in Source:
        frame = rules.explain_records(source, records.get(source), as_of)
        for row in frame.filter(pl.col("under_dispute")).iter_rows(named=True):
            out.append({"source": source.value, "record_id": row["record_id"],
                        "due_on": row["dispute_due_on"], "counts": row["counts"],
                        "label": UNDER_DISPUTE[0] if lang == "zh" else UNDER_DISPUTE[1]})
    return out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _own_columns(source: Source) -> list[str]:
    return [name for name in SCHEMAS[source].column_names if name != "resident_id"]


def explained_records(app: Flask, person_key: str) -> tuple[Records, dt.date, list[dict]]:
    """The person's records, each with counts/reason as of today (rows hold the source's own
    columns, never the person key)."""
    as_of = clock.today(app)
    records = load_records(_engine(app), [person_key])
    out = []
    for source in Source:
        spec = SCHEMAS[source]
        for row in rules.explain_records(source, records.get(source), as_of).iter_rows(named=True):
            out.append({"source": source.value, "record_id": row["record_id"],
                        "date": row[spec.date_column], "counts": row["counts"],
                        "rule": row["reason"], "repaired_on": row["repaired_on"],
                        "under_dispute": row["under_dispute"],
                        "terms": repair_terms(source, row),
                        "details": {c: _plain(row[c]) for c in _own_columns(source)}})
    out.sort(key=lambda r: (r["date"], r["source"], r["record_id"]), reverse=True)
    return records, as_of, out


def _repair(record: dict, as_of: dt.date, application: dict | None, lang: str) -> dict:
    """A record's credit-repair terms as the page shows them."""
    terms = record.pop("terms")
    open_now = application is not None and application["state"] == "open"
    return {"adverse": terms.adverse, "repairable": terms.repairable,
            "repairable_from": terms.repairable_from, "expires_on": terms.expires_on,
            "can_apply": bool(record["counts"] and terms.repairable and terms.repairable_from
                              and terms.repairable_from <= as_of and not open_now),
            "obligation_zh": terms.obligation_zh, "obligation_en": terms.obligation_en,
            "obligation": terms.obligation_zh if lang == "zh" else terms.obligation_en,
            "application": application}


def records_page(app: Flask, person_key: str, lang: str) -> dict:
    _, as_of, records = explained_records(app, person_key)
    disputes = latest_by_record(_engine(app), person_key)
    applications = repairs_by_record(_engine(app), person_key)
    for record in records:
        record["repair"] = _repair(record, as_of, applications.get(
            (record["source"], record["record_id"])), lang)
        zh, en = REASON_TEXT.get(record["rule"], (record["rule"], record["rule"])) \
            if record["rule"] else (None, None)
        dispute = disputes.get((record["source"], record["record_id"]))
        label = UNDER_DISPUTE if record["under_dispute"] else (None, None)
        record.update(reason_zh=zh, reason_en=en, reason=zh if lang == "zh" else en,
                      label_zh=label[0], label_en=label[1],
                      label=label[0] if lang == "zh" else label[1],
                      dispute=dispute, dispute_state=dispute["state"] if dispute else "none",
                      can_dispute=record["counts"] and not record["under_dispute"])
        del record["rule"]
    counting = sum(r["counts"] for r in records)
    return {"as_of": as_of, "counting": counting, "not_counting": len(records) - counting,
            "records": records}


def _without_each(app: Flask, records: Records, candidates: list[dict],
                  as_of: dt.date) -> list[tuple[float, dict]]:
    """For each candidate record, the person's (score, features) with only that record
    removed (`whatif.scores_without`)."""
    return scores_without(app, records, [(c["source"], c["record_id"]) for c in candidates],
                          as_of)


def _condition(name: str, features: dict) -> dict:
    feature, most, zh, en = CONDITIONS[name]
    return {"condition": name, "text_zh": zh, "text_en": en,
            "met": features.get(feature, 0.0) <= most}


def perks_page(app: Flask, person_key: str) -> dict:
    """Each perk: the person's answer, and for a locked one the points still needed and the
    counting records whose clearing alone would unlock it."""
    row = score_row(app, person_key)
    score, features = row["score"], row["reasons"]["features"]
    asked = review_states(_engine(app), person_key, clock.now(app))  # perk → (state, outcome)
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
                 "score_without": whole_score(s)} for c, s, f in what_if
                if s >= perk.min_score and not perk.failed_conditions(f)]

    thin = thin_file_condition(features)
    perks = []
    for perk in config.perks:
        is_locked = perk in locked
        perks.append({
            "perk_id": perk.perk_id, "policy_version": perk.policy_version,
            "name_zh": perk.name_zh, "name_en": perk.name_en, "partner_id": perk.partner_id,
            "partner_name": partner_names.get(perk.partner_id), "min_score": perk.min_score,
            "status": perk.decide(score, features, *answer_for(asked, perk.perk_id)),
            "review_state": answer_for(asked, perk.perk_id)[0], "locked": is_locked,
            "points_needed": math.ceil(perk.points_needed(score)),  # whole: to the minimum
            "conditions": [_condition(name, features) for name in perk.conditions]
            + ([thin] if thin else []),  # the thin-file rule, when it is why: perks.py
            "unlocked_by": unlocked_by(perk) if is_locked else [],
        })
    pending = any(state == "pending" for state, _ in asked.values())
    return {"score": whole_score(score), "review_state": "pending" if pending else "none",
            "perks": perks}


def access_log(app: Flask, person_key: str, *, before: int | None = None,
               limit: int = 200) -> dict:
    """Who asked about the person or acted on their file, newest first, each entry with its
    inclusion proof against the latest signed tree head (`tree_head`, beside them). A partner's
    question is shown with its perk and answer (`detail.perk_id`, `detail.eligible`).

    `leaf_data` is served verbatim: it names the person only by a salted commitment
    (audit.person_commitment), so no answer carries a person key, nothing has to be put back
    before hashing (the check works for a citizen signed in through the city's OpenID Connect
    provider, whose `sub` is not the key), and a log handed to someone else does not name them.

    The entries are read before the head, so every entry sealed when read is inside the head
    (an entry sealed in between shows as not yet sealed: late, never wrong). All the proofs'
    nodes come in one query (`transparency.inclusion_proofs`)."""
    from service.rights import transparency

    engine = _engine(app)
    rows = entries_for(engine, person_key, limit, before=before)
    head = transparency.latest_head(engine)
    size = head.tree_size if head else 0
    sealed = sorted({e["leaf_index"] for e in rows
                     if e["leaf_index"] is not None and e["leaf_index"] < size})
    proofs = transparency.inclusion_proofs(engine, sealed, size) if sealed else {}
    out = []
    for entry in rows:
        actor, detail = entry["actor"], entry["detail"] or {}
        role, _, name = actor.partition(":")
        at = entry["at"]
        index = entry["leaf_index"]
        item = {
            "id": entry["id"],
            "at": at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at,
            "actor": actor, "action": entry["action"],
            "partner_id": name if role == "partner" else None,
            "perk_id": detail.get("perk_id", detail.get("perk")),
            "answer": detail.get("eligible", detail.get("answer")),
            "detail": detail,
            "leaf_data": entry["leaf_data"],
            "sealed": index is not None and index < size,
            "leaf_index": index,
        }
        if item["sealed"]:
            item["proof"] = [node.hex() for node in proofs[index]]
        out.append(item)
    return {"entries": out, "tree_head": head.as_json() if head else None}
