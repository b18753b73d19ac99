"""A small cache for citizens' score pages: Redis when configured, in-process otherwise.

The cache is an accelerator, never a source of truth: when Redis is down every call behaves as
a miss (reads go to the database) and `healthy` turns false, so `/readyz` can say `degraded`.
Keys carry the champion model's version, so promoting or rolling back a model invalidates every
page at once; a person's own key is deleted when their records, disputes or score change.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict

log = logging.getLogger(__name__)


class MemoryCache:
    """A bounded, thread-safe LRU with expiry, for one process."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items = max_items
        self.healthy = True

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl: int = 300) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._items.pop(key, None)


class RedisCache:
    """Redis, with every failure turned into a miss and logged once per outage."""

    def __init__(self, url: str, timeout: float = 0.25) -> None:
        import redis

        self._errors = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)
        self.healthy = True

    def _failed(self, error: Exception) -> None:
        if self.healthy:
            log.warning("Redis unavailable, serving from the database: %s", type(error).__name__)
        self.healthy = False

    def _ok(self) -> None:
        if not self.healthy:
            log.info("Redis is back")
        self.healthy = True

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(key)
        except self._errors as error:
            self._failed(error)
            return None
        self._ok()
        return value

    def set(self, key: str, value: bytes, ttl: int = 300) -> None:
        try:
            self._client.set(key, value, ex=ttl)
            self._ok()
        except self._errors as error:
            self._failed(error)

    def delete(self, *keys: str) -> None:
        if not keys:
            return
        try:
            self._client.delete(*keys)
            self._ok()
        except self._errors as error:
            # A stale page could outlive the outage; its TTL bounds how long.
            self._failed(error)


def make_cache(redis_url: str | None) -> MemoryCache | RedisCache:
    return RedisCache(redis_url) if redis_url else MemoryCache()


def page_key(model_version: str, person_key: str, day: dt.date) -> str:
    """A citizen's cached score page, per model and per day of the service's clock: a score
    can go stale at a day's turn (a dispute's due date passes: service/rights/overdue.py), so a
    page cached yesterday is never read today (it then runs out by its TTL)."""
    return f"osmanthus:me:{model_version}:{day.isoformat()}:{person_key}"
