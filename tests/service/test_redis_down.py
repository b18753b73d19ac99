"""With Redis configured but down, citizens and partners are still served from the database."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import skip_or_fail
from tests.service.conftest import DEMO_TODAY

REDIS_URL = os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/15")
DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_a_citizens_page_is_served_from_the_database_when_redis_is_down(served_apps, people_keys):
    from tests.service.conftest import Auth

    app = served_apps(redis_url=DEAD_REDIS)
    client, key = app.test_client(), people_keys[0]
    first = client.get("/v1/me/score", headers=Auth(app).citizen(key))
    second = client.get("/v1/me/score", headers=Auth(app).citizen(key))
    assert first.status_code == second.status_code == 200
    assert first.get_json()["score"] == second.get_json()["score"]
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "degraded" and ready["redis"] == "down"


@pytest.mark.integration
def test_the_page_is_cached_in_real_redis(served_apps, people_keys):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        skip_or_fail(f"Redis not reachable at {REDIS_URL}")
    from service.base.cache import page_key
    from tests.service.conftest import Auth

    app = served_apps(redis_url=REDIS_URL)
    key = people_keys[1]
    version = app.extensions["osmanthus.model"].version
    app.extensions["osmanthus.cache"].delete(page_key(version, key, DEMO_TODAY))
    response = app.test_client().get("/v1/me/score", headers=Auth(app).citizen(key))
    assert response.status_code == 200
    cached = redis.Redis.from_url(REDIS_URL).get(page_key(version, key, DEMO_TODAY))
    assert cached is not None and json.loads(cached) == response.get_json()
    assert app.test_client().get("/readyz").get_json()["status"] == "ready"
