"""The API under load: gunicorn on 127.0.0.1 driven by wrk, each endpoint beside its floor.

    .venv/bin/python bench/api.py [--database postgresql|sqlite|both] [--seconds 8]
                                  [--batch-sizes 100 1000] [--cpu-only]
                                  [--workers 2 8] [--seal-entries 500000] [--decisions-only]
                                  [--profile 40]

What it builds (all torn down afterwards): the service tests' small world (a 2,000-person
city and a champion trained on it), its records stored and everyone scored as of 2025-07-01 and
2026-01-01 (a two-point trend), `--cold-people` more people whose score rows are copies of
real ones under new person keys (so the cold page has enough distinct people), the partner
`city-bikes` with an API key, and a consent to ask about `bike-deposit-free` from each of the
2,000. The store is PostgreSQL in a fresh schema (`DATABASE_URL_TEST`, default the local test
database) and/or a SQLite file; the cache and rate limits are Redis (`--redis-url`, a db number
of the bench's own) — at the end only the bench's own keys are deleted, never the db.

What it measures, at 16 and 64 connections, under identical gunicorn settings (2 sync workers,
as `osmanthus serve` on this 2-core machine):
- floor: `bench/floor_app.py`, a bare Flask constant JSON (measured before and after the app;
  ratios use the mean of the two, as the machine is shared);
- page cached: `GET /v1/me/score` for 200 people over and over, every page warmed first;
- page cold: `GET /v1/me/score`, each request a different person whose page is not cached
  (the bench's page keys are deleted before the run; each wrk thread walks its own share of
  the people, and a run that wraps around is flagged);
- eligibility single: `POST /v1/partner/eligibility`, each request a different consent;
- eligibility batch: `POST /v1/partner/eligibility/batch` with each of `--batch-sizes`
  questions (a decision per question).
Then, in this process, each endpoint through the Flask test client beside the floor app: the
server's CPU per request, a ratio the shared machine's load distorts far less than wrk's
(`--cpu-only` runs just that: no gunicorn, no wrk).
Issue 15 (PostgreSQL only; `bench/api_audit.py`): single partner decisions beside a floor that
reads one row by an indexed key and inserts one (`bench/floor_app.py` `POST /decide`, same
gunicorn, same PostgreSQL) at `--decision-connections` (16) for each of `--workers` (2 and 8),
with the in-service sealer on (`OSMANTHUS_AUDIT_SEAL_SECONDS=1`), and the seal lag of those
decisions' entries (head signed − entry appended); then `--seal-entries` more entries appended
and sealed, timed (entries sealed/s), and the whole log verified. `--decisions-only` runs just
these (and the CPU table), not the pages and batches.
Every decision appends its audit entry; afterwards the log is verified (`verify_log`: every
signed head, every leaf, every node) and the entries counted against the decisions answered. The partner limit is lifted through configuration
(`OSMANTHUS_PARTNER_RATE_LIMIT=1000000000/minute`), so the limiter still does its Redis work on
every request but never throttles the bench.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_audit import (  # noqa: E402
    check_log,
    libpq,
    make_floor,
    measure_scaling,
    scaling_goals,
    scaling_table,
    sealing_rate,
)
from bench.common import create_schema, drop_schemas, machine, peak_rss_mb  # noqa: E402
from bench.wrk import (  # noqa: E402
    PAGE_REQUEST,
    POST_REQUEST,
    WrkResult,
    ensure_wrk,
    rotating,
    run_wrk,
    serve,
)

POSTGRES_URL = os.environ.get("DATABASE_URL_TEST",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TODAY = dt.date(2026, 1, 1)
EARLIER = dt.date(2025, 7, 1)
PARTNER, PERK = "city-bikes", "bike-deposit-free"
NO_LIMIT = "1000000000/minute"
WORKERS = 2  # as `osmanthus serve` on 2 cores (one per CPU), and the floor


@dataclass
class Store:
    """A seeded store and what the load needs: tokens, API key, settings for gunicorn."""

    name: str
    url: str
    env: dict[str, str]
    version: str
    citizen_tokens: list[str]  # real people, for the cached page
    cold_tokens: list[str]  # real people and copies, for the cold page
    consent_tokens: list[str]
    api_key: str
    drop: object  # callable tearing the store down
    keys: list[str]  # the real people's person keys (the read+insert floor reads them)


def _step(label: str, began: float) -> None:
    print(f"  {label}: {time.perf_counter() - began:.1f} s", flush=True)


def build_world(root: Path):
    from tests.service.world import build_world as build

    began = time.perf_counter()
    world = build(root)
    _step("world (2,000-person city, champion trained)", began)
    return world


def _postgres_schema() -> tuple[str, object]:
    url, name = create_schema(POSTGRES_URL, "bench_api")
    return url, lambda: drop_schemas(POSTGRES_URL, name)


def seed_store(name: str, world, root: Path, redis_url: str, cold_people: int) -> Store:
    """Records, scores (two as-of dates), copies for the cold page, partner and consents."""
    from sqlalchemy import insert, select

    from service.app import create_app
    from service.base.clock import clock_of
    from service.base.config import Config
    from service.rights.auth import issue_token
    from service.rights.consents import grant
    from service.rights.partners import add_partner
    from service.scoring.score import score_people
    from service.store.bulk import write_records
    from service.store.tables import people, scores

    if name == "postgresql":
        url, drop = _postgres_schema()
    else:
        url, drop = f"sqlite:///{root / 'bench-api.db'}", (lambda: None)
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "OSMANTHUS_REGISTRY": str(world.registry),
           "OSMANTHUS_AS_OF": TODAY.isoformat(),
           # the city's clock runs from TODAY at real speed (as the demo's does), so an entry's
           # time and its head's are on one running clock and the seal lag means something
           "OSMANTHUS_CLOCK_SINCE": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "OSMANTHUS_PARTNER_RATE_LIMIT": NO_LIMIT,
           "OSMANTHUS_NUM_THREADS": "1"}
    config = Config.from_env(env)
    app = create_app(config)
    engine, serving = app.extensions["osmanthus.engine"], app.extensions["osmanthus.model"]
    keys = world.people()["person_key"].to_list()
    began = time.perf_counter()
    write_records(engine, world.records)
    for as_of in (EARLIER, TODAY):
        score_people(engine, serving, keys, as_of)
    _step(f"{name}: records stored, {len(keys):,} people scored twice", began)

    began = time.perf_counter()
    with engine.connect() as connection:
        latest = [dict(r._mapping) for r in connection.execute(
            select(scores).where(scores.c.as_of == TODAY).order_by(scores.c.id))]
    copies = [hashlib.sha256(f"bench-copy-{i}".encode()).hexdigest() for i in range(cold_people)]
    now = dt.datetime.now(dt.UTC)
    for start in range(0, len(copies), 2_000):
        chunk = copies[start:start + 2_000]
        rows = []
        for i, key in enumerate(chunk, start=start):
            row = {k: v for k, v in latest[i % len(latest)].items() if k != "id"}
            rows.append({**row, "person_key": key, "run_id": None})
        with engine.begin() as connection:
            connection.execute(insert(people), [{"person_key": k, "first_seen": now}
                                                for k in chunk])
            connection.execute(insert(scores), rows)
    _step(f"{name}: {cold_people:,} more people (copies of real score rows)", began)

    began = time.perf_counter()
    api_key = add_partner(engine, PARTNER, "Public bicycle company", rotate=True)
    perk_config = app.extensions["osmanthus.perks"]
    until = clock_of(config).today() + dt.timedelta(days=30)  # the service's clock
    consent_tokens = [grant(engine, config, perk_config, key, PARTNER, [PERK], until)["token"]
                      for key in keys]
    _step(f"{name}: partner and {len(consent_tokens):,} consents", began)

    def citizen(key: str) -> str:
        return issue_token(config, "citizen", key, minutes=240)

    cold = keys + copies
    random.Random(0).shuffle(cold)
    store = Store(name, url, env, serving.version, [citizen(k) for k in keys[:200]],
                  [citizen(k) for k in cold], consent_tokens, api_key, drop, keys)
    engine.dispose()
    return store


def _get(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def _post(url: str, headers: dict[str, str], body: str) -> dict:
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def forget_pages(redis_url: str, version: str) -> int:
    """Delete this bench's cached pages (its own model version's keys only)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"osmanthus:me:{version}:*", count=5_000))
    for start in range(0, len(keys), 5_000):
        client.delete(*keys[start:start + 5_000])
    return len(keys)


