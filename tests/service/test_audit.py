"""The audit log is a Merkle log: appends need no shared row, the sequencer seals every entry
exactly once, proofs hold, and any rewriting of history is found, even a thorough one."""

from __future__ import annotations

import contextlib
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select, update

from service.base.config import Config
from service.base.keys import AuditKeys, audit_keys_of
from service.rights import audit, merkle, sequencer, transparency
from service.store.tables import (
    audit_entries,
    audit_leaves,
    audit_tree,
    audit_tree_heads,
    audit_unsealed,
)


@pytest.fixture
def keys() -> AuditKeys:
    return audit_keys_of(Config(env="test"))


def _fill(engine, n=5):
    for i in range(n):
        with engine.begin() as connection:
            audit.append(connection, actor="partner:bikes", action="eligibility",
                         person_key=f"p{i % 2}", detail={"perk": "bike", "answer": "yes", "i": i})


def _entries(k: int, n: int) -> list[dict]:
    return [{"actor": f"partner:{k}", "action": "eligibility", "person_key": f"p{i}",
             "detail": {"perk": "bike", "answer": "yes", "i": i, "名": "桂花"}} for i in range(n)]


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


def _leaf_indexes(engine) -> dict[int, int | None]:
    """Every entry's leaf index (None: not sealed)."""
    with engine.connect() as connection:
        return dict(connection.execute(select(audit_entries.c.id, audit_leaves.c.leaf_index)
                                       .select_from(audit_entries.outerjoin(
                                           audit_leaves,
                                           audit_leaves.c.entry_id == audit_entries.c.id)))
                    .all())


def _at_leaf(index: int):
    """The id of the entry at leaf `index`, as a subquery."""
    return (select(audit_leaves.c.entry_id).where(audit_leaves.c.leaf_index == index)
            .scalar_subquery())


def test_a_sealed_log_verifies_and_every_entry_is_proved(engine, keys):
    _fill(engine)
    before = transparency.verify_log(engine, keys.public)
    assert before.ok and before.unsealed == 5 and before.entries == 0
    head = sequencer.seal(engine, keys)
    assert head.tree_size == 5 and head.verifies(keys.public)
    assert sequencer.seal(engine, keys) is None  # nothing new: no new head
    verdict = transparency.verify_log(engine, keys.public)
    assert verdict.ok and (verdict.entries, verdict.heads, verdict.unsealed) == (5, 1, 0)
    mine = audit.entries_for(engine, "p0")
    assert [e["detail"]["i"] for e in mine] == [4, 2, 0]
    proofs = transparency.inclusion_proofs(engine, [e["leaf_index"] for e in mine], 5)
    for entry in mine:
        leaf = merkle.leaf_hash(entry["leaf_data"].encode())
        assert merkle.verify_inclusion(leaf, entry["leaf_index"], 5, proofs[entry["leaf_index"]],
                                       head.root_hash)


def test_heads_are_consistent_with_each_other(engine, keys):
    _fill(engine, 4)
    sizes = [sequencer.seal(engine, keys, batch=2).tree_size]
    for n in (1, 7, 3):
        audit.append_committed(engine, _entries(n, n))
        sizes.append(sequencer.seal(engine, keys, batch=3).tree_size)
    assert sizes == [4, 5, 12, 15]
    heads = {size: transparency.head_of_size(engine, size) for size in range(1, 16)}
    assert sorted(size for size, head in heads.items() if head) == [2, 4, 5, 8, 11, 12, 15]
    assert transparency.latest_head(engine) == heads[15]
    for first in (2, 5, 8, 12):
        for second in (12, 15):
            proof = transparency.consistency_proof(engine, first, second)
            assert merkle.verify_consistency(first, second, heads[first].root_hash,
                                             heads[second].root_hash, proof)
    assert not merkle.verify_consistency(4, 15, heads[5].root_hash, heads[15].root_hash,
                                         transparency.consistency_proof(engine, 4, 15))


def test_entries_for_pages_back_by_id_and_says_what_is_unsealed(engine, keys):
    _fill(engine, 6)
    sequencer.seal(engine, keys)
    audit.append_committed(engine, [{"actor": "partner:x", "action": "eligibility",
                                     "person_key": "p0", "detail": {"i": 99}}])
    newest = audit.entries_for(engine, "p0", limit=2)
    assert [e["detail"]["i"] for e in newest] == [99, 4] and newest[0]["leaf_index"] is None
    older = audit.entries_for(engine, "p0", limit=2, before=newest[-1]["id"])
    assert [e["detail"]["i"] for e in older] == [2, 0]
    assert all(e["leaf_index"] is not None for e in older)


