"""A fresh, migrated database per test, on SQLite and on real PostgreSQL; the app and client."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from service.base.config import Config
from service.store.tables import make_engine, migrate
from tests.conftest import skip_or_fail

POSTGRES_URL = os.environ.get(
    "DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request, tmp_path):
    """A URL to an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'osmanthus.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:  # noqa: BLE001 - any failure to reach the server
        admin.dispose()
        skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(error).__name__}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def config(database_url, tmp_path) -> Config:
    return Config(env="test", database_url=database_url, registry_dir=tmp_path / "registry")


@pytest.fixture
def app(config):
    from service.app import create_app

    app = create_app(config)
    yield app
    app.extensions["osmanthus.engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def served_config(config, world) -> Config:
    """The test database, with the world's registry serving its champion."""
    return config.with_(registry_dir=world.registry)


DEMO_TODAY = dt.date(2026, 1, 1)  # the world's "now": its records run to December 2025


@pytest.fixture
def people_keys(world) -> list[str]:
    """The 40 residents loaded into every served app (a sample keeps each test's database small)."""
    return world.people()["person_key"].head(40).to_list()


@pytest.fixture
def served_apps(served_config, world, people_keys):
    """Apps serving the world's champion on one test database, each with its own settings
    (`served_apps(redis_url=...)`); the first one stores and scores `keys` (default: the 40
    residents of `people_keys`)."""
    from service.app import create_app
    from service.scoring.score import score_people
    from service.store.bulk import write_records

    made = []

    def make(keys: list[str] | None = None, **settings):
        app = create_app(served_config.with_(as_of=DEMO_TODAY, **settings))
        if not made:
            keys = people_keys if keys is None else keys
            engine = app.extensions["osmanthus.engine"]
            write_records(engine, world.records.filter_persons(keys))
            score_people(engine, app.extensions["osmanthus.model"], keys, DEMO_TODAY)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["osmanthus.engine"].dispose()


@pytest.fixture
def served_app(served_apps):
    """An app serving the world's champion, with 40 residents' records stored and scored."""
    return served_apps()


@dataclass
class Auth:
    """Per-role request headers for a served app."""

    app: object

    def citizen(self, person_key: str) -> dict[str, str]:
        from service.rights.auth import issue_token

        token = issue_token(self.app.extensions["osmanthus.config"], "citizen", person_key)
        return {"Authorization": f"Bearer {token}"}

    def admin(self, name: str = "ops") -> dict[str, str]:
        from service.rights.auth import issue_token

        token = issue_token(self.app.extensions["osmanthus.config"], "admin", name)
        return {"Authorization": f"Bearer {token}"}

    def partner(self, partner_id: str = "city-bikes") -> dict[str, str]:
        """A fresh API key for a partner (registered on first use)."""
        from service.rights.auth import new_api_key
        from service.store.tables import partners

        key, hashed = new_api_key()
        engine = self.app.extensions["osmanthus.engine"]
        with engine.begin() as connection:  # a new key for an existing partner keeps its consents
            updated = connection.execute(partners.update()
                                         .where(partners.c.partner_id == partner_id)
                                         .values(api_key_hash=hashed)).rowcount
            if not updated:
                connection.execute(partners.insert().values(
                    partner_id=partner_id, name=partner_id, api_key_hash=hashed,
                    created_at=dt.datetime.now(dt.UTC)))
        return {"X-API-Key": key}


@pytest.fixture
def auth(served_app) -> Auth:
    return Auth(served_app)


@pytest.fixture
def served_client(served_app):
    return served_app.test_client()


def audit_log_verifies(engine) -> bool:
    """Seal what is unsealed with this process's audit key and verify the whole log."""
    from service.base.keys import audit_keys_of
    from service.rights import sequencer
    from service.rights.transparency import verify_log

    keys = audit_keys_of(Config(env="test"))
    sequencer.seal(engine, keys)
    verdict = verify_log(engine, keys.public)
    assert verdict.unsealed == 0, verdict
    return verdict.ok
