"""Fixtures shared by every layer's tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OSMANTHUS_PERSON_KEY", "test-person-key")


def require_services() -> bool:
    """In CI a missing PostgreSQL or Redis is a failure, not a skip."""
    return os.environ.get("OSMANTHUS_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (OSMANTHUS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)
