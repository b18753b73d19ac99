"""One sequencer at a time, safe to kill: a second one is told the lock is held, and a
sequencer killed with SIGKILL in the middle of a big seal leaves the log as it was or fully
sealed, never half; the next seal carries on and the log verifies. The CLI says the same."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from service.base.config import Config, new_consent_key
from service.base.keys import audit_keys_of
from service.rights import audit, sequencer, transparency
from service.store.tables import audit_entries, audit_leaves, audit_tree, audit_tree_heads

ROOT = Path(__file__).resolve().parents[2]


def _postgres_only(engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the advisory lock and the kill are PostgreSQL's")


def _append(engine, n: int, chunk: int = 5_000) -> None:
    for start in range(0, n, chunk):
        audit.append_committed(engine, [
            {"actor": "partner:bikes", "action": "eligibility", "person_key": f"p{i % 97}",
             "detail": {"i": i, "answer": "yes"}} for i in range(start, min(n, start + chunk))])


def _state(engine) -> tuple[int, int, int]:
    """(heads, nodes, sealed entries)."""
    with engine.connect() as connection:
        count = lambda q: connection.execute(q).scalar_one()  # noqa: E731
        return (count(select(func.count()).select_from(audit_tree_heads)),
                count(select(func.count()).select_from(audit_tree)),
                count(select(func.count()).select_from(audit_leaves)))


def _nodes_of(size: int) -> int:
    """How many perfect nodes above the leaves a tree of `size` leaves has (level 0 is the
    entries' own leaf hashes): sum of size >> level, level ≥ 1."""
    return sum(size >> level for level in range(1, size.bit_length()))


def test_a_second_sequencer_is_told_the_lock_is_held(engine, monkeypatch, config, pem_keys):
    _postgres_only(engine)
    pem, keys = pem_keys
    _append(engine, 20)
    inside, release = threading.Event(), threading.Event()

    def hold(_connection):
        inside.set()
        assert release.wait(30)

    monkeypatch.setattr(sequencer, "_before_commit", hold)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(sequencer.seal(engine, keys)))
    worker.start()
    try:
        assert inside.wait(30)
        with pytest.raises(sequencer.LockHeld):
            sequencer.seal(engine, keys)
        from service.cli.main import main

        env = {"DATABASE_URL": config.database_url, "OSMANTHUS_ENV": "development",
               "OSMANTHUS_AUDIT_KEY": pem}
        result = CliRunner().invoke(main, ["audit", "seal"], env=env)
        assert result.exit_code == 0 and "holds the lock" in result.output
    finally:
        release.set()
        worker.join()
    assert first[0].tree_size == 20
    verdict = transparency.verify_log(engine, keys.public)
    assert verdict.ok and verdict.entries == 20


@pytest.fixture
def pem_keys():
    """An audit key as the environment gives it (PEM), and the keys made from it."""
    pem = new_consent_key()
    return pem, audit_keys_of(Config(env="test", audit_key=pem))


_SEALER = textwrap.dedent("""
    import os, sys, time
    from service.base.config import Config
    from service.base.keys import audit_keys_of
    from service.rights import sequencer
    from service.store.tables import make_engine

    if os.environ.get("PAUSE_BEFORE_COMMIT"):
        def paused(_connection):
            print("written", flush=True)
            time.sleep(60)
        sequencer._before_commit = paused
    keys = audit_keys_of(Config(env="test", audit_key=os.environ["AUDIT_KEY"]))
    print("sealing", flush=True)
    sequencer.seal(make_engine(sys.argv[1]), keys, batch=int(sys.argv[2]))
    print("done", flush=True)
""")


