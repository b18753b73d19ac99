"""Rate limits per API key: 429 + Retry-After in the envelope, in memory and on real Redis;
a dead Redis fails open (still limited per process) or closed (503), as configured."""

from __future__ import annotations

import os
import uuid

import pytest
from flask import Blueprint, Flask

from service.api.limits import init_limiter
from service.base.config import Config
from service.base.errors import ApiError, register_error_handlers
from tests.conftest import skip_or_fail

REDIS_URL = os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/15")
DEAD_REDIS = "redis://127.0.0.1:1/0"


def make_app(**settings) -> Flask:
    """A bare app with a `partner` blueprint (and the public `transparency` one, which the
    limiter also limits): the limiter alone, no database."""
    app = Flask("limits-test")
    partner = Blueprint("partner", __name__, url_prefix="/v1/partner")

    @partner.route("/ping", methods=["GET", "POST"])
    def ping():
        return {"ok": True}

    @partner.route("/other")
    def other():
        return {"ok": True}

    @app.route("/open")
    def unlimited():
        return {"ok": True}

    app.register_blueprint(partner)
    app.register_blueprint(Blueprint("transparency", __name__, url_prefix="/v1/transparency"))
    register_error_handlers(app)
    init_limiter(app, Config(**settings))
    return app


def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        skip_or_fail(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def storage(request) -> str | None:
    return None if request.param == "memory" else redis_url()


def a_key() -> dict[str, str]:
    return {"X-API-Key": f"osk_{uuid.uuid4().hex}"}


def test_exceeding_the_limit_is_429_with_retry_after_in_the_envelope(storage):
    client = make_app(redis_url=storage, partner_rate_limit="3/minute").test_client()
    key = a_key()
    assert [client.get("/v1/partner/ping", headers=key).status_code for _ in range(3)] == [200] * 3
    response = client.get("/v1/partner/ping", headers=key)
    assert response.status_code == 429
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert response.json["code"] == "rate_limited" and response.json["status"] == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_limits_are_per_key_and_shared_across_the_blueprint(storage):
    client = make_app(redis_url=storage, partner_rate_limit="2/minute").test_client()
    first, second = a_key(), a_key()
    assert client.get("/v1/partner/ping", headers=first).status_code == 200
    assert client.get("/v1/partner/other", headers=first).status_code == 200
    assert client.get("/v1/partner/ping", headers=first).status_code == 429
    assert client.get("/v1/partner/other", headers=first).status_code == 429
    assert client.get("/v1/partner/ping", headers=second).status_code == 200
    assert all(client.get("/open").status_code == 200 for _ in range(5))  # not limited


def test_a_batch_costs_one_hit_per_item():
    client = make_app(partner_rate_limit="5/minute").test_client()
    key = a_key()
    batch = {"requests": [{}] * 4}
    assert client.post("/v1/partner/ping", headers=key, json=batch).status_code == 200
    assert client.post("/v1/partner/ping", headers=key, json=batch).status_code == 429
    assert client.get("/v1/partner/ping", headers=key).status_code == 200  # the 5th hit


@pytest.mark.integration
def test_redis_holds_a_hash_of_the_key_never_the_key():
    import redis

    url = redis_url()
    client = make_app(redis_url=url, partner_rate_limit="5/minute").test_client()
    key = a_key()
    client.get("/v1/partner/ping", headers=key)
    stored = [k.decode() for k in redis.Redis.from_url(url).keys("LIMITS:*osmanthus*")]
    raw = key["X-API-Key"]
    assert stored and not any(raw in k or raw[4:] in k for k in stored)
    from service.api.limits import rate_key

    with make_app().test_request_context(headers=key):
        assert any(rate_key() in k for k in stored)


def test_with_redis_down_fail_open_still_answers_and_still_limits_per_process():
    client = make_app(redis_url=DEAD_REDIS, partner_rate_limit="3/minute",
                      rate_limit_fail_open=True).test_client()
    key = a_key()
    assert [client.get("/v1/partner/ping", headers=key).status_code for _ in range(3)] == [200] * 3
    response = client.get("/v1/partner/ping", headers=key)  # the in-memory fallback counts
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_with_redis_down_fail_closed_refuses_with_503_in_the_envelope():
    client = make_app(redis_url=DEAD_REDIS, partner_rate_limit="3/minute",
                      rate_limit_fail_open=False).test_client()
    response = client.get("/v1/partner/ping", headers=a_key())
    assert response.status_code == 503
    assert response.json["code"] == "unavailable" and "Retry-After" in response.headers
    assert "127.0.0.1" not in response.get_data(as_text=True)  # no internals
    assert client.get("/open").status_code == 200  # unlimited routes never touch Redis


def test_fail_open_is_the_default():
    assert Config().rate_limit_fail_open is True
    assert Config.from_env({}).rate_limit_fail_open is True
    assert Config.from_env({"OSMANTHUS_RATE_LIMIT_FAIL_OPEN": "0"}).rate_limit_fail_open is False


def test_a_limit_for_an_unregistered_blueprint_fails_at_start_up(monkeypatch):
    from service.api import limits

    monkeypatch.setitem(limits.LIMITED_BLUEPRINTS, "nowhere", lambda config: "1/minute")
    with pytest.raises(RuntimeError, match="nowhere"):
        make_app()


def front_count(app: Flask):
    return app.extensions["osmanthus.front_count"]


def bucket(key: dict[str, str]) -> str:
    from service.api.limits import bucket_of

    return bucket_of(key["X-API-Key"], None)


def test_a_count_in_front_of_flask_shares_flask_limiters_bucket(storage):
    """3 hits counted in front + 2 requests through Flask-Limiter = the limit of 5: the 6th is
    refused either way, with the same 429 Flask-Limiter's handler gives."""
    app = make_app(redis_url=storage, partner_rate_limit="5/minute")
    client, key = app.test_client(), a_key()
    assert front_count(app).hit("partner", bucket(key)) is True
    assert client.get("/v1/partner/ping", headers=key).status_code == 200
    assert front_count(app).hit("partner", bucket(key)) is True
    assert client.get("/v1/partner/other", headers=key).status_code == 200
    assert front_count(app).hit("partner", bucket(key)) is True
    with pytest.raises(ApiError) as refused:
        front_count(app).hit("partner", bucket(key))
    flask_refusal = client.get("/v1/partner/ping", headers=key)
    assert refused.value.status == flask_refusal.status_code == 429
    assert refused.value.message == flask_refusal.json["message"]
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    assert front_count(app).hit("partner", bucket(a_key())) is True  # another key's bucket


def test_in_front_nothing_is_counted_while_flask_limiter_counts_in_memory(monkeypatch):
    """Failing open on a dead Redis, Flask-Limiter counts on its in-memory fallback and checks
    Redis again on its own back-off: the lane leaves every request to it meanwhile."""
    app = make_app(redis_url=DEAD_REDIS, partner_rate_limit="3/minute",
                   rate_limit_fail_open=True)
    assert app.test_client().get("/v1/partner/ping", headers=a_key()).status_code == 200
    limiter = app.extensions["osmanthus.limiter"]
    assert limiter.limiter.storage is not limiter.storage  # on its fallback
    counted: list[tuple] = []
    monkeypatch.setattr(limiter.limiter, "hit", lambda *a, **k: counted.append(a) or True)
    assert front_count(app).hit("partner", bucket(a_key())) is False
    assert counted == [], "counted in front while Flask-Limiter is on its fallback"


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_storage_error_in_front_leaves_the_request_to_flask_limiter_for_a_second(
        monkeypatch, fail_open):
    """The lane does not count (False: Flask answers, Flask-Limiter fails open or closed) and
    does not try the dead storage again for FRONT_PAUSE_SECONDS."""
    from service.api import limits

    app = make_app(redis_url=DEAD_REDIS, partner_rate_limit="3/minute",
                   rate_limit_fail_open=fail_open)
    strategy = app.extensions["osmanthus.limiter"].limiter
    tries = []
    real_hit = strategy.hit
    monkeypatch.setattr(strategy, "hit", lambda *a, **k: tries.append(a) or real_hit(*a, **k))
    assert front_count(app).hit("partner", bucket(a_key())) is False
    assert front_count(app).hit("partner", bucket(a_key())) is False
    assert len(tries) == 1, "a dead storage is tried once, then left to Flask-Limiter"
    with monkeypatch.context() as later:
        later.setattr(limits.time, "monotonic", lambda: 10.0 ** 9)  # the pause is over
        assert front_count(app).hit("partner", bucket(a_key())) is False
    assert len(tries) == 2
    expected = 200 if fail_open else 503
    assert app.test_client().get("/v1/partner/ping", headers=a_key()).status_code == expected
