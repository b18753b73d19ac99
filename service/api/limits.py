"""Rate limits per API key, counted with `limits`: Redis when `REDIS_URL` is set, in-process
otherwise.

- The bucket is a hash of the caller's API key (domain-separated, so it is not even the
  stored lookup hash), never the key itself; a request without a key is bucketed by address.
- A blueprint is limited by naming it in `LIMITED_BLUEPRINTS` with the setting that gives its
  limit; every route of the blueprint shares one bucket per key, so alternating endpoints does
  not double a partner's allowance. A batch costs one hit per item (`request_cost`).
- Breaching a limit is a 429 in the usual envelope with `Retry-After` (whole seconds).
- The count is one call of `limits`' sliding-window-counter strategy (one Redis `EVALSHA`),
  made by `RateLimits.check`: from a `before_request` hook for Flask's routes, and by the
  single decision answered in front of Flask (`api.partner_front`). It replaced
  Flask-Limiter, whose per-request machinery (resolving the limits of the endpoint, its
  context, its header hook) cost twice the Redis call it wraps (issue 15); the Redis keys,
  the strategy and every answer are the ones Flask-Limiter gave.

Redis set but down — `rate_limit_fail_open` (default: open, `OSMANTHUS_RATE_LIMIT_FAIL_OPEN=0`
to close). Open: each process falls back to an in-memory counter with the same limits (so a
partner is still held to roughly the limit per worker) and re-checks Redis with a back-off;
requests keep being answered. The perks are deposit-free bikes and books, so an outage of the
limiter should not become an outage of the city's bicycles; the audit log still records every
answer. Closed: a request that cannot be counted is refused with 503 and `Retry-After`, for
operators who would rather stop than serve uncounted. Either way only the limited blueprints
depend on the limiter: citizens' pages never do.

Coming back: failing open, Redis is re-checked (a PING) on a back-off (after 1, 2, 4 … 32 s,
then from 1 s again), so counting returns to Redis within about as long as the outage lasted.
Meanwhile each worker counts on its own (a partner may get up to the limit per worker), and a
restarted Redis starts its counts afresh: an outage can cost at most a window's worth of extra
answers per worker, never an unlimited stream. Failing closed, every request tries Redis, so
partners are served again as soon as it answers. `tests/service/test_faults_redis.py` kills a
real Redis under load to hold both to this, and `bench/faults.py` measures it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

from flask import Flask, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import RateLimiter, SlidingWindowCounterRateLimiter

from service.base.config import Config
from service.base.errors import ApiError

log = logging.getLogger(__name__)

# blueprint name → the setting that gives its limit (a `limits` string, e.g. "6000/minute")
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
MAX_BACKOFF_STEP = 5  # re-check a dead Redis after 1, 2, 4 … 2**5 s, then from 1 s again


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


class RateLimits:
    """The limited blueprints' counters: one `limits` strategy on Redis (or memory), and,
    failing open, an in-memory one that counts while Redis is down."""

    def __init__(self, config: Config) -> None:
        options: dict = {}
        if config.redis_url:
            options = {"wrap_exceptions": True, "socket_timeout": REDIS_TIMEOUT_SECONDS,
                       "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
        self.storage = storage_from_string(config.redis_url or "memory://", **options)
        self._main = SlidingWindowCounterRateLimiter(self.storage)  # no burst at window edges
        self._fallback = (SlidingWindowCounterRateLimiter(MemoryStorage())
                          if config.rate_limit_fail_open else None)
        self.items: dict[str, RateLimitItem] = {
            name: parse(limit_of(config)) for name, limit_of in LIMITED_BLUEPRINTS.items()}
        self._dead = False  # Redis failed, counting in memory (failing open only)
        self._backoff_step, self._last_check = 0, time.time()

    @property
    def limiter(self) -> RateLimiter:
        """The strategy counting now: the in-memory one while Redis is down (failing open)."""
        return self._fallback if self._dead and self._fallback is not None else self._main

    def check(self, scope: str, bucket: str, cost: int = 1) -> None:
        """Count `cost` hits of `bucket` against `scope`'s limit. Over it: ApiError 429 with
        `Retry-After`; the storage unreachable and failing closed: ApiError 503."""
        item = self.items[scope]
        identifiers = (KEY_PREFIX, bucket, scope)
        if self._dead and self._should_recheck() and self.storage.check():
            log.info("rate-limit storage recovered")
            self._dead, self._backoff_step = False, 0
        try:
            allowed = self.limiter.hit(item, *identifiers, cost=cost)
        except Exception as error:  # noqa: BLE001 - whatever the storage raised
            if self._fallback is None:
                log.error("rate-limit storage unreachable; failing closed "
                          "(rate_limit_fail_open=0)")
                raise ApiError(503, "rate limiting is unavailable; try again shortly",
                               headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}) from error
            if not self._dead:  # (another thread may have found it dead meanwhile)
                log.warning("rate-limit storage unreachable; counting in this process "
                            "meanwhile")
                self._dead = True
            allowed = self._fallback.hit(item, *identifiers, cost=cost)
        if not allowed:
            raise ApiError(429, f"rate limit exceeded ({item}); retry after the time in "
                                "Retry-After",
                           headers={"Retry-After": str(self._retry_after(item, identifiers))})

    def _should_recheck(self) -> bool:
        """Whether to ask a dead Redis again now: after 1, 2, 4 … 32 s, then from 1 s."""
        if self._backoff_step > MAX_BACKOFF_STEP:
            self._backoff_step = 0
        if time.time() - self._last_check > 2 ** self._backoff_step:
            self._last_check = time.time()
            self._backoff_step += 1
            return True
        return False

    def _retry_after(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        """Whole seconds until the breached limit lets one more request through (at least 1)."""
        try:
            return _seconds_until(self.limiter.get_window_stats(item, *identifiers).reset_time)
        except Exception:  # noqa: BLE001 - the storage may have gone away since the breach
            log.warning("could not read the rate-limit window", exc_info=True)
        return 1


def _seconds_until(reset_time: float) -> int:
    """Whole seconds from now to `reset_time` (a window's reset), at least 1."""
    return max(1, math.ceil(reset_time - time.time()))


def init_limiter(app: Flask, config: Config) -> RateLimits:
    """Count the limited blueprints' requests (after their registration: a limit for a
    blueprint the app does not have fails here, at start-up)."""
    for name in LIMITED_BLUEPRINTS:
        if name not in app.blueprints:
            raise RuntimeError(f"rate limit for unknown blueprint {name!r}: register it first")
    limits = RateLimits(config)

    @app.before_request
    def _count() -> None:
        scope = request.blueprint
        if scope in limits.items:
            limits.check(scope, rate_key(), request_cost())

    app.extensions["osmanthus.limiter"] = limits
    _limit_citizens(app, config)
    return limits


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
