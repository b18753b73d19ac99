"""/v1/admin/models and /v1/admin/perks: the champion and the perk policy, on the admin
blueprint (`service/api/admin_blueprint.py`).

Promotion runs the registry's gates (the CLI's) on the validation snapshot the server is
configured with (`OSMANTHUS_VALIDATION_FEATURES`, `_OUTCOMES`, `_AS_OF`, and `_PEOPLE` for
fairness); a refusal is a 409 listing every failed gate. A perk's change is a new policy version
in the `perks` table; the old version is kept as it was, marked no longer active.

Every instance follows both without a restart: before a request it reloads the champion when
the registry's index changed, and the perk policy when the table's active versions changed
(checked at most every few seconds), so all gunicorn workers serve the same model and perks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import polars as pl
from flask import Flask, current_app, g
from sqlalchemy import select, update

from service.api.admin_blueprint import blp, errors, utc
from service.api.admin_schemas import (
    ModelsSchema,
    PerkListSchema,
    PerkQuerySchema,
    PerkSchema,
    PerkUpdateSchema,
    PromoteInSchema,
    PromotionSchema,
    RollbackInSchema,
    RollbackSchema,
)
from service.base.errors import ApiError
from service.rights.perks import Perk, PerkConfig
from service.store.tables import insert_for, perks

log = logging.getLogger(__name__)
PERKS_CHECK_SECONDS = 5.0
_STAMP, _PERKS_SEEN, _PERKS_CHECKED = ("osmanthus.admin.registry_stamp",
                                       "osmanthus.admin.perks_seen", "osmanthus.admin.perks_at")


# --- following the registry and the perk table ----------------------------------------------
def _registry_stamp(app: Flask) -> int | None:
    index = app.extensions["osmanthus.config"].registry_dir / "registry.json"
    try:
        return index.stat().st_mtime_ns
    except OSError:
        return None


def reload_model(app: Flask) -> None:
    """Serve the registry's champion now (page caches are keyed by version, so they follow)."""
    from service.scoring.serving import load_serving

    config = app.extensions["osmanthus.config"]
    app.extensions[_STAMP] = _registry_stamp(app)
    app.extensions["osmanthus.model"] = load_serving(config.registry_dir, config.num_threads)


def _active_rows(connection) -> list[dict]:
    rows = connection.execute(select(perks).where(perks.c.active).order_by(perks.c.perk_id))
    return [dict(row._mapping) for row in rows]


def _load_perks(app: Flask) -> None:
    with app.extensions["osmanthus.engine"].connect() as connection:
        rows = _active_rows(connection)
    current: PerkConfig = app.extensions["osmanthus.perks"]
    app.extensions["osmanthus.perks"] = PerkConfig(current.partners, tuple(
        Perk(row["perk_id"], row["policy_version"], row["partner_id"], row["name_zh"],
             row["name_en"], row["min_score"], tuple(row["conditions"])) for row in rows))
    app.extensions[_PERKS_SEEN] = {(row["perk_id"], row["policy_version"]) for row in rows}
    app.extensions[_PERKS_CHECKED] = time.monotonic()


def sync_perks(app: Flask) -> None:
    """At start-up: add to the `perks` table every configured perk it does not hold yet, then
    serve the table's active versions (the table, not the file, is the policy of record)."""
    engine = app.extensions["osmanthus.engine"]
    configured: PerkConfig = app.extensions["osmanthus.perks"]
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        known = set(connection.execute(select(perks.c.perk_id).distinct()).scalars())
        rows = [{"perk_id": p.perk_id, "policy_version": p.policy_version,
                 "partner_id": p.partner_id, "name_zh": p.name_zh, "name_en": p.name_en,
                 "min_score": p.min_score, "conditions": list(p.conditions), "active": True,
                 "created_at": now} for p in configured.perks if p.perk_id not in known]
        if rows:  # two workers starting at once: the second one's insert does nothing
            connection.execute(insert_for(connection, perks).on_conflict_do_nothing(), rows)
    _load_perks(app)
    app.extensions[_STAMP] = _registry_stamp(app)


