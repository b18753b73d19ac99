"""Rate limits per API key (Flask-Limiter): Redis when `REDIS_URL` is set, in-process otherwise.

- The bucket is a hash of the caller's API key (domain-separated, so it is not even the
  stored lookup hash), never the key itself; a request without a key is bucketed by address.
- A blueprint is limited by naming it in `LIMITED_BLUEPRINTS` with the setting that gives its
  limit; every route of the blueprint shares one bucket per key, so alternating endpoints does
  not double a partner's allowance. A batch costs one hit per item (`request_cost`).
- Breaching a limit is a 429 in the usual envelope with `Retry-After` (whole seconds).

Flask-Limiter is the limiter of every Flask route; nothing of its storage handling, fallback or
recovery is ours. The single partner decision answered in front of Flask (`api.partner_front`,
issue 15) is counted by `InFrontCount` in the same bucket: Flask-Limiter's public strategy
object (`Limiter.limiter`), called with the item, identifiers and cost Flask-Limiter's own
check uses, so a partner's requests share one count whichever way they are answered. It calls
the strategy directly because Flask-Limiter's per-request machinery around that one Redis
`EVALSHA` (resolving the endpoint's limits, its request context, its hooks) cost about twice
the call. Whenever the count is not plainly healthy — Flask-Limiter is counting on its
in-memory fallback, or the storage failed within the last second — the lane lets Flask answer,
before any side effect, and Flask-Limiter fails open or closed, and recovers, as for any route.

Redis set but down — `rate_limit_fail_open` (default: open, `OSMANTHUS_RATE_LIMIT_FAIL_OPEN=0`
to close). Open: each process falls back to an in-memory limiter with the same limits (so a
partner is still held to roughly the limit per worker) and re-checks Redis with a back-off;
requests keep being answered. The perks are deposit-free bikes and books, so an outage of the
limiter should not become an outage of the city's bicycles; the audit log still records every
answer. Closed: a request that cannot be counted is refused with 503 and `Retry-After`, for
operators who would rather stop than serve uncounted. Either way only the limited blueprints
depend on the limiter: citizens' pages never do.

Coming back: failing open, Flask-Limiter re-checks Redis on a back-off (after 1, 2, 4 … 32 s),
so counting returns to Redis within about as long as the outage lasted. Meanwhile each
worker counts on its own (a partner may get up to the limit per worker), and a restarted Redis
starts its counts afresh: an outage can cost at most a window's worth of extra answers per
worker, never an unlimited stream. Failing closed, every request tries Redis, so partners
are served again as soon as it answers. `tests/service/test_faults_redis.py` kills a real Redis
under load to hold both to this, and `bench/faults.py` measures it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, WindowStats, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from service.base.config import Config
from service.base.errors import ApiError, error_response

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
KEY_PREFIX = "osmanthus"  # in every counter's key: LIMITS:LIMITER/osmanthus/<bucket>/<scope>/…
FRONT_PAUSE_SECONDS = 1.0  # after a storage error, the lane leaves counting to Flask-Limiter


def bucket_of(api_key: str | None, address: str | None) -> str:
    """The bucket: a hash of the API key, or the client address when no key came."""
    if api_key:
        return "key:" + hashlib.sha256(b"osmanthus-rate-limit:" + api_key.encode()).hexdigest()[:32]
    return f"addr:{address or 'unknown'}"


def rate_key() -> str:
    """This request's bucket (`bucket_of` its `X-API-Key`, or its address)."""
    return bucket_of(request.headers.get("X-API-Key"), request.remote_addr)


def request_cost() -> int:
    """One hit per item of a batch body (`{"requests": [...]}`), one for anything else."""
    body = request.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("requests"), list):
        return min(max(len(body["requests"]), 1), MAX_COST)
    return 1


def init_limiter(app: Flask, config: Config) -> Limiter:
    """Attach a limiter to `app` (after its blueprints are registered), its error replies, and
    the count of requests answered in front of Flask (`osmanthus.front_count`)."""
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
        key_prefix=KEY_PREFIX,
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
        current = limiter.current_limit  # the breached one
        wait = _retry_after(lambda: current.window) if current is not None else 1
        return error_response(rate_limited(str(error.description), wait))

    @app.errorhandler(StorageError)
    def _storage_down(_error: StorageError):
        log.error("rate-limit storage unreachable; failing closed (rate_limit_fail_open=0)")
        return error_response(ApiError(503, "rate limiting is unavailable; try again shortly",
                                       headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}))

    app.extensions["osmanthus.limiter"] = limiter
    app.extensions["osmanthus.front_count"] = InFrontCount(limiter, config)
    _limit_citizens(app, config)
    return limiter


