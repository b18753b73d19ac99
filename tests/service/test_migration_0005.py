"""Migration 0005 carries a verified hash chain over into the Merkle log, which the next seal
signs and which then verifies; a broken chain is refused and nothing changes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import inspect, text

from service.base.config import Config
from service.base.keys import audit_keys_of
from service.rights import audit, sequencer, transparency
from service.store.tables import make_engine, migrate


def _old_link(prev: str, seq: int, at: dt.datetime, actor, person_key, action, detail) -> str:
    """The old chain's link as service/rights/audit.py computed it before issue 15."""
    stamp = at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    canonical = json.dumps([seq, stamp, actor, person_key, action, detail], sort_keys=True,
                           ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(prev.encode() + canonical).hexdigest()


def _old_chain(engine, n: int) -> str:
    """n rows of the old chain and its head, written as the old code did; the head's hash."""
    start = dt.datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=dt.UTC)
    prev = "0" * 64
    with engine.begin() as c:
        for seq in range(1, n + 1):
            at = start + dt.timedelta(minutes=seq)
            actor, person, action = f"partner:p{seq % 3}", f"k{seq % 4}", "eligibility"
            detail = {"perk": "bike", "answer": "yes" if seq % 2 else "no", "名": "桂花"}
            digest = _old_link(prev, seq, at, actor, person, action, detail)
            c.execute(text("INSERT INTO audit_log (seq, at, actor, person_key, action, detail, "
                           "prev_hash, hash) VALUES (:s, :at, :a, :p, :ac, :d, :prev, :h)"),
                      {"s": seq, "at": at, "a": actor, "p": person, "ac": action,
                       "d": json.dumps(detail, ensure_ascii=False), "prev": prev, "h": digest})
            prev = digest
        c.execute(text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
                  {"s": n, "h": prev})
    return prev


@pytest.fixture
def old_engine(database_url):
    engine = make_engine(database_url)
    migrate(engine, "0004")
    yield engine
    engine.dispose()


def test_a_populated_old_chain_migrates_and_verifies(old_engine):
    head = _old_chain(old_engine, 25)
    migrate(old_engine)
    tables = set(inspect(old_engine).get_table_names())
    assert "audit_log" not in tables and "audit_head" not in tables
    keys = audit_keys_of(Config(env="test"))
    assert transparency.verify_log(old_engine, keys.public).unsealed == 26
    assert sequencer.seal(old_engine, keys).tree_size == 26
    verdict = transparency.verify_log(old_engine, keys.public)
    assert verdict.ok and verdict.entries == 26
    k1 = audit.entries_for(old_engine, "k1")
    assert [e["detail"]["answer"] for e in k1] == ["yes"] * 7  # seq 1, 5, …, 25: odd
    assert k1[-1]["at"] == dt.datetime(2026, 3, 1, 8, 1, 0, 123456, tzinfo=dt.UTC)
    assert k1[-1]["detail"]["名"] == "桂花" and k1[-1]["leaf_index"] == 0
    with old_engine.connect() as c:
        marker = c.execute(text("SELECT e.actor, e.detail, l.leaf_index FROM audit_entries e "
                                "JOIN audit_leaves l ON l.entry_id = e.id WHERE "
                                "e.action = 'audit_migrated'")).one()
    detail = marker.detail if isinstance(marker.detail, dict) else json.loads(marker.detail)
    assert detail == {"legacy_rows": 25, "legacy_head": head} and marker.leaf_index == 25


@pytest.mark.parametrize("break_it", [
    "UPDATE audit_log SET detail = '{\"perk\": \"bike\", \"answer\": \"no\"}' WHERE seq = 7",
    "DELETE FROM audit_log WHERE seq = 4",
    "DELETE FROM audit_log WHERE seq = 10",  # the tail: only the head knows
])
def test_a_broken_old_chain_is_refused_and_nothing_changes(old_engine, break_it):
    _old_chain(old_engine, 10)
    with old_engine.begin() as c:
        c.execute(text(break_it))
    with pytest.raises(RuntimeError, match="refusing to migrate a broken chain"):
        migrate(old_engine)
    with old_engine.connect() as c:
        version = c.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == "0004"
    tables = set(inspect(old_engine).get_table_names())
    assert "audit_log" in tables and "audit_entries" not in tables


def test_a_new_database_starts_with_an_empty_log(engine):
    keys = audit_keys_of(Config(env="test"))
    verdict = transparency.verify_log(engine, keys.public)
    assert verdict.ok and (verdict.entries, verdict.heads, verdict.unsealed) == (0, 0, 0)
    assert sequencer.seal(engine, keys) is None
