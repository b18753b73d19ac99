"""The app factory, configuration and the one error envelope."""

from __future__ import annotations

import pytest

from service.app import create_app
from service.base.config import Config, ConfigError, new_consent_key

ENVELOPE_KEYS = {"code", "status", "message", "errors"}


def test_development_needs_nothing_set_and_generates_its_secrets_once(tmp_path):
    import stat

    secrets_file = tmp_path / "demo" / "secrets.json"
    config = Config.from_env({"OSMANTHUS_SECRETS_FILE": str(secrets_file)})
    assert config.env == "development" and config.database_url.startswith("sqlite")
    assert config.redis_url is None
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    again = Config.from_env({"OSMANTHUS_SECRETS_FILE": str(secrets_file)})
    assert (again.jwt_secret, again.consent_key) == (config.jwt_secret, config.consent_key)
    elsewhere = Config.from_env({"OSMANTHUS_SECRETS_FILE": str(tmp_path / "other.json")})
    assert elsewhere.jwt_secret != config.jwt_secret  # random, not a default


def test_no_secret_has_a_default_in_the_source():
    """Two configurations built in two processes share no secret: none is written down."""
    import os
    import subprocess
    import sys

    code = "from service.base.config import Config; print(Config().jwt_secret)"
    env = {k: v for k, v in os.environ.items() if k != "OSMANTHUS_SECRETS_FILE"}
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                                    text=True, check=True).stdout for _ in range(2))
    assert first.strip() and first != second
    assert Config(env="production").jwt_secret is None


PRODUCTION = {
    "OSMANTHUS_ENV": "production", "OSMANTHUS_PERSON_KEY": "k" * 32,
    "OSMANTHUS_JWT_SECRET": "s" * 32, "OSMANTHUS_CONSENT_KEY": "pem",
    "DATABASE_URL": "postgresql+psycopg://db/osmanthus",
}


@pytest.mark.parametrize("missing", ["OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET",
                                     "OSMANTHUS_CONSENT_KEY", "DATABASE_URL"])
def test_production_refuses_to_start_without_each_secret(missing, tmp_path):
    environ = {**PRODUCTION, "OSMANTHUS_SECRETS_FILE": str(tmp_path / "secrets.json")}
    del environ[missing]
    with pytest.raises(ConfigError, match=missing):
        Config.from_env(environ)
    assert not (tmp_path / "secrets.json").exists()  # production never generates one


def test_production_refuses_weak_or_unusable_secrets_and_sqlite():
    key = new_consent_key()
    with pytest.raises(ConfigError, match="32 bytes"):
        create_app(Config(env="production", jwt_secret="short", consent_key=key))
    with pytest.raises(ConfigError, match="not usable"):
        create_app(Config(env="production", jwt_secret="r" * 32, consent_key="not a key",
                          database_url="postgresql+psycopg://db/x"))
    with pytest.raises(ConfigError, match="PostgreSQL"):
        create_app(Config(env="production", jwt_secret="r" * 32, consent_key=key,
                          database_url="sqlite:///x.db"))


def test_the_audit_key_is_generated_in_development_and_required_to_seal_in_production(
        tmp_path):
    import json

    from service.base.keys import audit_keys_of

    secrets_file = tmp_path / "secrets.json"
    older = {"OSMANTHUS_PERSON_KEY": "p" * 32, "OSMANTHUS_JWT_SECRET": "j" * 48,
             "OSMANTHUS_CONSENT_KEY": new_consent_key()}  # a file from before the audit key
    secrets_file.write_text(json.dumps(older))
    config = Config.from_env({"OSMANTHUS_SECRETS_FILE": str(secrets_file)})
    stored = json.loads(secrets_file.read_text())
    assert {k: stored[k] for k in older} == older and stored["OSMANTHUS_AUDIT_KEY"]
    assert config.audit_key == stored["OSMANTHUS_AUDIT_KEY"]
    assert Config.from_env({"OSMANTHUS_SECRETS_FILE": str(secrets_file)}).audit_key == \
        config.audit_key  # kept, not made again
    keys = audit_keys_of(config)
    assert keys.private is not None and set(keys.public) == {"1"}
    assert keys.jwks()["keys"][0]["crv"] == "Ed25519"

    base = dict(env="production", jwt_secret="r" * 32, consent_key=new_consent_key(),
                database_url="postgresql+psycopg://db/x")
    with pytest.raises(ConfigError, match="OSMANTHUS_AUDIT_KEY"):
        Config(**base, audit_seal_seconds=1.0).check()
    Config(**base).check()  # a process that does not seal needs no private key
    assert audit_keys_of(Config(**base)).private is None
    Config(**base, audit_seal_seconds=1.0, audit_key=new_consent_key()).check()
    with pytest.raises(ConfigError, match="not usable"):
        Config(**base, audit_key="not a key").check()


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