class InFrontCount:
    """Counts a request answered in front of Flask in Flask-Limiter's bucket for it, through
    Flask-Limiter's public strategy (`Limiter.limiter`) with the item, identifiers
    (`KEY_PREFIX`, bucket, scope) and cost its own check of a shared limit uses."""

    def __init__(self, limiter: Limiter, config: Config) -> None:
        self.limiter = limiter
        self.items: dict[str, RateLimitItem] = {
            name: parse(limit_of(config)) for name, limit_of in LIMITED_BLUEPRINTS.items()}
        self._paused_until = 0.0  # monotonic: a storage error was met, Flask-Limiter counts

    def hit(self, scope: str, bucket: str, cost: int = 1) -> bool:
        """Count `cost` hits of `bucket` against `scope`'s limit: True when within it; over
        it, ApiError 429 with `Retry-After`, as Flask-Limiter's breach is answered. False when
        not counted — Flask-Limiter is on its in-memory fallback (its own recovery check must
        run), or the storage failed now or within `FRONT_PAUSE_SECONDS` — and the caller lets
        Flask answer, where Flask-Limiter counts, fails open or closed, as for any route."""
        strategy = self.limiter.limiter
        if strategy.storage is not self.limiter.storage or \
                time.monotonic() < self._paused_until:
            return False
        item, identifiers = self.items[scope], (KEY_PREFIX, bucket, scope)
        try:
            allowed = strategy.hit(item, *identifiers, cost=cost)
        except Exception:  # noqa: BLE001 - whatever the storage raised: Flask-Limiter's to handle
            self._paused_until = time.monotonic() + FRONT_PAUSE_SECONDS
            log.warning("rate-limit storage failed in front of Flask; Flask-Limiter counts "
                        "for the next %.0f s", FRONT_PAUSE_SECONDS, exc_info=True)
            return False
        if not allowed:
            raise rate_limited(str(item), _retry_after(
                lambda: strategy.get_window_stats(item, *identifiers)))
        return True


def rate_limited(description: str, retry_after: int) -> ApiError:
    """The 429 of a breached limit (`description`: the limit, e.g. "3 per 1 minute")."""
    return ApiError(429, f"rate limit exceeded ({description}); retry after the time in "
                         "Retry-After", headers={"Retry-After": str(retry_after)})


def _retry_after(window: Callable[[], WindowStats]) -> int:
    """Whole seconds until the breached limit lets one more request through (at least 1)."""
    try:
        return _seconds_until(window().reset_time)
    except Exception:  # noqa: BLE001 - the storage may have gone away since the breach
        log.warning("could not read the rate-limit window", exc_info=True)
    return 1


def _seconds_until(reset_time: float) -> int:
    """Whole seconds from now to `reset_time` (a window's reset), at least 1."""
    return max(1, math.ceil(reset_time - time.time()))


CITIZEN_COUNTED = "osmanthus.citizen_counted"  # environ: this request's verdict, once counted


def _limit_citizens(app: Flask, config: Config) -> None:
    """Citizens' requests, per token, counted in this process only: citizens' pages must never
    depend on Redis (above), so their limit is per worker (`citizen_rate_limit` each). A
    cached /v1/me/score, answered in front of Flask (`api.me.CachedScorePages`), is counted
    there with the same counter (`osmanthus.citizen_limit`), and refused by Flask past it."""
    item = parse(config.citizen_rate_limit)
    counter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def count(token: str) -> int:
        """Count one request of this token: 0 when allowed, else whole seconds to wait."""
        bucket = hashlib.sha256(b"osmanthus-citizen:" + token.encode()).hexdigest()[:32]
        if counter.hit(item, "citizen", bucket):
            return 0
        return _seconds_until(counter.get_window_stats(item, "citizen", bucket).reset_time)

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
