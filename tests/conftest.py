"""Fixtures shared by every layer's tests."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

os.environ.setdefault("OSMANTHUS_PERSON_KEY", "test-person-key")

# In CI, property tests draw the same examples every run, so a red build is reproducible; on a
# developer's machine they keep exploring.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def require_services() -> bool:
    """In CI a missing PostgreSQL or Redis is a failure, not a skip."""
    return os.environ.get("OSMANTHUS_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (OSMANTHUS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The one test world: a small city, its records and a registered champion, built once per
    session for every test that asks (tests/service/world.py; the service and web tests)."""
    from tests.service.world import build_world

    return build_world(tmp_path_factory.mktemp("world"))
