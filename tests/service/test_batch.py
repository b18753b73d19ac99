"""Batch scoring on shards: every person exactly once per run, equal to online scoring,
idempotent, resumable, and surviving a Dask worker killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from service.scoring import batch
from service.scoring.batch import ShardJob, batch_score, boundary, run_shard, shard_of, shard_status
from service.scoring.score import ensure_people, score_people
from service.scoring.serving import load_serving
from service.store.bulk import write_records
from service.store.tables import scores
from tests.service.conftest import DEMO_TODAY

COMPARED = ("score", "raw_score", "base_points", "band", "points", "reasons", "model_version",
            "as_of")


@pytest.fixture(autouse=True)
def _release_worker_caches():
    yield
    batch.release()  # shards run in this process keep an engine per database


def _population(engine, world, with_records: int, without_records: int = 2,
                records_only: int = 10) -> list[str]:
    """The records of the city's first `with_records` people (the last `records_only` of
    those who have any absent from the `people` table), plus `without_records` people in
    `people` with no record stored."""
    keys = world.people()["person_key"].to_list()
    records = world.records.filter_persons(keys[:with_records])
    stored = records.persons().to_list()  # (a few of the city's people have no record)
    bare = keys[with_records:with_records + without_records]
    write_records(engine, records)
    with engine.begin() as connection:
        ensure_people(connection, stored[:len(stored) - records_only] + bare)
    return sorted(stored + bare)


def _rows(engine, run_id: str) -> dict[str, dict]:
    with engine.connect() as connection:
        found = connection.execute(select(scores).where(scores.c.run_id == run_id)).all()
    rows = [dict(r._mapping) for r in found]
    by_key = {r["person_key"]: r for r in rows}
    assert len(by_key) == len(rows), "a person has two rows in one run"
    return by_key


def _close(ours, theirs) -> bool:
    """Equal, numbers to 1e-9, through nested dicts and lists (points, reasons)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(_close(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(_close, ours, theirs))
    if isinstance(ours, float | int) and isinstance(theirs, float | int) \
            and not isinstance(ours, bool):
        return abs(ours - theirs) <= 1e-9
    return ours == theirs


def _assert_same_scores(ours: dict[str, dict], reference: dict[str, dict]) -> None:
    assert ours.keys() == reference.keys()
    for key, row in ours.items():
        for column in COMPARED:
            assert _close(row[column], reference[key][column]), (column, key)


def _job(database_url, world, run_id: str, shard: int, shards: int, **extra) -> ShardJob:
    return ShardJob(database_url, str(world.registry), world.version, shard, shards, DEMO_TODAY,
                    run_id, **extra)


def test_shards_partition_the_key_space():
    keys = [format(p, "08x") + "0" * 56 for p in (0, 1, 2**31 - 1, 2**31, 2**32 - 1)]
    for shards in (1, 2, 3, 7):
        for key in keys:
            shard = shard_of(key, shards)
            low, high = boundary(shard, shards), boundary(shard + 1, shards)
            assert (low is None or key >= low) and (high is None or key < high)
    assert [shard_of(k, 2) for k in keys] == [0, 0, 0, 1, 1]


def test_local_shards_score_everyone_once_as_online_scoring_does(database_url, engine, world):
    everyone = _population(engine, world, 60)
    run = batch_score(database_url, world.registry, shards=3, as_of=DEMO_TODAY,
                      run_id="local-3", workers=2, chunk=7)
    assert (run.people, run.scored, run.missing, run.model_version) == (
        len(everyone), len(everyone), 0, world.version)
    ours = _rows(engine, "local-3")
    assert sorted(ours) == everyone
    assert {len(batch.shards_of(everyone, 3)[s]) for s in range(3)} != {0}

    score_people(engine, load_serving(world.registry), everyone, DEMO_TODAY, run_id="online")
    _assert_same_scores(ours, _rows(engine, "online"))


def test_running_a_run_again_changes_nothing(database_url, engine, world):
    _population(engine, world, 30)
    first = batch_score(database_url, world.registry, shards=3, as_of=DEMO_TODAY,
                        run_id="again", workers=1)
    before = _rows(engine, "again")

    again = batch_score(database_url, world.registry, shards=3, run_id="again", workers=1)
    assert (again.scored, again.already_done, again.as_of) == (0, [0, 1, 2], DEMO_TODAY)
    for shard in range(3):  # and each shard forced through the job itself
        assert run_shard(_job(database_url, world, "again", shard, 3)).scored == 0
    assert _rows(engine, "again") == before
    assert first.scored == len(before)


def test_an_interrupted_run_resumes_its_unfinished_shards_once(database_url, engine, world):
    everyone = _population(engine, world, 45)
    first = run_shard(_job(database_url, world, "cut", 0, 3, chunk=5))  # then the pool died
    assert first.scored == len(batch.shards_of(everyone, 3).get(0, []))
    assert [shard_status(engine, s, 3, "cut").done for s in range(3)] == [True, False, False]
    # shard 1 died halfway: only its first chunk was committed
    run_shard(_job(database_url, world, "cut", 1, 3))
    with engine.begin() as connection:
        half = sorted(batch.shards_of(everyone, 3)[1])[5:]
        connection.execute(scores.delete().where(scores.c.run_id == "cut",
                                                 scores.c.person_key.in_(half)))

    resumed = batch_score(database_url, world.registry, shards=3, run_id="cut", workers=1)
    assert resumed.already_done == [0]
    assert resumed.scored == len(everyone) - first.scored - 5
    assert resumed.complete
    assert sorted(_rows(engine, "cut")) == everyone
    score_people(engine, load_serving(world.registry), everyone, DEMO_TODAY, run_id="online")
    _assert_same_scores(_rows(engine, "cut"), _rows(engine, "online"))


def test_a_resumed_run_keeps_its_date(database_url, engine, world):
    import datetime as dt

    from service.scoring.batch import BatchError

    _population(engine, world, 5, records_only=0)
    batch_score(database_url, world.registry, shards=2, as_of=DEMO_TODAY, run_id="dated",
                workers=1)
    with pytest.raises(BatchError, match="as of"):
        batch_score(database_url, world.registry, shards=2, as_of=dt.date(2025, 6, 1),
                    run_id="dated", workers=1)


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_dask_cluster_loses_a_worker_and_still_scores_everyone_once(database_url, engine, world):
    from dask.distributed import Client, LocalCluster

    everyone = _population(engine, world, 240)
    shards, run_id = 8, "dask-kill"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["run"] = batch_score(database_url, world.registry, shards=shards,
                                             engine="dask", scheduler=cluster.scheduler_address,
                                             as_of=DEMO_TODAY, run_id=run_id, chunk=5)
            except BaseException as error:  # noqa: BLE001 - reported by the assertions below
                outcome["error"] = error

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        victim, deadline = None, time.monotonic() + 60
        while victim is None and time.monotonic() < deadline and runner.is_alive():
            with engine.connect() as connection:  # wait until a chunk is written
                written = connection.execute(select(func.count()).select_from(scores)
                                             .where(scores.c.run_id == run_id)).scalar_one()
            busy = [w for w, tasks in client.processing().items() if tasks and w in pids]
            if written and busy:
                victim = busy[0]
            else:
                time.sleep(0.05)
        assert victim is not None, "the run ended before a worker could be killed"
        os.kill(pids[victim], signal.SIGKILL)  # a worker we started, lost mid-shard
        killed_at = written
        runner.join(timeout=90)
        assert not runner.is_alive(), "the run did not finish after a worker was lost"

    assert "error" not in outcome, outcome.get("error")
    result = outcome["run"]
    assert killed_at < len(everyone)
    assert (result.complete, result.people) == (True, len(everyone))
    # the lost worker's committed chunks stay; its shard's retry scores only the rest
    assert result.scored <= len(everyone)
    assert sorted(_rows(engine, run_id)) == everyone
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(scores)
                                  .where(scores.c.run_id == run_id)).scalar_one() == len(everyone)


def test_the_batch_command_scores_and_resumes(database_url, engine, world, monkeypatch):
    from click.testing import CliRunner

    from service.cli.main import main

    everyone = _population(engine, world, 12, records_only=2)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OSMANTHUS_REGISTRY", str(world.registry))
    monkeypatch.setenv("OSMANTHUS_AS_OF", DEMO_TODAY.isoformat())
    argv = ["batch", "score", "--shards", "2", "--workers", "1", "--run-id", "cli", "--quiet"]
    first = CliRunner().invoke(main, argv)
    assert first.exit_code == 0, first.output
    assert f"scored {len(everyone)} people" in first.output and "people/s" in first.output
    again = CliRunner().invoke(main, argv)
    assert again.exit_code == 0, again.output
    assert "scored 0 people" in again.output and "2 already done" in again.output
    assert len(_rows(engine, "cli")) == len(everyone)
    unused = replace(_job(database_url, world, "cli", 0, 2), shard=1)
    assert run_shard(unused).scored == 0
