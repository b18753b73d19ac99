"""Migration 0004 keeps every answer as it was: an open dispute gets the due date its row
holds, and a review asked for before reviews were per perk becomes one request per perk."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from service.store.tables import make_engine, migrate


def test_0004_carries_open_disputes_and_old_reviews_over(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine, "0003")
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as c:
        c.execute(text("INSERT INTO people (person_key, first_seen, review_state, "
                       "review_requested_at, review_outcome) VALUES "
                       "('p1', :n, 'pending', :n, NULL), ('p2', :n, 'none', NULL, NULL), "
                       "('p3', :n, 'decided', :n, 'eligible')"), {"n": now})
        for perk, active in (("bike", 1), ("lib", 1), ("old", 0)):
            c.execute(text("INSERT INTO perks (perk_id, policy_version, partner_id, name_zh, "
                           "name_en, min_score, conditions, active, created_at) VALUES "
                           "(:p, 1, 'x', 'z', 'e', 600, '[]', :a, :n)"),
                      {"p": perk, "a": active, "n": now})
        c.execute(text("INSERT INTO disputes (dispute_id, person_key, source, record_id, "
                       "statement, received_on, due_on, state) VALUES "
                       "('d1', 'p1', 'court', 'r1', 's', '2026-01-01', '2026-01-31', 'open')"))
        c.execute(text("INSERT INTO records_court (record_id, person_key, case_no, filed_on, "
                       "amount, status, dispute_opened_on) VALUES "
                       "('r1', 'p1', 'c', '2025-01-01', 1.0, 'active', '2026-01-01'), "
                       "('r2', 'p1', 'c2', '2025-01-01', 1.0, 'active', NULL)"))
    migrate(engine)
    with engine.connect() as c:
        reviews = c.execute(text("SELECT person_key, perk_id, state, outcome FROM reviews "
                                 "ORDER BY person_key, perk_id")).all()
        undated = c.execute(text("SELECT count(*) FROM reviews WHERE state = 'decided' "
                                 "AND decided_at IS NULL")).scalar_one()
        due = dict(c.execute(text("SELECT record_id, dispute_due_on FROM records_court")).all())
    assert [tuple(r) for r in reviews] == [("p1", "bike", "pending", None),
                                           ("p1", "lib", "pending", None),
                                           ("p3", "bike", "decided", "eligible"),
                                           ("p3", "lib", "decided", "eligible")]
    assert undated == 0  # a carried-over decision stands (DECISION_STANDS from the migration)
    assert {k: str(v) if v else None for k, v in due.items()} == {"r1": "2026-01-31",
                                                                 "r2": None}
    engine.dispose()
