"""The operator's commands: partners, token, rescore, ingest (re-scoring) and serve."""

from __future__ import annotations

import datetime as dt

import jwt
import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from features.identity import make_resident_id, person_key
from features.records import Source
from service.base.config import Config
from service.cli import service as cli_service
from service.cli.main import main
from service.rights.auth import hash_api_key
from service.scoring.score import ensure_people
from service.store.bulk import write_records
from service.store.tables import partners, scores
from tests.service.conftest import DEMO_TODAY


@pytest.fixture
def cli_env(monkeypatch, database_url, world, engine):
    """The commands' environment: the test database and the world's registry."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OSMANTHUS_REGISTRY", str(world.registry))
    monkeypatch.setenv("OSMANTHUS_AS_OF", DEMO_TODAY.isoformat())
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return engine


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_partners_add_shows_the_key_once_and_stores_only_its_hash(cli_env):
    added = run("partners", "add", "city-bikes", "--name", "Public bicycle company")
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("osk_")
    with cli_env.connect() as connection:
        row = connection.execute(select(partners)).one()
    assert row.api_key_hash == hash_api_key(key) and key not in repr(tuple(row))

    again = run("partners", "add", "city-bikes", "--name", "x")
    assert again.exit_code == 1 and "--rotate" in again.output
    rotated = run("partners", "add", "city-bikes", "--name", "Bikes", "--rotate")
    assert rotated.exit_code == 0 and rotated.stdout.strip() != key
    listed = run("partners", "list")
    assert "city-bikes" in listed.output and "osk_" not in listed.output
    assert run("partners", "add", "bad id!", "--name", "x").exit_code == 1


def test_token_for_a_citizen_by_key_or_resident_id_and_for_an_admin(monkeypatch):
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    monkeypatch.delenv("OSMANTHUS_JWT_SECRET", raising=False)
    resident = make_resident_id(330106, dt.date(1990, 5, 17), 123)

    def claims(*args: str) -> dict:
        result = run("token", *args)
        assert result.exit_code == 0, result.output
        from service.rights.auth import decode_token

        token = result.stdout.strip()
        role = jwt.decode(token, options={"verify_signature": False})["role"]
        return decode_token(Config.from_env(), token, role)  # the same generated secrets

    by_id = claims("citizen", resident)
    assert by_id["sub"] == person_key(resident) and by_id["dev"] is True
    assert claims("citizen", person_key(resident))["sub"] == person_key(resident)
    assert claims("admin", "ops")["role"] == "admin"
    refused = run("token", "citizen", "110101199001011234")  # a wrong check digit
    assert refused.exit_code == 2 and "110101199001011234" not in refused.output
    assert run("token", "citizen", "somebody").exit_code == 2
    monkeypatch.setenv("OSMANTHUS_ENV", "production")
    for name in ("OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET", "OSMANTHUS_CONSENT_KEY",
                 "DATABASE_URL"):
        monkeypatch.setenv(name, "x" * 40)
    assert run("token", "admin", "ops").exit_code == 1


def test_rescore_everyone_or_some(cli_env, world):
    keys = world.people()["person_key"].head(30).to_list()
    write_records(cli_env, world.records.filter_persons(keys))
    with cli_env.begin() as connection:
        ensure_people(connection, keys)
    everyone = run("rescore", "--all")
    assert everyone.exit_code == 0, everyone.output
    assert "re-scored 30 of 30 people as of 2026-01-01" in everyone.output
    some = run("rescore", keys[0], keys[1])
    assert some.exit_code == 0 and "re-scored 2 of 2" in some.output
    with cli_env.connect() as connection:
        assert connection.execute(select(func.count()).select_from(scores)).scalar_one() == 32
    assert run("rescore").exit_code == 2
    assert run("rescore", "--all", keys[0]).exit_code == 2


@pytest.mark.parametrize("who", [["--all"], ["0" * 64]], ids=["everyone", "a list"])
def test_rescore_without_a_champion_is_a_message_and_exit_1(cli_env, monkeypatch, tmp_path,
                                                            who):
    monkeypatch.setenv("OSMANTHUS_REGISTRY", str(tmp_path / "empty-registry"))
    result = run("rescore", *who)
    assert result.exit_code == 1 and "no model to score with" in result.output
    assert "Traceback" not in result.output


def test_ingest_rescores_the_people_whose_records_changed(cli_env, tmp_path):
    ids = [make_resident_id(110101, dt.date(1985, 3, 1 + i), 200 + i) for i in range(3)]
    feed = tmp_path / "penalty.csv"
    pl.DataFrame([{"decision_no": f"C-{i}", "resident_id": rid, "decided_on": "2025-05-01",
                   "category": "traffic", "severity": "serious", "fine": "900",
                   "window_months": "", "repaired_on": ""} for i, rid in enumerate(ids)]
                 ).write_csv(feed)
    result = run("ingest", str(feed), "--source", Source.PENALTY.value)
    assert result.exit_code == 0, result.output
    assert "re-scored:   3 as of 2026-01-01" in result.output
    with cli_env.connect() as connection:
        stored = set(connection.execute(select(scores.c.person_key)).scalars())
    assert stored == {person_key(rid) for rid in ids}
    assert "re-scored" not in run("ingest", str(feed), "--source", "penalty").output


def test_serve_runs_gunicorn_with_the_workers_and_threads_asked_for(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_service, "execute", lambda argv, env: calls.append((argv, env)))
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    result = run("serve", "--port", "8123", "--workers", "3", "--threads", "2")
    assert result.exit_code == 0, result.output
    (argv, env), = calls
    assert argv[1:3] == ["-m", "gunicorn"] and argv[-1] == "service.wsgi:app"
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:8123"
    assert argv[argv.index("--workers") + 1] == "3"
    assert env["OSMANTHUS_NUM_THREADS"] == "2"

    monkeypatch.setenv("OSMANTHUS_ENV", "production")  # without its secrets: refused up front
    for name in ("OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    refused = run("serve")
    assert refused.exit_code == 1 and "production needs" in refused.output
    assert len(calls) == 1


def test_the_wsgi_module_builds_the_app_from_the_environment(cli_env):
    import importlib
    import sys

    sys.modules.pop("service.wsgi", None)
    wsgi = importlib.import_module("service.wsgi")
    try:
        assert wsgi.app.test_client().get("/healthz").status_code == 200
        assert wsgi.app.extensions["osmanthus.model"].ready
    finally:
        wsgi.app.extensions["osmanthus.engine"].dispose()
        sys.modules.pop("service.wsgi", None)


def test_ingest_into_an_unreachable_store_is_a_one_line_error(monkeypatch, tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL",
                       f"postgresql+psycopg://postgres@127.0.0.1:{port}/none?connect_timeout=2")
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    feed = tmp_path / "penalty.csv"
    feed.write_text("decision_no,resident_id\n")
    result = CliRunner().invoke(main, ["ingest", str(feed), "--source", "penalty"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the store cannot be reached:")
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an exception
