"""The audit log is append-only and hash-chained: any alteration is found, and where."""

from __future__ import annotations

import threading

from sqlalchemy import delete, update

from service import audit
from service.store import audit_log


def _fill(engine, n=5):
    for i in range(n):
        with engine.begin() as connection:
            audit.append(connection, actor="partner:bikes", action="eligibility",
                         person_key=f"p{i % 2}", detail={"perk": "bike", "answer": "yes", "i": i})


def test_an_intact_chain_verifies(engine):
    _fill(engine)
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 5


def test_an_altered_row_is_reported_as_the_first_broken_link(engine):
    _fill(engine)
    with engine.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.seq == 3)
                           .values(detail={"perk": "bike", "answer": "no", "i": 2}))
    verdict = audit.verify(engine)
    assert verdict.broken_at == 3 and "altered" in verdict.why


def test_a_removed_row_is_reported(engine):
    _fill(engine)
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.seq == 2))
    assert audit.verify(engine).broken_at == 2


def test_a_removed_tail_is_reported(engine):
    _fill(engine)
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.seq == 5))
    assert audit.verify(engine).broken_at == 5


def test_a_rehashed_forgery_still_breaks_the_next_link(engine):
    _fill(engine)
    with engine.begin() as connection:
        row = connection.execute(audit_log.select().where(audit_log.c.seq == 2)).first()
        forged = {"perk": "bike", "answer": "no", "i": 1}
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=audit.dt.UTC)
        new_hash = audit.link_hash(row.prev_hash, 2, at, row.actor, row.person_key, row.action,
                                   forged)
        connection.execute(update(audit_log).where(audit_log.c.seq == 2)
                           .values(detail=forged, hash=new_hash))
    verdict = audit.verify(engine)
    assert verdict.broken_at == 3 and "link" in verdict.why


def test_concurrent_appends_form_one_chain(engine):
    errors = []

    def worker(k):
        try:
            for i in range(10):
                with engine.begin() as connection:
                    audit.append(connection, actor=f"partner:{k}", action="eligibility",
                                 person_key="p", detail={"i": i})
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 30


def test_a_person_reads_only_their_own_entries(engine):
    _fill(engine)
    entries = audit.entries_for(engine, "p0")
    assert [e["detail"]["i"] for e in entries] == [4, 2, 0]
