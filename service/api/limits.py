"""Rate limits per API key (Flask-Limiter): Redis when `REDIS_URL` is set, in-process otherwise.

- The bucket is a hash of the caller's API key (domain-separated, so it is not even the
  stored lookup hash), never the key itself; a request without a key is bucketed by address.
- A blueprint is limited by naming it in `LIMITED_BLUEPRINTS` with the setting that gives its
  limit; every route of the blueprint shares one bucket per key, so alternating endpoints does
  not double a partner's allowance. A batch costs one hit per item (`request_cost`).
- Breaching a limit is a 429 in the usual envelope with `Retry-After` (whole seconds).

Redis set but down — `rate_limit_fail_open` (default: open, `OSMANTHUS_RATE_LIMIT_FAIL_OPEN=0`
to close). Open: each process falls back to an in-memory limiter with the same limits (so a
partner is still held to roughly the limit per worker) and re-checks Redis with a back-off;
requests keep being answered. The perks are deposit-free bikes and books, so an outage of the
limiter should not become an outage of the city's bicycles; the audit log still records every
answer. Closed: a request that cannot be counted is refused with 503 and `Retry-After`, for
operators who would rather stop than serve uncounted. Either way only the partner blueprint
depends on the limiter: citizens' pages never do.

Coming back: failing open, Flask-Limiter re-checks Redis on a back-off (after 1, 2, 4 … 32 s),
so counting returns to Redis within about as long as the outage lasted. Meanwhile each
worker counts on its own (a partner may get up to the limit per worker), and a restarted Redis
starts its counts afresh: an outage can cost at most a window's worth of extra answers per
worker, never an unlimited stream. Failing closed, every request tries Redis, so partners
are served again as soon as it answers. `tests/service/test_faults_redis.py` kills a real Redis under load
to hold both to this, and `bench/faults.py` measures it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.errors import StorageError

from service.base.config import Config
from service.base.errors import envelope

log = logging.getLogger(__name__)

# blueprint name → the setting that gives its limit (a Flask-Limiter string, e.g. "6000/minute")
LIMITED_BLUEPRINTS: dict[str, Callable[[Config], str]] = {
    "partner": lambda config: config.partner_rate_limit,
    # the public audit log (no key: bucketed by address), at the partners' rate: generous for
    # an auditor or a browser, a bound for a scraper
    "transparency": lambda config: config.partner_rate_limit,
}
MAX_COST = 1000  # the largest batch an endpoint accepts
REDIS_TIMEOUT_SECONDS = 0.25  # a dead Redis must not hold a request for long
UNAVAILABLE_RETRY_AFTER = "5"


def rate_key() -> str:
    """The bucket: a hash of the API key, or the client address when no key came."""
    key = request.headers.get("X-API-Key")
    if key:
        return "key:" + hashlib.sha256(b"osmanthus-rate-limit:" + key.encode()).hexdigest()[:32]
    return f"addr:{request.remote_addr or 'unknown'}"


def request_cost() -> int:
    """One hit per item of a batch body (`{"requests": [...]}`), one for anything else."""
    body = request.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("requests"), list):
        return min(max(len(body["requests"]), 1), MAX_COST)
    return 1


def init_limiter(app: Flask, config: Config) -> Limiter:
    """Attach a limiter to `app` (after its blueprints are registered) and its error replies."""
    storage_options: dict = {}
    if config.redis_url:
        storage_options = {"wrap_exceptions": True, "socket_timeout": REDIS_TIMEOUT_SECONDS,
                           "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    limiter = Limiter(
        rate_key,
        app=app,
        storage_uri=config.redis_url or "memory://",
        storage_options=storage_options,
        strategy="sliding-window-counter",  # constant memory per key, no burst at window edges
        key_prefix="osmanthus",
        headers_enabled=False,  # spares a storage round trip per request; 429s carry Retry-After
        swallow_errors=config.rate_limit_fail_open,
        in_memory_fallback_enabled=config.rate_limit_fail_open,
    )
    for name, limit_of in LIMITED_BLUEPRINTS.items():
        blueprint = app.blueprints.get(name)
        if blueprint is None:
            raise RuntimeError(f"rate limit for unknown blueprint {name!r}: register it first")
        limiter.shared_limit(limit_of(config), scope=name, cost=request_cost)(blueprint)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded):
        response, status = envelope(429, f"rate limit exceeded ({error.description}); "
                                         "retry after the time in Retry-After")
        response.headers["Retry-After"] = str(_retry_after(limiter))
        return response, status

    @app.errorhandler(StorageError)
    def _storage_down(_error: StorageError):
        log.error("rate-limit storage unreachable; failing closed (rate_limit_fail_open=0)")
        response, status = envelope(503, "rate limiting is unavailable; try again shortly")
        response.headers["Retry-After"] = UNAVAILABLE_RETRY_AFTER
        return response, status

    app.extensions["osmanthus.limiter"] = limiter
    _limit_citizens(app, config)
    return limiter


CITIZEN_COUNTED = "osmanthus.citizen_counted"  # environ: this request's verdict, once counted


def _limit_citizens(app: Flask, config: Config) -> None:
    """Citizens' requests, per token, counted in this process only: citizens' pages must never
    depend on Redis (above), so their limit is per worker (`citizen_rate_limit` each). A
    cached /v1/me/score, answered in front of Flask (`api.me.CachedScorePages`), is counted
    there with the same counter (`osmanthus.citizen_limit`), and refused by Flask past it."""
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import SlidingWindowCounterRateLimiter

    from service.base.errors import ApiError

    item = parse(config.citizen_rate_limit)
    counter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def count(token: str) -> int:
        """Count one request of this token: 0 when allowed, else whole seconds to wait."""
        bucket = hashlib.sha256(b"osmanthus-citizen:" + token.encode()).hexdigest()[:32]
        if counter.hit(item, "citizen", bucket):
            return 0
        reset = counter.get_window_stats(item, "citizen", bucket).reset_time
        return max(1, math.ceil(reset - time.time()))

    app.extensions["osmanthus.citizen_limit"] = count

    @app.before_request
    def _citizen_limit() -> None:
        token = request.headers.get("Authorization")
        if request.blueprint != "me" or not token:
            return
        wait = request.environ.get(CITIZEN_COUNTED)
        if wait is None:  # not counted in front of Flask
            wait = count(token)
        if wait:
            raise ApiError(429, f"rate limit exceeded ({config.citizen_rate_limit}); retry "
                                "after the time in Retry-After",
                           headers={"Retry-After": str(wait)})


def _retry_after(limiter: Limiter) -> int:
    """Whole seconds until the breached limit lets one more request through (at least 1)."""
    try:
        current = limiter.current_limit
        if current is not None:
            return max(1, math.ceil(current.window.reset_time - time.time()))
    except Exception:  # noqa: BLE001 - the storage may have gone away since the breach
        log.warning("could not read the rate-limit window", exc_info=True)
    return 1
