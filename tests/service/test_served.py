"""The served test app holds real, scored residents."""

from __future__ import annotations

from service.scoring.score import latest
from tests.service.conftest import DEMO_TODAY


def test_every_loaded_resident_has_a_score_as_of_the_worlds_today(served_app, people_keys):
    engine = served_app.extensions["osmanthus.engine"]
    for key in people_keys:
        row = latest(engine, key)
        assert row is not None and row["as_of"] == DEMO_TODAY