@blp.before_app_request
def _follow_changes() -> None:
    """Pick up a model or perk change made by another worker (or by the CLI)."""
    app = current_app._get_current_object()
    if _STAMP not in app.extensions:
        return  # an app that never synced (not built by create_app)
    try:
        if _registry_stamp(app) != app.extensions[_STAMP]:
            reload_model(app)
        if time.monotonic() - app.extensions[_PERKS_CHECKED] >= PERKS_CHECK_SECONDS:
            app.extensions[_PERKS_CHECKED] = time.monotonic()
            with app.extensions["osmanthus.engine"].connect() as connection:
                seen = {(r["perk_id"], r["policy_version"]) for r in _active_rows(connection)}
            if seen != app.extensions[_PERKS_SEEN]:
                _load_perks(app)
    except Exception:  # noqa: BLE001 - never fail a request over a refresh; /readyz reports
        log.warning("could not check for model or perk changes", exc_info=True)


# --- models ---------------------------------------------------------------------------------
def _registry():
    from model.registry import Registry

    return Registry(current_app.extensions["osmanthus.config"].registry_dir)


def _auc(metrics: dict | None) -> float | None:
    metrics = metrics or {}
    return (metrics.get("validation") or {}).get("auc") or metrics.get("valid_auc")


@blp.route("/models")
@blp.response(200, ModelsSchema)
@errors()
def list_models():
    """Registered versions, the champion, and the version this instance serves."""
    registry = _registry()
    serving = current_app.extensions["osmanthus.model"]
    versions = [{
        "version": row["version"], "champion": row["champion"],
        "serving": row["version"] == serving.version, "registered_at": row.get("registered_at"),
        "created_at": row.get("created_at"), "by": row.get("by"), "why": row.get("why"),
        "auc": _auc(row.get("metrics")), "promotions": len(row.get("promotions") or []),
        "forced": len(row.get("forced") or []),
    } for row in registry.list()]
    return {"champion": registry.champion(), "serving": serving.version,
            "problem": serving.problem, "versions": versions}


def _snapshot():
    """The configured validation snapshot: (frame, target, people, as_of); 409 when none is."""
    from model.evaluate import snapshot
    from model.train import read_table

    config = current_app.extensions["osmanthus.config"]
    needed = {"OSMANTHUS_VALIDATION_FEATURES": config.validation_features,
              "OSMANTHUS_VALIDATION_OUTCOMES": config.validation_outcomes,
              "OSMANTHUS_VALIDATION_AS_OF": config.validation_as_of}
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise ApiError(409, "promotion needs a validation snapshot, and this server has none",
                       code="no_validation_snapshot",
                       errors={name: ["not set"] for name in missing})
    try:
        frame, target, _ = snapshot(read_table(config.validation_features),
                                    read_table(config.validation_outcomes),
                                    config.validation_as_of)
        people = read_table(config.validation_people) if config.validation_people else None
    except (OSError, ValueError, KeyError) as error:
        log.error("validation snapshot unusable: %s", error)
        raise ApiError(409, "the configured validation snapshot cannot be read",
                       code="no_validation_snapshot") from None
    return frame, target, people, config.validation_as_of


