"""Liveness and readiness, for load balancers and the container's HEALTHCHECK."""

from __future__ import annotations

import logging

from flask import Flask, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import text

log = logging.getLogger(__name__)
blp = Blueprint("health", __name__, description="Liveness and readiness")


class HealthSchema(Schema):
    """The process is alive."""

    status = fields.String(required=True, metadata={"example": "ok"})


class ReadySchema(Schema):
    """Whether this instance can serve: the database answers and a verified model is loaded
    (both required); Redis answers, or the instance serves from the database alone and says
    `degraded`."""

    status = fields.String(required=True, metadata={"description": "ready, degraded or unavailable"})
    database = fields.Boolean(required=True)
    model = fields.String(required=True, allow_none=True,
                          metadata={"description": "the champion's version, or null"})
    redis = fields.String(required=True, metadata={"description": "ok, down or not configured"})


@blp.route("/healthz")
@blp.response(200, HealthSchema)
def healthz():
    """Alive."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="No database, or no loadable model")
def readyz():
    """Ready to serve, degraded (Redis down), or unavailable (database down)."""
    config = current_app.extensions["osmanthus.config"]
    database = database_ready(current_app)
    redis_state = "not configured"
    if config.redis_url:
        redis_state = "ok" if _redis_ok(config.redis_url) else "down"
    serving = current_app.extensions["osmanthus.model"]
    serving_ok = database and serving.ready
    status = "unavailable" if not serving_ok else (
        "degraded" if redis_state == "down" else "ready")
    return {"status": status, "database": database, "model": serving.version,
            "redis": redis_state}, (200 if serving_ok else 503)


def _redis_ok(url: str) -> bool:
    """One quick ping. `from_url` makes one attempt per call; redis-py 8's `Redis(...)`
    constructor would retry 10 times with back-off (~4 s against a dead server), holding a load
    balancer's probe, and a worker, for that long."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2).ping())
    except redis.RedisError:
        return False


def database_ready(app: Flask) -> bool:
    """True when the app's database answers a trivial query."""
    try:
        with app.extensions["osmanthus.engine"].connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        log.warning("database not reachable", exc_info=True)
        return False


class JwkSchema(Schema):
    """One public key (RFC 7517, OKP/Ed25519)."""

    class Meta:
        unknown = "include"

    kty = fields.String(required=True, metadata={"example": "OKP"})
    crv = fields.String(required=True, metadata={"example": "Ed25519"})
    x = fields.String(required=True)
    kid = fields.String(required=True)
    alg = fields.String(required=True, metadata={"example": "EdDSA"})
    use = fields.String(required=True, metadata={"example": "sig"})


class JwksSchema(Schema):
    """The public keys that verify consent tokens (current and retired, by `kid`). They can
    verify a token a citizen hands over; they cannot sign one."""

    keys = fields.List(fields.Nested(JwkSchema), required=True)


@blp.route("/.well-known/jwks.json")
@blp.response(200, JwksSchema)
def jwks():
    """Consent tokens' public keys, for partners who want to check a token themselves."""
    from service.rights.auth import keyring_of

    return keyring_of(current_app.extensions["osmanthus.config"]).jwks()
