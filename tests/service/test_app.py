"""The app factory, configuration and the one error envelope."""

from __future__ import annotations

import pytest

from service.app import create_app
from service.base.config import DEVELOPMENT_JWT_SECRET, Config, ConfigError

ENVELOPE_KEYS = {"code", "status", "message", "errors"}


def test_development_needs_nothing_set():
    config = Config.from_env({})
    assert config.env == "development" and config.database_url.startswith("sqlite")
    assert config.redis_url is None


@pytest.mark.parametrize("missing", ["OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET", "DATABASE_URL"])
def test_production_refuses_to_start_without_each_secret(missing):
    environ = {
        "OSMANTHUS_ENV": "production", "OSMANTHUS_PERSON_KEY": "k",
        "OSMANTHUS_JWT_SECRET": "s", "DATABASE_URL": "postgresql+psycopg://db/osmanthus",
    }
    del environ[missing]
    with pytest.raises(ConfigError, match=missing):
        Config.from_env(environ)


def test_production_refuses_development_secret_and_sqlite():
    with pytest.raises(ConfigError, match="development JWT"):
        create_app(Config(env="production", jwt_secret=DEVELOPMENT_JWT_SECRET))
    with pytest.raises(ConfigError, match="PostgreSQL"):
        create_app(Config(env="production", jwt_secret="r" * 32, database_url="sqlite:///x.db"))


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_without_a_model_is_unavailable(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": True, "model": None,
                                   "redis": "not configured"}


def test_readyz_with_a_model_and_no_redis_is_ready(served_config):
    body = create_app(served_config).test_client().get("/readyz").get_json()
    assert body["status"] == "ready" and body["model"] == "v0001"


def test_readyz_with_redis_down_is_degraded_not_failing(served_config):
    app = create_app(served_config.with_(redis_url="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded"


@pytest.mark.parametrize("method,path,status", [
    ("get", "/no-such-page", 404),
    ("post", "/healthz", 405),
])
def test_every_error_has_the_envelope(client, method, path, status):
    response = getattr(client, method)(path)
    body = response.get_json()
    assert response.status_code == status
    assert set(body) == ENVELOPE_KEYS and body["status"] == status


def test_an_unexpected_error_leaks_nothing(app):
    @app.route("/boom")
    def boom():
        raise RuntimeError("secret detail: /etc/passwd 110101199003077777")

    body = app.test_client().get("/boom").get_json()
    assert body["status"] == 500 and set(body) == ENVELOPE_KEYS
    assert "secret" not in body["message"] and "1101011990" not in str(body)


def test_openapi_document_lists_the_health_endpoints(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/healthz", "/readyz"} <= set(paths)