@blp.route("/models/<string:version>/promote", methods=["POST"])
@blp.arguments(PromoteInSchema)
@blp.response(200, PromotionSchema)
@errors(404, 409, 422)
def promote(body: dict, version: str):
    """Make a version the champion if it passes every gate (AUC within 0.005 of the
    champion's, score PSI ≤ 0.25, fairness at every perk threshold, monotone directions) on
    the configured validation snapshot. 409 lists every failed gate; `force` with `why`
    promotes anyway and records it. This instance serves the new champion at once."""
    from model.bundle import ModelRefused
    from model.registry import PromotionRefused

    registry = _registry()
    if version not in {row["version"] for row in registry.list()}:
        raise ApiError(404, "no such model version")
    if body["force"] and not (body["why"] or "").strip():
        raise ApiError(422, "some fields are invalid",
                       errors={"why": ["a forced promotion needs a reason"]})
    frame, target, people, as_of = _snapshot()
    try:
        result = registry.promote(
            version, frame=frame, target=target, people=people, as_of=as_of,
            thresholds=current_app.extensions["osmanthus.perks"].thresholds(),
            force=body["force"], by=g.admin_actor, why=body["why"])
    except PromotionRefused as refused:
        raise ApiError(409, f"{version} was not promoted; the champion is unchanged",
                       code="promotion_refused", errors={"gates": refused.reasons}) from None
    except ModelRefused as refused:
        raise ApiError(409, f"{version} cannot be loaded; the champion is unchanged",
                       code="model_refused", errors={"model": [str(refused)]}) from None
    except (KeyError, ValueError, pl.exceptions.PolarsError):
        log.warning("promotion of %s could not be evaluated", version, exc_info=True)
        raise ApiError(409, f"{version} cannot be evaluated on the configured validation "
                       "snapshot; the champion is unchanged", code="evaluation_failed") from None
    reload_model(current_app._get_current_object())
    return {"version": version, "previous": result.previous, "forced": result.forced,
            "reasons": result.reasons, "auc": result.evaluation["metrics"]["auc"],
            "serving": current_app.extensions["osmanthus.model"].version}


@blp.route("/models/rollback", methods=["POST"])
@blp.arguments(RollbackInSchema)
@blp.response(200, RollbackSchema)
@errors(409, 422)
def rollback(body: dict):
    """Make the previous champion the champion again; this instance serves it at once."""
    from model.bundle import ModelRefused

    registry = _registry()
    current = registry.champion()
    try:
        version = registry.rollback(by=g.admin_actor, why=body["why"])
    except LookupError as error:
        raise ApiError(409, str(error.args[0]), code="no_previous_champion") from None
    except ModelRefused as refused:
        raise ApiError(409, f"the previous champion cannot be loaded; {current} still serves",
                       code="model_refused", errors={"model": [str(refused)]}) from None
    reload_model(current_app._get_current_object())
    return {"champion": version, "previous": current,
            "serving": current_app.extensions["osmanthus.model"].version}


# --- perks ----------------------------------------------------------------------------------
@blp.route("/perks")
@blp.arguments(PerkQuerySchema, location="query")
@blp.response(200, PerkListSchema)
@errors(422)
def list_perks(query: dict):
    """The perk policy in force; with `history`, every version ever in force too."""
    statement = select(perks).order_by(perks.c.perk_id, perks.c.policy_version)
    if not query["history"]:
        statement = statement.where(perks.c.active)
    with current_app.extensions["osmanthus.engine"].connect() as connection:
        return {"perks": [utc(row) for row in connection.execute(statement)]}


@blp.route("/perks/<string:perk_id>", methods=["PUT"])
@blp.arguments(PerkUpdateSchema)
@blp.response(200, PerkSchema)
@errors(404, 422)
def update_perk(body: dict, perk_id: str):
    """A new policy version of a perk (minimum score and conditions), in force at once; the
    previous version stays in the table unchanged but for `active`."""
    engine = current_app.extensions["osmanthus.engine"]
    with engine.begin() as connection:
        current = connection.execute(
            select(perks).where(perks.c.perk_id == perk_id, perks.c.active)
            .order_by(perks.c.policy_version.desc()).with_for_update()).first()
        if current is None:
            raise ApiError(404, "no such perk")
        newest = connection.execute(
            select(perks.c.policy_version).where(perks.c.perk_id == perk_id)
            .order_by(perks.c.policy_version.desc()).limit(1)).scalar_one()
        row = {**current._mapping, "policy_version": newest + 1, "min_score": body["min_score"],
               "conditions": list(dict.fromkeys(body["conditions"])), "active": True,
               "created_at": dt.datetime.now(dt.UTC)}
        connection.execute(update(perks).where(perks.c.perk_id == perk_id)
                           .values(active=False))
        connection.execute(perks.insert().values(**row))
    _load_perks(current_app._get_current_object())
    log.info("perk %s: policy version %d by %s", perk_id, row["policy_version"], g.admin_actor)
    return row