def _sealer(url: str, pem: str, batch: int, pause: bool) -> subprocess.Popen:
    env = {**os.environ, "AUDIT_KEY": pem, "PYTHONPATH": str(ROOT)}
    if pause:
        env["PAUSE_BEFORE_COMMIT"] = "1"
    return subprocess.Popen([sys.executable, "-c", _SEALER, url, str(batch)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)


def _seal_when_free(engine, keys):
    """The killed session's lock goes when the server sees it gone: wait for that."""
    for _ in range(100):
        try:
            return sequencer.seal(engine, keys)
        except sequencer.LockHeld:
            time.sleep(0.1)
    raise AssertionError("the killed sequencer's lock was never released")


@pytest.mark.parametrize("when", ["after the nodes are written", "at a random moment"])
def test_a_sequencer_killed_mid_seal_leaves_the_log_whole(engine, database_url, pem_keys,
                                                          when):
    _postgres_only(engine)
    pem, keys = pem_keys
    _append(engine, 1_000)
    sequencer.seal(engine, keys)  # an earlier head, so the kill lands on a grown tree
    _append(engine, 40_000)
    before = _state(engine)
    assert before == (1, _nodes_of(1_000), 1_000)
    sealer = _sealer(database_url, pem, 50_000, pause=when.startswith("after"))
    try:
        assert sealer.stdout.readline().strip() == "sealing"
        if when.startswith("after"):
            assert sealer.stdout.readline().strip() == "written"
        else:
            time.sleep(random.uniform(0.0, 0.6))  # somewhere in the seal's ~1 s
        sealer.send_signal(signal.SIGKILL)
    finally:
        sealer.wait(30)
        sealer.stdout.close()
    after = _state(engine)
    assert after in (before, (2, _nodes_of(41_000), 41_000))  # nothing, or everything
    head = _seal_when_free(engine, keys)
    assert (head is None) == (after != before)
    assert _state(engine)[1:] == (_nodes_of(41_000), 41_000)
    verdict = transparency.verify_log(engine, keys.public)
    assert verdict.ok and verdict.entries == 41_000 and verdict.unsealed == 0


def test_the_cli_seals_and_verifies_and_names_a_problem(config, pem_keys):
    from service.cli.main import main
    from service.store.tables import make_engine, migrate

    pem, keys = pem_keys
    engine = make_engine(config.database_url)
    migrate(engine)
    _append(engine, 5)
    env = {"DATABASE_URL": config.database_url, "OSMANTHUS_ENV": "development",
           "OSMANTHUS_AUDIT_KEY": pem}
    runner = CliRunner()
    sealed = runner.invoke(main, ["audit", "seal"], env=env)
    assert sealed.exit_code == 0 and "tree size 5" in sealed.output
    assert "nothing to seal" in runner.invoke(main, ["audit", "seal"], env=env).output
    good = runner.invoke(main, ["audit", "verify"], env=env)
    assert good.exit_code == 0 and "5 sealed entries, 1 signed tree heads" in good.output
    with engine.begin() as connection:
        connection.execute(audit_entries.update().where(audit_entries.c.id == select(
            audit_leaves.c.entry_id).where(audit_leaves.c.leaf_index == 3).scalar_subquery())
                           .values(detail={"i": 0}))
    bad = runner.invoke(main, ["audit", "verify"], env=env)
    assert bad.exit_code == 1 and "leaf 3 was altered" in bad.output
    other = runner.invoke(main, ["audit", "verify"], env={**env,
                                                           "OSMANTHUS_AUDIT_KEY": new_consent_key()})
    assert other.exit_code == 1 and "signature" in other.output
    engine.dispose()


def test_the_service_seals_on_its_own_when_asked(config):
    from service.app import create_app

    app = create_app(config.with_(audit_seal_seconds=0.1))
    engine = app.extensions["osmanthus.engine"]
    _append(engine, 3)
    deadline = time.monotonic() + 20
    while transparency.latest_head(engine) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    app.extensions["osmanthus.audit_sealer"].set()
    assert transparency.latest_head(engine).tree_size == 3
    engine.dispose()


def test_seal_follow_keeps_sealing_until_terminated(config, pem_keys, tmp_path):
    from service.store.tables import make_engine, migrate

    pem, keys = pem_keys
    engine = make_engine(config.database_url)
    migrate(engine)
    env = {**os.environ, "DATABASE_URL": config.database_url, "OSMANTHUS_ENV": "development",
           "OSMANTHUS_AUDIT_KEY": pem, "PYTHONPATH": str(ROOT)}
    follower = subprocess.Popen(
        [sys.executable, "-c", "from service.cli.main import main; main()", "audit", "seal",
         "--follow", "--every", "0.1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        for round_ in (1, 2):
            _append(engine, 4)
            deadline = time.monotonic() + 30
            while (head := transparency.latest_head(engine)) is None \
                    or head.tree_size < 4 * round_:
                assert time.monotonic() < deadline and follower.poll() is None
                time.sleep(0.05)
    finally:
        follower.send_signal(signal.SIGTERM)
        output = follower.communicate(timeout=30)[0]
    assert follower.returncode == 0, output
    assert "every 0.1 s" in output
    assert transparency.verify_log(engine, keys.public).entries == 8
    engine.dispose()


def test_heads_are_dated_by_the_service_clock_like_the_entries(engine, pem_keys):
    """One clock (issue 13): in the demo city's own time, a head signed now is dated in that
    time too, never in the machine's (else the page shows entries of 2026-01-01 under a head
    of another year); a later head never goes back."""
    import datetime as dt

    from service.base.clock import Clock

    _, keys = pem_keys
    frozen = Clock(dt.date(2026, 1, 1))
    _append(engine, 5)
    first = sequencer.seal(engine, keys, clock=frozen)
    assert first.timestamp_ms == int(frozen.now().timestamp() * 1000)
    _append(engine, 3)
    wall = sequencer.seal(engine, keys)  # the wall clock (production) is later still
    assert wall.timestamp_ms > first.timestamp_ms
    _append(engine, 2)
    earlier = sequencer.seal(engine, keys, clock=Clock(dt.date(2025, 6, 1)))
    assert earlier.timestamp_ms == wall.timestamp_ms  # held, never back in time
    assert transparency.verify_log(engine, keys.public).ok
