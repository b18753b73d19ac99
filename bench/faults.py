"""Faults under load, on private servers (never the shared 5432 / 6379), loopback only.

    .venv/bin/python bench/faults.py [--seconds 5] [--people 200] [--feed-rows 100000]

1. Redis killed (SIGKILL) and started again while wrk drives the citizen page
   (`GET /v1/me/score`, 8 connections) and partner eligibility (`POST /v1/partner/eligibility`,
   8 connections) against gunicorn (2 sync workers, as `osmanthus serve` on 2 cores). Four
   phases of `--seconds` each: before (Redis up, every page cached: the floor), during the
   outage, after the restart (Redis came back empty, so pages are cold), and after the cache
   was refilled. Once with rate limits failing open (the default), once failing closed. A poller
   records `/readyz` every 100 ms: how long after the kill it said `degraded`, how long after
   the restart it said `ready`; and when the rate limiter's keys reappear in Redis. Afterwards
   the audit log's eligibility rows are counted against the decisions wrk received (≥: wrk
   drops in-flight answers at the end of a run, the server still audits them) and the audit
   log is sealed and verified (signed heads, leaves, nodes).
2. PostgreSQL restarted (fast shutdown) during `osmanthus ingest` of a 100,000-row penalty
   feed with 5% bad rows: the ingest retries and finishes. Then PostgreSQL stopped mid-ingest
   for longer than the retry budget (`OSMANTHUS_INGEST_RETRY_SECONDS=2`): how long the command
   takes to fail, its exit status and message, and whether a re-run leaves exactly the good
   rows. Floor: the same command on a healthy server.
3. A 100,000-row feed per source, 5% bad rows spread evenly over every reason the validator can
   give (`tests/service/test_faults_feed.py`), ingested and reconciled exactly through the
   store. Floor: validating the same feed without storing it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OSMANTHUS_PERSON_KEY", "bench-faults-person-key")

from bench.common import machine, peak_rss_mb  # noqa: E402
from bench.wrk import (  # noqa: E402
    PAGE_REQUEST,
    WrkResult,
    ensure_wrk,
    rotating,
    run_wrk,
    serve,
)
from features.records import Source  # noqa: E402
from tests.service.test_faults_feed import reconcile, spoiled_feed  # noqa: E402
from tests.service.test_faults_servers import (  # noqa: E402
    PrivatePostgres,
    private_postgres,
    private_redis,
)

TODAY = dt.date(2026, 1, 1)
PARTNER, PERK = "city-bikes", "bike-deposit-free"
NO_LIMIT = "1000000000/minute"  # the limiter does its Redis work but never throttles the bench
OSMANTHUS = str(Path(sys.executable).with_name("osmanthus"))

PAGE = PAGE_REQUEST
ASK = ('return wrk.format("POST", "/v1/partner/eligibility", '
       '{["X-API-Key"] = %s, ["Content-Type"] = "application/json"}, items[i])')


def database(server: PrivatePostgres, name: str) -> str:
    """A new database on the private server; its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + f"/{name}"


# --- 1. Redis -----------------------------------------------------------------------------
def seed_api(url: str, redis_url: str, world, people: int) -> tuple[dict, list[str], list[str],
                                                                     str]:
    """Records, scores, the partner and a consent per person; (env, citizen tokens, consent
    request bodies, API key)."""
    from service.app import create_app
    from service.base.clock import clock_of
    from service.base.config import Config
    from service.rights.auth import issue_token
    from service.rights.consents import grant
    from service.rights.partners import add_partner
    from service.scoring.score import score_people
    from service.store.bulk import write_records

    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "OSMANTHUS_REGISTRY": str(world.registry),
           "OSMANTHUS_AS_OF": TODAY.isoformat(), "OSMANTHUS_PARTNER_RATE_LIMIT": NO_LIMIT,
           "OSMANTHUS_NUM_THREADS": "1"}
    config = Config.from_env({**os.environ, **env})
    app = create_app(config)
    engine = app.extensions["osmanthus.engine"]
    keys = world.people()["person_key"].head(people).to_list()
    write_records(engine, world.records.filter_persons(keys))
    score_people(engine, app.extensions["osmanthus.model"], keys, TODAY)
    api_key = add_partner(engine, PARTNER, "Public bicycle company", rotate=True)
    until = clock_of(config).today() + dt.timedelta(days=30)  # the service's clock
    bodies = [json.dumps({"consent_token": grant(engine, config, app.extensions["osmanthus.perks"],
                                                 key, PARTNER, [PERK], until)["token"],
                          "perk_id": PERK}) for key in keys]
    tokens = [issue_token(config, "citizen", key, minutes=240) for key in keys]
    engine.dispose()
    return env, tokens, bodies, api_key