def forget_limits(redis_url: str, api_key: str) -> int:
    """Delete the rate-limit counters of the bench's own API key."""
    import redis

    bucket = hashlib.sha256(b"osmanthus-rate-limit:" + api_key.encode()).hexdigest()[:32]
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{bucket}*", count=5_000))
    if keys:
        client.delete(*keys)
    return len(keys)


def measure_app(store: Store, args, work: Path) -> tuple[dict, int]:
    """Every endpoint at every connection count; returns results and decisions answered."""
    results: dict[tuple[str, int], tuple[WrkResult, int]] = {}
    answered = 0
    key_lua = json.dumps(store.api_key)
    single = [json.dumps({"consent_token": t, "perk_id": PERK}) for t in store.consent_tokens]
    rng = random.Random(1)
    batch_cases = []
    for size in args.batch_sizes:
        bodies = [json.dumps({"requests": [{"consent_token": t, "perk_id": PERK}
                                           for t in rng.sample(store.consent_tokens, size)]})
                  for _ in range(max(8, 6_400 // size))]
        batch_cases.append((f"eligibility batch of {size:,}", bodies, size))
    page_cached = rotating(store.citizen_tokens, PAGE_REQUEST, work)
    page_cold = rotating(store.cold_tokens, PAGE_REQUEST, work)
    one = rotating(single, POST_REQUEST % ('"/v1/partner/eligibility"', key_lua), work)
    batch_path = POST_REQUEST % ('"/v1/partner/eligibility/batch"', key_lua)
    with serve("service.wsgi:app", store.env, workers=WORKERS, ready_path="/healthz") as base:
        for _label, bodies, size in batch_cases:  # every question answered, none refused
            answer = _post(base + "/v1/partner/eligibility/batch", {"X-API-Key": store.api_key},
                           bodies[0])
            assert all("eligible" in r for r in answer["results"]), answer["results"][:2]
            answered += size
        run_wrk(base + "/", connections=16, seconds=2, lua=page_cached)  # warm-up
        for connections in args.connections:
            for token in store.citizen_tokens:  # every cached page warm
                _get(base + "/v1/me/score", {"Authorization": f"Bearer {token}"})
            cases = [("page cached", page_cached, 1), ("page cold", page_cold, 1),
                     ("eligibility single", one, 1),
                     *[(label, rotating(bodies, batch_path, work), size)
                       for label, bodies, size in batch_cases]]
            for label, lua, per_request in cases:
                if label == "page cold":
                    forget_pages(args.redis_url, store.version)
                result = run_wrk(base + "/", connections=connections, seconds=args.seconds,
                                 lua=lua)
                results[(label, connections)] = (result, per_request)
                if label.startswith("eligibility"):
                    answered += result.statuses.get(200, 0) * per_request
                note = ""
                if label == "page cold" and result.requests > len(store.cold_tokens):
                    note = f"  (WRAPPED: {result.requests:,} requests > people)"
                print(f"  {store.name:<10} {label:<24} c={connections:<3} {result.line()}{note}",
                      flush=True)
    return results, answered


def cpu_per_request(store: Store, redis_url: str, batch_size: int = 100,
                    profile: int = 0) -> list[str]:
    """Server CPU per request in this one process (the Flask test client: no HTTP, no wrk, no
    gunicorn), beside the floor app's: a ratio the machine's other load cannot distort as it
    does the wrk figures. It counts this process's CPU only, not PostgreSQL's or Redis's."""
    from bench.floor_app import app as floor_app
    from service.app import create_app
    from service.base.config import Config

    app = create_app(Config.from_env(store.env))
    client, floor = app.test_client(), floor_app.test_client()
    forget_pages(redis_url, store.version)
    key = {"X-API-Key": store.api_key}
    cold = iter(store.cold_tokens)

    def ask(tokens: list[str]) -> dict:
        return {"requests": [{"consent_token": t, "perk_id": PERK} for t in tokens]}

    reads = []
    if store.name == "postgresql":  # the read+insert floor's tables were made (make_floor)
        os.environ["FLOOR_DATABASE_URL"] = libpq(store.url)
        reads = [("floor read+insert (bare Flask, psycopg)", 1, lambda i: floor.post(
            "/decide", json={"key": store.keys[i % len(store.keys)]}))]
    cases = [
        ("floor (bare Flask)", 1, lambda i: floor.get("/")), *reads,
        ("page cached", 1, lambda i: client.get("/v1/me/score", headers={
            "Authorization": f"Bearer {store.citizen_tokens[i % 50]}"})),
        ("page cold", 1, lambda i: client.get("/v1/me/score", headers={
            "Authorization": f"Bearer {next(cold)}"})),
        ("eligibility single", 1, lambda i: client.post(
            "/v1/partner/eligibility", headers=key, json={
                "consent_token": store.consent_tokens[i % len(store.consent_tokens)],
                "perk_id": PERK})),
        (f"eligibility batch of {batch_size}", batch_size, lambda i: client.post(
            "/v1/partner/eligibility/batch", headers=key, json=ask(
                store.consent_tokens[(i * batch_size) % 1000:][:batch_size]))),
    ]
    lines = ["| in process | CPU ms / request | CPU ms / decision | × floor's CPU |",
             "|---|---|---|---|"]
    floor_ms = None
    for label, per, call in cases:
        count = 60 if per > 1 else 600
        for i in range(50):  # every cached page filled, every statement prepared
            assert call(i).status_code == 200, label
        began = time.process_time()
        for i in range(50, 50 + count):
            call(i)
        ms = (time.process_time() - began) / count * 1000
        floor_ms = floor_ms or ms
        lines.append(f"| {label} | {ms:.3f} | {ms / per:.3f} | {ms / floor_ms:.1f} |")
        if profile and label == "eligibility single":
            lines.extend(_profiled(call, range(50 + count, 50 + 2 * count), profile))
    app.extensions["osmanthus.engine"].dispose()
    return lines


def _profiled(call, indexes: range, top: int) -> list[str]:
    """cProfile over more single decisions (fresh consents): where a decision's CPU goes (the
    timer is this process's CPU time, so waiting on PostgreSQL or Redis does not count)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for i in indexes:
        call(i)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return ["", "```", *out.getvalue().splitlines(), "```"]


def measure_floor(args, label: str) -> dict[int, WrkResult]:
    out = {}
    with serve("bench.floor_app:app", {}, workers=WORKERS) as base:
        run_wrk(base + "/", connections=16, seconds=2)  # warm-up
        for connections in args.connections:
            out[connections] = run_wrk(base + "/", connections=connections, seconds=args.seconds)
            print(f"  floor ({label}) c={connections:<3} {out[connections].line()}", flush=True)
    return out


def check_audit(store: Store, answered: int) -> str:
    """Seal what is left, verify the whole log, and count the decisions' entries."""
    return check_log(store.url, store.env, answered)


def table(store: Store, results: dict, floor: dict[int, float]) -> list[str]:
    lines = [f"\n{store.name} (2 sync gunicorn workers, Redis cache and limits):",
             "| endpoint | conn | req/s | decisions/s | p50 ms | p99 ms | non-2xx | socket err "
             "| × floor |", "|---|---|---|---|---|---|---|---|---|"]
    for (label, connections), (r, per) in results.items():
        decisions = f"{r.requests_per_s * per:,.0f}" if label.startswith("elig") else "—"
        lines.append(f"| {label} | {connections} | {r.requests_per_s:,.0f} | {decisions} | "
                     f"{r.latency_p50_ms:.2f} | {r.latency_p99_ms:.2f} | {r.non_2xx} | "
                     f"{r.socket_errors} | {r.requests_per_s / floor[connections]:.2f} |")
    return lines


def goals(results: dict, floor: dict[int, float]) -> list[str]:
    """The issue's goals, each with the figure that meets it or not (16 connections)."""
    out = []
    page = results.get(("page cached", 16))
    if page:
        r = page[0]
        ratio = r.requests_per_s / floor[16]
        out.append(f"goal page cached ≥ 50% of floor, p99 < 10 ms: {ratio:.0%}, p99 "
                   f"{r.latency_p99_ms:.1f} ms → {'met' if ratio >= .5 and r.latency_p99_ms < 10 else 'NOT met'}")
    one = results.get(("eligibility single", 16))
    if one:
        r = one[0]
        out.append(f"goal single ≥ 1,000 decisions/s, p99 < 25 ms: {r.requests_per_s:,.0f}/s, "
                   f"p99 {r.latency_p99_ms:.1f} ms → "
                   f"{'met' if r.requests_per_s >= 1000 and r.latency_p99_ms < 25 else 'NOT met'}")
    best = max(((r.requests_per_s * per, label) for (label, c), (r, per) in results.items()
                if label.startswith("eligibility batch") and c == 16), default=None)
    if best:
        out.append(f"goal batch ≥ 10,000 decisions/s: {best[0]:,.0f}/s ({best[1]}) → "
                   f"{'met' if best[0] >= 10_000 else 'NOT met'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite", "both"],
                        default="postgresql")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--cold-people", type=int, default=18_000)
    parser.add_argument("--cpu-only", action="store_true",
                        help="only the in-process CPU figures (no gunicorn, no wrk)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N costliest functions of a single decision")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8],
                        help="gunicorn workers for the issue-15 decisions (PostgreSQL)")
    parser.add_argument("--decision-connections", type=int, default=16)
    parser.add_argument("--seal-entries", type=int, default=500_000,
                        help="entries appended then sealed, timed (0: skip)")
    parser.add_argument("--decisions-only", action="store_true",
                        help="only the issue-15 figures (and the CPU table): no pages, batches")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                             "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()
    print(machine(), flush=True)
    print(f"wrk: {ensure_wrk()}; {args.seconds:.0f} s per run; gunicorn {WORKERS} sync workers")
    names = ["postgresql", "sqlite"] if args.database == "both" else [args.database]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        world = build_world(work / "world")
        floors = [] if args.cpu_only or args.decisions_only else [measure_floor(args, "before")]
        reports = []
        for name in names:
            store = seed_store(name, world, work, args.redis_url, args.cold_people)
            try:
                skip = args.cpu_only or args.decisions_only
                results, answered = ({}, 0) if skip else measure_app(store, args, work)
                scaling, sealing = [], []
                if name == "postgresql":
                    make_floor(store.url, store.keys)
                if name == "postgresql" and not args.cpu_only:
                    scaling = measure_scaling(store, store.keys, args, work)
                    answered += sum(r.app.statuses.get(200, 0) for r in scaling)
                audit_line = check_audit(store, answered)
                if name == "postgresql" and args.seal_entries and not args.cpu_only:
                    sealing = sealing_rate(store.url, args.seal_entries)
                cpu = cpu_per_request(store, args.redis_url, profile=args.profile)
                reports.append((store, results, audit_line, cpu, scaling, sealing))
            finally:
                forget_pages(args.redis_url, store.version)
                forget_limits(args.redis_url, store.api_key)
                store.drop()
        if not (args.cpu_only or args.decisions_only):
            floors.append(measure_floor(args, "after"))
    if args.cpu_only:
        for store, _results, _audit, cpu, _scaling, _sealing in reports:
            print(f"\n{store.name}, server CPU per request in one process:\n" + "\n".join(cpu))
        return
    floor = {c: sum(f[c].requests_per_s for f in floors) / len(floors)
             for c in args.connections} if floors else {}
    if floors:
        print("\nfloor (bare Flask constant JSON, same gunicorn settings), mean of before/after:")
    for c in floor:
        p99 = max(f[c].latency_p99_ms for f in floors)
        print(f"  c={c}: {floor[c]:,.0f} req/s (p99 ≤ {p99:.2f} ms)")
    for store, results, audit_line, cpu, scaling, sealing in reports:
        if results:
            print("\n".join(table(store, results, floor)))
        print(audit_line)
        print("\n".join(goals(results, floor)))
        if scaling:
            print(f"\n{store.name}, single decisions beside the read+insert floor (issue 15), "
                  f"c={args.decision_connections}, in-service sealer every 1 s:")
            print("\n".join(scaling_table(scaling)))
            print("\n".join(scaling_goals(scaling)))
        if sealing:
            print(f"\n{store.name}, the sequencer:")
            print("\n".join(f"  {line}" for line in sealing))
        print(f"\n{store.name}, server CPU per request in one process:")
        print("\n".join(cpu))
    print(f"\npeak memory (this process and finished children): {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
