"""The audit log is append-only and hash-chained: any alteration is found, and where."""

from __future__ import annotations

import threading

from sqlalchemy import delete, select, update

from service.rights import audit
from service.store.tables import audit_head, audit_log


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


def _all_at_once(*jobs) -> list[Exception]:
    """Run each job in its own thread, all at once; what they raised."""
    errors: list[Exception] = []

    def guarded(job) -> None:
        try:
            job()
        except Exception as error:  # noqa: BLE001 - returned for the assertion
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_appends_form_one_chain(engine):
    def worker(k):
        for i in range(10):
            with engine.begin() as connection:
                audit.append(connection, actor=f"partner:{k}", action="eligibility",
                             person_key="p", detail={"i": i})

    errors = _all_at_once(*[lambda k=k: worker(k) for k in range(3)])
    assert not errors
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 30


def test_a_person_reads_only_their_own_entries(engine):
    _fill(engine)
    entries = audit.entries_for(engine, "p0")
    assert [e["detail"]["i"] for e in entries] == [4, 2, 0]


def _entries(k: int, n: int) -> list[dict]:
    return [{"actor": f"partner:{k}", "action": "eligibility", "person_key": f"p{i}",
             "detail": {"perk": "bike", "answer": "yes", "i": i, "名": "桂花"}} for i in range(n)]


def test_committed_appends_racing_locked_ones_form_one_chain(engine):
    """`append_committed` (compare-and-swap on PostgreSQL) and `append` (the head's lock) from
    several threads at once: every row lands once, in one unbroken chain."""
    written = []

    def swapper(k):
        for i in range(12):
            written.extend(audit.append_committed(engine, _entries(k, 1 + i % 3)))

    def locker():
        for i in range(8):
            with engine.begin() as connection:
                written.append(audit.append(connection, actor="citizen", action="x",
                                            person_key="p", detail={"i": i}))

    errors = _all_at_once(*[lambda k=k: swapper(k) for k in range(3)], locker)
    assert not errors
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 3 * 24 + 8 == len(written) == len(set(written))


def test_a_lost_race_writes_nothing_and_is_tried_again(engine, monkeypatch):
    _fill(engine, 2)
    real, outcomes = audit._swap, []

    def racing(connection, seq, prev, rows):
        if not outcomes:  # another writer appends between our read of the head and our write
            with engine.begin() as other:
                audit.append(other, actor="citizen", action="x", detail={})
        outcomes.append(real(connection, seq, prev, rows))
        return outcomes[-1]

    monkeypatch.setattr(audit, "_swap", racing)
    with engine.connect() as connection:
        head = tuple(connection.execute(select(audit_head.c.seq, audit_head.c.hash)).one())
    # the lost race itself says where the chain now ends: no separate read of the head
    monkeypatch.setattr(audit, "_HEAD_SQL", "SELECT 1 / 0  -- the head was read again")
    seqs = audit.append_committed(engine, _entries(1, 2), head=head)
    if engine.dialect.name == "postgresql":
        assert [outcome is None for outcome in outcomes] == [False, True]  # stale: no rows
        assert outcomes[0][0] == 3 and seqs == [4, 5]
    else:  # SQLite always takes the lock: there is no race to lose
        assert outcomes == [] and seqs == [3, 4]
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 2 + len(outcomes) // 2 + 2


def test_after_too_many_lost_races_it_takes_the_lock(engine, monkeypatch):
    _fill(engine, 1)
    monkeypatch.setattr(audit, "_swap", lambda _connection, seq, prev, _rows: (seq + 1, prev))
    assert audit.append_committed(engine, _entries(1, 3)) == [2, 3, 4]
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 4


def test_a_stale_head_from_the_caller_only_costs_a_retry(engine):
    _fill(engine, 3)
    stale = (1, "f" * 64)  # what a caller read before two more rows were appended
    assert audit.append_committed(engine, _entries(1, 2), head=stale) == [4, 5]
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.rows == 5
