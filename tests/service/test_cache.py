"""The cache: in-process and on real Redis; a dead Redis is a miss, never an error."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from service.base.cache import MemoryCache, RedisCache, make_cache, page_key
from tests.conftest import skip_or_fail

DAY = dt.date(2026, 1, 1)

REDIS_URL = os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def cache(request):
    if request.param == "memory":
        return MemoryCache()
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        skip_or_fail(f"Redis not reachable at {REDIS_URL}")
    return RedisCache(REDIS_URL)


def test_set_get_delete(cache):
    key = f"test:{uuid.uuid4().hex}"
    assert cache.get(key) is None
    cache.set(key, b"page", ttl=30)
    assert cache.get(key) == b"page"
    cache.delete(key)
    assert cache.get(key) is None


def test_entries_expire(cache, monkeypatch):
    key = f"test:{uuid.uuid4().hex}"
    cache.set(key, b"page", ttl=1)
    if isinstance(cache, MemoryCache):
        import time

        real = time.monotonic
        monkeypatch.setattr(time, "monotonic", lambda: real() + 2)
    else:
        cache._client.pexpire(key, 1)
        import time

        time.sleep(0.01)
    assert cache.get(key) is None


def test_memory_cache_is_bounded():
    cache = MemoryCache(max_items=2)
    for key in "abc":
        cache.set(key, key.encode())
    assert cache.get("a") is None and cache.get("c") == b"c"


def test_a_dead_redis_is_a_miss_and_marks_the_cache_unhealthy():
    cache = RedisCache("redis://127.0.0.1:1/0", timeout=0.05)
    cache.set("k", b"v")
    assert cache.get("k") is None
    cache.delete("k")
    assert cache.healthy is False


def test_the_model_version_is_part_of_the_key():
    assert page_key("v1", "pk", DAY) != page_key("v2", "pk", DAY)
    assert isinstance(make_cache(None), MemoryCache)