class Poller(threading.Thread):
    """`/readyz` and Redis's rate-limit keys every 100 ms, with timestamps (bounded)."""

    def __init__(self, base: str, redis_port: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.base, self.redis_port, self.seconds = base, redis_port, seconds
        self.seen: list[tuple[float, str, bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import urllib.error
        import urllib.request

        import redis

        client = redis.Redis.from_url(  # from_url: no retries (Redis() retries 10× on a dead server)
            f"redis://127.0.0.1:{self.redis_port}/0", socket_timeout=0.2,
            socket_connect_timeout=0.2)
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=5) as response:
                    status = json.loads(response.read())["status"]
            except urllib.error.HTTPError as error:
                status = json.loads(error.read() or b"{}").get("status", str(error.code))
            except OSError:
                status = "no answer"
            try:
                limits = bool(client.keys("LIMITS*"))
            except redis.RedisError:
                limits = False
            self.seen.append((time.monotonic(), status, limits))
            time.sleep(0.1)

    def first(self, after: float, status: str | None = None, limits: bool = False) -> float | None:
        """Seconds from `after` until /readyz said `status` (or the limiter's keys were seen)."""
        for moment, said, keys in self.seen:
            if moment >= after and ((status is not None and said == status) or (limits and keys)):
                return moment - after
        return None


def both(base: str, seconds: float, page_lua: str, ask_lua: str) -> tuple[WrkResult, WrkResult]:
    """The page and eligibility, 8 connections each, at the same time."""
    out: dict[str, WrkResult] = {}
    runs = [threading.Thread(target=lambda k=k, lua=lua: out.__setitem__(
        k, run_wrk(base + "/", connections=8, seconds=seconds, threads=1, lua=lua)))
            for k, lua in (("page", page_lua), ("ask", ask_lua))]
    for run in runs:
        run.start()
    for run in runs:
        run.join(seconds + 120)
    return out["page"], out["ask"]


def warm(base: str, tokens: list[str]) -> None:
    import urllib.request

    for token in tokens:
        request = urllib.request.Request(base + "/v1/me/score",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def served_per_s(result: WrkResult) -> float:
    """Answers with a 2xx status per second (a fast refusal is not service)."""
    ok = sum(count for status, count in result.statuses.items() if 200 <= status < 300)
    return ok / result.duration_s if result.duration_s else 0.0


def eligibility_rows(url: str) -> tuple[int, bool]:
    from sqlalchemy import func, select

    from service.base.config import Config
    from service.base.keys import audit_keys_of
    from service.rights import sequencer
    from service.rights.transparency import verify_log
    from service.store.tables import audit_entries, make_engine

    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(audit_entries)
                                  .where(audit_entries.c.action == "eligibility")).scalar_one()
    keys = audit_keys_of(Config.from_env())  # the development key the servers seal with
    for _ in range(50):  # a server's own sealer may hold the lock for a moment
        try:
            sequencer.seal(engine, keys)
            break
        except sequencer.LockHeld:
            time.sleep(0.1)
    ok = verify_log(engine, keys.public).ok
    engine.dispose()
    return rows, ok


def redis_outage(args, world, work: Path) -> list[str]:
    lines = ["| limits | phase | page req/s | page p99 ms | ask req/s | ask p99 ms | 2xx | 503 | "
             "other 5xx | socket err | 2xx/s × before |", "|---|---|---|---|---|---|---|---|---|"
             "---|---|"]
    notes = []
    with private_postgres() as pg, private_redis() as rd:
        url = database(pg, "api")
        env, tokens, bodies, api_key = seed_api(url, rd.url, world, args.people)
        page_lua = rotating(tokens, PAGE, work)
        ask_lua = rotating(bodies, ASK % json.dumps(api_key), work)
        for mode, fail_open in (("open", "1"), ("closed", "0")):
            audited_before, _ = eligibility_rows(url)
            with serve("service.wsgi:app", {**env, "OSMANTHUS_RATE_LIMIT_FAIL_OPEN": fail_open},
                       workers=2, ready_path="/healthz") as base:
                warm(base, tokens)  # every page cached, as in steady state
                _, warm_ask = both(base, 1, page_lua, ask_lua)  # warm-up: connections open
                poller = Poller(base, rd.port, 6 * args.seconds + 60)
                poller.start()
                phases, answered = {}, warm_ask.statuses.get(200, 0)
                phases["before"] = both(base, args.seconds, page_lua, ask_lua)
                killed = time.monotonic()
                rd.kill()
                phases["outage"] = both(base, args.seconds, page_lua, ask_lua)
                restarted = time.monotonic()
                rd.start()
                phases["after"] = both(base, args.seconds, page_lua, ask_lua)
                warm(base, tokens)  # the restarted Redis came back empty: refill the cache
                phases["refilled"] = both(base, args.seconds, page_lua, ask_lua)
                time.sleep(1.0)
                poller.stop.set()
                poller.join(10)
            floor = sum(served_per_s(r) for r in phases["before"])
            for phase, (page, ask) in phases.items():
                statuses: dict[int, int] = {}
                for result in (page, ask):
                    for status, count in result.statuses.items():
                        statuses[status] = statuses.get(status, 0) + count
                answered += ask.statuses.get(200, 0)
                ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
                other = sum(c for s, c in statuses.items() if s >= 500 and s != 503)
                lines.append(
                    f"| fail {mode} | {phase} | {page.requests_per_s:,.0f} | "
                    f"{page.latency_p99_ms:.1f} | {ask.requests_per_s:,.0f} | "
                    f"{ask.latency_p99_ms:.1f} | {ok:,} | {statuses.get(503, 0):,} | {other} | "
                    f"{page.socket_errors + ask.socket_errors} | "
                    f"{(served_per_s(page) + served_per_s(ask)) / floor:.2f} |")
                print(f"  redis fail-{mode} {phase:<7} page {page.line()}\n"
                      f"  {'':18}ask  {ask.line()}", flush=True)
            audited, chain_ok = eligibility_rows(url)
            audited -= audited_before
            degraded = poller.first(killed, "degraded")
            ready = poller.first(restarted, "ready")
            window = (None if degraded is None or ready is None
                      else restarted + ready - (killed + degraded))
            limiter_back = poller.first(restarted, limits=True)
            notes.append(
                f"fail {mode}: /readyz said degraded {_s(degraded)} after the kill and ready "
                f"{_s(ready)} after the restart, so it said degraded for {_s(window)} while "
                f"Redis was down {restarted - killed:.1f} s (polled every 0.1 s; each poll waits "
                f"its turn behind wrk's 16 connections on the 2 workers); the limiter's keys were back in Redis "
                f"{_s(limiter_back)} after the restart; eligibility decisions received "
                f"{answered:,}, audit rows {audited:,} (difference {audited - answered:+,}; "
                f"between 0 and {8 * 5} is right: wrk drops the answers in flight on its 8 "
                f"connections when each of its 5 runs ends, the server still audits them), "
                f"audit log {'verifies' if chain_ok else 'does NOT verify'}")
            print("  " + notes[-1], flush=True)
    return lines + [""] + [f"- {n}" for n in notes]


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


# --- 2. PostgreSQL during an ingest ---------------------------------------------------------
def _records(url: str, source: Source) -> int:
    from sqlalchemy import create_engine, func, select

    from service.store.tables import RECORD_TABLES

    engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            table = RECORD_TABLES[source]
            return connection.execute(select(func.count()).select_from(table)).scalar_one()
    except Exception:  # noqa: BLE001 - not migrated yet, or the server is away
        return -1
    finally:
        engine.dispose()


def _cli(url: str, feed: Path, retry: float | None = None) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url}
    if retry is not None:
        env["OSMANTHUS_INGEST_RETRY_SECONDS"] = str(retry)
    return subprocess.Popen([OSMANTHUS, "ingest", str(feed), "--source", "penalty",
                             "--no-rescore"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_rows(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while _records(url, Source.PENALTY) <= 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the ingest ended (or stalled) before any row was stored")
        time.sleep(0.02)


def postgres_restart(args, work: Path) -> list[str]:
    from model.bundle import sha256_file
    from service.store.tables import make_engine

    frame, expected = spoiled_feed(Source.PENALTY, args.feed_rows, 0.05, seed=7)
    feed = work / "penalty.csv"
    frame.write_csv(feed)
    feed_id = sha256_file(feed)
    rows = []
    with private_postgres() as pg:
        def finish(url: str, process: subprocess.Popen, began: float) -> tuple[float, int, str]:
            out, err = process.communicate(timeout=600)
            return time.monotonic() - began, process.returncode, out + err

        url = database(pg, "clean")
        began = time.monotonic()
        floor, code, _ = finish(url, _cli(url, feed), began)
        assert code == 0
        rows.append(("healthy server (floor)", floor, code, "—", "exact" if _exact(
            url, feed_id, expected, args.feed_rows) else "NOT EXACT", 1.0))

        url = database(pg, "restart")
        began = time.monotonic()
        process = _cli(url, feed)
        _wait_for_rows(url, process)
        away = pg.restart()
        seconds, code, output = finish(url, process, began)
        retries = output.count("retrying")
        rows.append((f"restarted mid-ingest (away {away:.1f} s)", seconds, code,
                     f"{retries} retries logged, traceback: {'Traceback' in output}",
                     "exact" if code == 0 and _exact(url, feed_id, expected, args.feed_rows)
                     else "NOT EXACT", seconds / floor))

        url = database(pg, "fail")
        began = time.monotonic()
        process = _cli(url, feed, retry=2)
        _wait_for_rows(url, process)
        pg.stop()
        stopped = time.monotonic()
        _, code, output = finish(url, process, began)
        to_fail = time.monotonic() - stopped
        pg.start()
        engine = make_engine(url)
        with engine.connect() as connection:
            from sqlalchemy import select

            from service.store.tables import feeds

            status = connection.execute(select(feeds.c.status)
                                        .where(feeds.c.feed_id == feed_id)).scalar_one()
        engine.dispose()
        partial = _records(url, Source.PENALTY)
        message = [line for line in output.splitlines() if line.startswith("Error:")]
        rows.append(("down past the 2 s retry budget", to_fail, code,
                     f"feed '{status}', {partial:,} rows stored, traceback: "
                     f"{'Traceback' in output}", "—", to_fail / floor))
        began = time.monotonic()
        seconds, code, _ = finish(url, _cli(url, feed), began)
        rows.append(("re-run after it", seconds, code, "—",
                     "exact" if code == 0 and _exact(url, feed_id, expected, args.feed_rows)
                     else "NOT EXACT", seconds / floor))
    lines = ["| `osmanthus ingest` (100k-row penalty feed, 5% bad) | seconds | exit | notes | "
             "store afterwards | × floor |", "|---|---|---|---|---|---|"]
    for label, seconds, code, notes, exact, ratio in rows:
        lines.append(f"| {label} | {seconds:.1f} | {code} | {notes} | {exact} | {ratio:.2f} |")
        print(f"  {label}: {seconds:.1f} s, exit {code}, {notes}, {exact}", flush=True)
    if message:
        lines += ["", f"The failing run's message (stderr, whole): `{message[0]}`"]
    return lines


def _exact(url: str, feed_id: str, expected, rows: int) -> bool:
    from service.store.tables import make_engine

    engine = make_engine(url)
    try:
        reconcile(engine, feed_id, Source.PENALTY, expected, rows)
        return True
    except AssertionError as error:
        print(f"  NOT EXACT: {error}", flush=True)
        return False
    finally:
        engine.dispose()


# --- 3. every kind of bad row ---------------------------------------------------------------
def reconcile_feeds(args, work: Path) -> list[str]:
    from features.validate import validate_feed
    from service.store.ingest import ingest_feed
    from service.store.tables import make_engine, migrate

    lines = ["| source | rows read | stored | quarantined | kinds of bad row | per kind (min–max)"
             " | validate s (floor) | ingest s | rows/s | × floor | reconciles |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    with private_postgres() as pg:
        engine = make_engine(database(pg, "feeds"))
        migrate(engine)
        for n, source in enumerate(Source):
            frame, expected = spoiled_feed(source, args.feed_rows, 0.05, seed=n)
            path = work / f"{source.value}.csv"
            frame.write_csv(path)
            began = time.perf_counter()
            validate_feed(path, source)
            floor = time.perf_counter() - began
            began = time.perf_counter()
            summary = ingest_feed(engine, path, source)
            seconds = time.perf_counter() - began
            result = reconcile(engine, summary.feed_id, source, expected, args.feed_rows)
            counts = result.by_kind.values()
            lines.append(f"| {source.value} | {result.rows_read:,} | {result.stored:,} | "
                         f"{result.quarantined:,} | {len(result.by_kind)} | "
                         f"{min(counts)}–{max(counts)} | {floor:.2f} | {seconds:.2f} | "
                         f"{args.feed_rows / seconds:,.0f} | {seconds / floor:.1f} | exact |")
            print("  " + lines[-1], flush=True)
        engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each wrk phase")
    parser.add_argument("--people", type=int, default=200, help="residents served")
    parser.add_argument("--feed-rows", type=int, default=100_000)
    parser.add_argument("--only", choices=["redis", "postgres", "feeds"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["redis", "postgres", "feeds"])
    print(machine(), flush=True)
    ensure_wrk()
    out = []
    with tempfile.TemporaryDirectory(prefix="osm-faults-") as folder:
        work = Path(folder)
        if "redis" in only:
            from tests.service.world import build_world

            began = time.perf_counter()
            world = build_world(work / "world")
            print(f"  world built: {time.perf_counter() - began:.1f} s", flush=True)
            out += ["### Redis killed under load", ""] + redis_outage(args, world, work) + [""]
        if "postgres" in only:
            out += ["### PostgreSQL during an ingest", ""] + postgres_restart(args, work) + [""]
        if "feeds" in only:
            out += [f"### {args.feed_rows:,}-row feeds, 5% bad rows of every kind", ""]
            out += reconcile_feeds(args, work) + [""]
    out.append(f"peak memory {peak_rss_mb():,.0f} MiB (this process and its children)")
    print("\n" + "\n".join(out))


if __name__ == "__main__":
    main()
