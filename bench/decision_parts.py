"""Where a single partner decision's time goes, part by part, beside the read+insert floor.

    .venv/bin/python bench/decision_parts.py [--decisions 400] [--redis-url redis://…/12]

No HTTP and no test client: each request is one call of the WSGI app with a prepared environ,
so the figures are the server's own work. In one process, one request at a time, on the
service tests' small world (400 people scored, a consent token for each question, each token
new to the process, as in `bench/api.py`), PostgreSQL in a fresh schema of the local test
database and Redis (the bench's own db), the in-service sealer off:
- CPU and wall time per request of the floor (`bench/floor_app.py` `POST /decide`), of a
  decision answered in front of Flask (`api.partner_front`) and of one answered by the
  Flask route (the same request with a trailing slash, which the front leaves to Flask);
- the CPU of each part of a decision answered in front (the functions it calls, timed in
  place), and the CPU and wall time of the decision's round trips alone (the consents read,
  the audit append with its commit, the Redis count) beside the floor's insert.
Wall times are one request at a time: what a sync worker waits for, besides its CPU.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import io
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_audit import libpq  # noqa: E402
from bench.common import create_schema, drop_schemas, machine  # noqa: E402

POSTGRES_URL = os.environ.get("DATABASE_URL_TEST",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PARTNER, PERK = "city-bikes", "bike-deposit-free"


def _environ(path: str, body: bytes, headers: dict[str, str]) -> dict:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
               "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False}
    environ.update(headers)
    return environ


def _call(wsgi, environ: dict) -> str:
    statuses = []
    out = wsgi(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return statuses[0]


def _timed(call, count: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of `call(i)`, i = 0 … count - 1."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        call(i)
    return ((time.process_time() - cpu) / count * 1000,
            (time.perf_counter() - wall) / count * 1000)


def _spy(parts: collections.Counter, owner, name: str, label: str) -> None:
    """Add the CPU of every call of `owner.name` to `parts[label]`."""
    real = getattr(owner, name)

    def timed(*args, **kwargs):
        began = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            parts[label] += time.process_time() - began

    setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                             "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()
    print(machine(), flush=True)
    url, schema = create_schema(POSTGRES_URL, "bench_parts")
    try:
        measure(url, args.redis_url, args.decisions)
    finally:
        drop_schemas(POSTGRES_URL, schema)


def measure(url: str, redis_url: str, count: int) -> None:
    from sqlalchemy import insert

    from bench.floor_app import app as floor
    from bench.floor_app import create_tables
    from service.api import partner_front
    from service.api.limits import InFrontCount
    from service.app import create_app
    from service.base import clock
    from service.base.config import Config
    from service.rights import audit, eligibility
    from service.rights.auth import issue_token, new_api_key
    from service.scoring.score import score_people
    from service.store.bulk import write_records
    from service.store.tables import autocommit, consents, partners
    from tests.service.world import build_world

    world = build_world(Path(tempfile.mkdtemp(prefix="bench-parts-")))
    app = create_app(Config.from_env({
        "DATABASE_URL": url, "REDIS_URL": redis_url, "OSMANTHUS_REGISTRY": str(world.registry),
        "OSMANTHUS_AS_OF": "2026-01-01", "OSMANTHUS_PARTNER_RATE_LIMIT": "1000000000/minute",
        "OSMANTHUS_NUM_THREADS": "1", "OSMANTHUS_AUDIT_SEAL_SECONDS": "0"}))
    engine, config = app.extensions["osmanthus.engine"], app.extensions["osmanthus.config"]
    keys = world.people()["person_key"].head(400).to_list()
    write_records(engine, world.records.filter_persons(keys))
    score_people(engine, app.extensions["osmanthus.model"], keys, dt.date(2026, 1, 1))
    api_key, hashed = new_api_key()
    now = clock.now(app)
    tokens, consent_ids = [], []
    with engine.begin() as connection:
        connection.execute(insert(partners).values(partner_id=PARTNER, name=PARTNER,
                                                   api_key_hash=hashed, created_at=now))
        for i in range(4 * count + 100):
            consent_id = uuid.uuid4().hex
            connection.execute(insert(consents).values(
                consent_id=consent_id, person_key=keys[i % len(keys)], partner_id=PARTNER,
                perks=[PERK], granted_at=now - dt.timedelta(days=1),
                expires_at=now + dt.timedelta(days=30)))
            consent_ids.append(consent_id)
            tokens.append(issue_token(config, "consent", consent_id, minutes=240,
                                      claims={"partner": PARTNER, "perks": [PERK]}))
    create_tables(libpq(url), keys)
    os.environ["FLOOR_DATABASE_URL"] = libpq(url)
    fresh = iter(tokens)

    def ask(path: str):
        def call(_i: int) -> None:
            body = json.dumps({"consent_token": next(fresh), "perk_id": PERK}).encode()
            assert _call(app.wsgi_app, _environ(path, body, {"HTTP_X_API_KEY": api_key})) \
                == "200 OK"
        return call

    def floor_decide(i: int) -> None:
        body = json.dumps({"key": keys[i % len(keys)]}).encode()
        assert _call(floor.wsgi_app, _environ("/decide", body, {})) == "200 OK"

    for call in (floor_decide, ask("/v1/partner/eligibility"), ask("/v1/partner/eligibility/")):
        _timed(call, 20)  # connections made, statements prepared, keys remembered
    rows = [("floor read+insert (bare Flask, psycopg)", *_timed(floor_decide, count)),
            ("decision in front of Flask", *_timed(ask("/v1/partner/eligibility"), count)),
            ("decision by the Flask route", *_timed(ask("/v1/partner/eligibility/"), count))]
    floor_cpu = rows[0][1]
    print("\n| one request at a time, no HTTP | CPU ms | × floor's CPU | wall ms |")
    print("|---|---|---|---|")
    for label, cpu, wall in rows:
        print(f"| {label} | {cpu:.3f} | {cpu / floor_cpu:.2f} | {wall:.3f} |")

    parts: collections.Counter = collections.Counter()
    for owner, name, label in [
            (partner_front.DecisionsInFront, "_question", "body: size, guard, schema"),
            (partner_front.auth, "partner_of", "API key (remembered)"),
            (InFrontCount, "hit", "rate limit (Redis EVALSHA)"),
            (partner_front, "decide", "decide, in all"),
            (eligibility, "_precheck", "  consent token (PyJWT, Ed25519)"),
            (eligibility, "_load", "  consents read (PostgreSQL)"),
            (eligibility.audit, "append_committed", "  audit append (PostgreSQL)"),
            (eligibility, "_answer", "  the perk's rule, decision id"),
            (partner_front._ANSWER, "dump", "answer dumped (schema)"),
            (type(app.json), "response", "JSON response built")]:
        _spy(parts, owner, name, label)
    cpu, _ = _timed(ask("/v1/partner/eligibility"), count)
    print("\n| a decision in front of Flask, by part | CPU ms | share |\n|---|---|---|")
    for label, seconds in parts.items():
        ms = seconds / count * 1000
        print(f"| {label} | {ms:.3f} | {ms / cpu:.0%} |")
    named = sum(v for k, v in parts.items() if not k.startswith("  ")) / count * 1000
    print(f"| the rest (WSGI, headers, pool checkout, timing) | {cpu - named:.3f} | "
          f"{(cpu - named) / cpu:.0%} |\n| in all | {cpu:.3f} | 100% |")

    connection = autocommit(engine).connect()
    driver, today = audit.driver_connection(connection), clock.now(app)
    limits = app.extensions["osmanthus.front_count"]
    entry = {"actor": f"partner:{PARTNER}", "person_key": keys[0], "action": "eligibility",
             "detail": {"perk": PERK, "answer": "yes", "decision_id": "d" * 32,
                        "consent_id": "c" * 32}}
    trips = [
        ("consents read", lambda i: eligibility._load(connection, [consent_ids[i]], today)),
        ("audit append and its commit",
         lambda i: audit.append_committed(engine, [entry], at=today, connection=connection)),
        ("Redis count", lambda i: limits.hit("partner", "key:bench-parts")),
        ("floor's insert and its commit (psycopg)", lambda i: driver.execute(
            "INSERT INTO floor_log (key, detail) VALUES (%s, %s)", ("k", '{"eligible": 1}'))),
    ]
    print("\n| round trip, one at a time | CPU ms | wall ms |\n|---|---|---|")
    for label, call in trips:
        cpu, wall = _timed(call, count)
        print(f"| {label} | {cpu:.3f} | {wall:.3f} |")
    connection.close()
    _forget(redis_url)
    engine.dispose()


def _forget(redis_url: str) -> None:
    """Delete this bench's own rate-limit counter."""
    import redis

    client = redis.Redis.from_url(redis_url)
    found = list(client.scan_iter(match="*key:bench-parts*"))
    if found:
        client.delete(*found)


if __name__ == "__main__":
    main()
