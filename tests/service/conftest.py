"""A fresh, migrated database per test, on SQLite and on real PostgreSQL; the app and client."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text

from service.config import Config
from service.store import make_engine, migrate
from tests.conftest import skip_or_fail

POSTGRES_URL = os.environ.get(
    "DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
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


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A city, its records and a champion model, built once per session (tests/service/world.py)."""
    from tests.service.world import build_world

    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def served_config(config, world) -> Config:
    """The test database, with the world's registry serving its champion."""
    return config.with_(registry_dir=world.registry)