def test_concurrent_appends_are_all_sealed_exactly_once(engine, keys):
    written: list[int] = []

    def committed(k):
        for i in range(12):
            written.extend(audit.append_committed(engine, _entries(k, 1 + i % 3)))

    def in_transaction():
        for i in range(8):
            with engine.begin() as connection:
                written.append(audit.append(connection, actor="citizen", action="x",
                                            person_key="p", detail={"i": i}))

    def sealing():
        for _ in range(10):
            with contextlib.suppress(sequencer.LockHeld):
                sequencer.seal(engine, keys, batch=7)

    errors = _all_at_once(*[lambda k=k: committed(k) for k in range(3)], in_transaction,
                          sealing, sealing)
    assert not errors
    sequencer.seal(engine, keys)
    assert len(written) == len(set(written)) == 3 * 24 + 8
    indexes = _leaf_indexes(engine)
    assert set(written) == indexes.keys()
    assert sorted(indexes.values()) == list(range(len(indexes)))  # dense, each once
    verdict = transparency.verify_log(engine, keys.public)
    assert verdict.ok and verdict.entries == len(indexes) and verdict.unsealed == 0


def test_a_seal_killed_before_its_commit_leaves_nothing_and_the_next_one_seals(
        engine, keys, monkeypatch):
    _fill(engine, 9)
    sequencer.seal(engine, keys, max_entries=3)

    def killed(connection):
        # everything but the commit is done: the nodes, the indexes and the head are written
        assert connection.execute(select(func.count()).select_from(audit_tree_heads)
                                  ).scalar_one() == 2
        raise KeyboardInterrupt("killed mid-seal")

    monkeypatch.setattr(sequencer, "_before_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        sequencer.seal(engine, keys)
    with engine.connect() as connection:
        nodes = connection.execute(select(func.count()).select_from(audit_tree)).scalar_one()
    assert nodes == 1  # the one node above three leaves: as before the seal
    assert sum(i is not None for i in _leaf_indexes(engine).values()) == 3
    assert transparency.latest_head(engine).tree_size == 3
    assert transparency.verify_log(engine, keys.public).unsealed == 6
    monkeypatch.undo()
    assert sequencer.seal(engine, keys).tree_size == 9
    verdict = transparency.verify_log(engine, keys.public)
    assert verdict.ok and verdict.entries == 9


def _sealed(engine, keys, n=8):
    _fill(engine, n)
    sequencer.seal(engine, keys, batch=3)
    _fill(engine, 2)
    sequencer.seal(engine, keys)
    assert transparency.verify_log(engine, keys.public).ok


def test_an_altered_entry_is_named(engine, keys):
    _sealed(engine, keys)
    with engine.begin() as connection:
        connection.execute(update(audit_entries).where(audit_entries.c.id == _at_leaf(4))
                           .values(detail={"perk": "bike", "answer": "no", "i": 3}))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and verdict.leaf_index == 4 and "altered" in verdict.problem


def test_an_entry_moved_to_another_person_is_named(engine, keys):
    """The leaf commits to the person key with the row's nonce: changing the row's person_key
    (leaf hash untouched) no longer matches the commitment."""
    _sealed(engine, keys)
    with engine.begin() as connection:
        connection.execute(update(audit_entries).where(audit_entries.c.id == _at_leaf(5))
                           .values(person_key="p9"))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and verdict.leaf_index == 5 and "altered" in verdict.problem


def test_an_entry_taken_off_the_queue_unsealed_is_found(engine, keys):
    _sealed(engine, keys)
    _fill(engine, 3)
    assert transparency.verify_log(engine, keys.public).unsealed == 3
    with engine.begin() as connection:
        lost = connection.execute(select(func.min(audit_unsealed.c.id))).scalar_one()
        connection.execute(delete(audit_unsealed).where(audit_unsealed.c.id == lost))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and "1 entry is neither sealed nor waiting" in verdict.problem


def _rebuild_tree(connection) -> None:
    """What a forger with write access does: every leaf and node recomputed from the rows."""
    leaves = [bytes(h) for h in connection.execute(
        select(audit_entries.c.leaf_hash).select_from(audit_leaves.join(
            audit_entries, audit_entries.c.id == audit_leaves.c.entry_id))
        .order_by(audit_leaves.c.leaf_index)).scalars()]
    connection.execute(delete(audit_tree))
    levels, idxs, hashes = merkle.CompactRange().extend(leaves)
    connection.execute(audit_tree.insert(), [{"level": a, "idx": b, "hash": c}
                                             for a, b, c in zip(levels, idxs, hashes,
                                                                strict=True) if a])


def test_a_rewrite_with_every_hash_recomputed_is_caught_by_the_signed_heads(engine, keys):
    _sealed(engine, keys)
    with engine.begin() as connection:
        row = connection.execute(select(audit_entries).where(
            audit_entries.c.id == _at_leaf(4))).one()
        forged = {"perk": "bike", "answer": "no", "i": 3}
        connection.execute(update(audit_entries).where(audit_entries.c.id == row.id).values(
            detail=forged, leaf_hash=audit.entry_hash(row.at, row.actor, row.person_key,
                                                      row.action, forged, row.nonce)))
        _rebuild_tree(connection)
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and "rewritten" in verdict.problem
    assert "size 6" in verdict.problem  # the first head covering leaf 4


def test_a_deleted_entry_is_found(engine, keys):
    _sealed(engine, keys)
    with engine.begin() as connection:
        connection.execute(delete(audit_entries).where(audit_entries.c.id == _at_leaf(2)))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and verdict.leaf_index == 2 and "missing" in verdict.problem


def test_a_deleted_tail_is_found_by_the_head_that_covers_it(engine, keys):
    _sealed(engine, keys)
    with engine.begin() as connection:
        last = connection.execute(select(func.max(audit_leaves.c.leaf_index))).scalar_one()
        connection.execute(delete(audit_entries).where(audit_entries.c.id == _at_leaf(last)))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and "not in the log" in verdict.problem


def test_a_forged_head_without_the_key_fails_its_signature(engine, keys):
    _sealed(engine, keys)
    forger = AuditKeys(keys.kid, Ed25519PrivateKey.generate())
    with engine.begin() as connection:
        row = connection.execute(select(audit_tree_heads).order_by(
            audit_tree_heads.c.tree_size.desc()).limit(1)).one()
        fake = transparency.signed_head(forger, row.tree_size, bytes(32), row.timestamp)
        connection.execute(update(audit_tree_heads).where(
            audit_tree_heads.c.tree_size == row.tree_size).values(
            root_hash=fake.root_hash, signature=fake.signature))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and "signature" in verdict.problem
    # and a head signed by a key nobody published is refused too
    assert not transparency.verify_log(engine, {"2": keys.public[keys.kid]}).ok


def test_a_tampered_tree_node_is_found(engine, keys):
    _sealed(engine, keys)
    with engine.begin() as connection:
        connection.execute(update(audit_tree).where(audit_tree.c.level == 1,
                                                    audit_tree.c.idx == 1)
                           .values(hash=bytes(32)))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and "node (1, 1)" in verdict.problem


def test_retired_keys_keep_verifying_old_heads(engine, keys):
    _fill(engine, 2)
    sequencer.seal(engine, keys)
    new = audit_keys_of(Config(env="test", audit_key=_new_key(), audit_kid="2",
                               audit_previous=(("1", _public_pem(keys)),)))
    _fill(engine, 2)
    sequencer.seal(engine, new)
    assert set(new.public) == {"1", "2"} and transparency.verify_log(engine, new.public).ok
    assert not transparency.verify_log(engine, {"2": new.public["2"]}).ok


def _new_key() -> str:
    from service.base.config import new_consent_key

    return new_consent_key()


def _public_pem(keys: AuditKeys) -> str:
    from cryptography.hazmat.primitives import serialization

    return keys.public[keys.kid].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_append_committed_needs_an_autocommit_connection_on_postgresql(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite appends inside a transaction of its own")
    with engine.connect() as connection, pytest.raises(ValueError, match="autocommit"):
        audit.append_committed(engine, _entries(1, 1), connection=connection)
    with audit.autocommit(engine).connect() as connection:
        ids = audit.append_committed(engine, _entries(1, 3), connection=connection)
    assert ids == sorted(ids) and len(ids) == 3
    with engine.connect() as connection:
        rows = connection.execute(select(audit_entries).where(audit_entries.c.id.in_(ids))
                                  .order_by(audit_entries.c.id)).all()
    assert [r.detail["i"] for r in rows] == [0, 1, 2]
    assert all(bytes(r.leaf_hash) == audit.entry_hash(r.at, r.actor, r.person_key, r.action,
                                                      r.detail, r.nonce) for r in rows)


def test_a_node_beyond_the_entries_is_found(engine, keys):
    _sealed(engine, keys)
    with engine.begin() as connection:
        connection.execute(audit_tree.insert().values(level=1, idx=999, hash=bytes(32)))
    verdict = transparency.verify_log(engine, keys.public)
    assert not verdict.ok and "beyond its entries" in verdict.problem
