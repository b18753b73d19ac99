"""The issue-15 half of `bench/api.py`: single partner decisions against a floor that reads one
row and inserts one (bench/floor_app.py `POST /decide`) at 2 and 8 gunicorn workers, the
sequencer's sealing rate, and how long a decision's audit entry waits to be sealed while the
partners' load runs (the in-service sealer, `OSMANTHUS_AUDIT_SEAL_SECONDS=1`, as `osmanthus
serve` runs it).

Kept apart from api.py (which builds the world and the store and calls these) only for size.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.wrk import POST_REQUEST, WrkResult, rotating, run_wrk, serve

SEAL_EVERY = "1"  # seconds, the in-service sealer's period (`osmanthus serve`'s default)


@dataclass
class Scaling:
    """One worker count: the floor's and the app's single decisions at `connections`."""

    workers: int
    connections: int
    floor: WrkResult
    app: WrkResult
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    sealed: int
    unsealed: int

    def ratio(self) -> float:
        floor = self.floor.requests_per_s
        return self.app.requests_per_s / floor if floor else 0.0


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq takes it (the floor connects with psycopg)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def make_floor(store_url: str, keys: list[str]) -> None:
    from bench.floor_app import create_tables

    create_tables(libpq(store_url), keys)


def _max_id(url: str) -> int:
    from sqlalchemy import func, select

    from service.store.tables import audit_entries, make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.coalesce(func.max(audit_entries.c.id), 0))
                                      ).scalar_one()
    finally:
        engine.dispose()


def seal_lag(url: str, after_id: int) -> tuple[list[float], int]:
    """For each entry appended after `after_id`: seconds from its append (`at`) to the signing
    of the first head that includes it; and how many are still unsealed."""
    from sqlalchemy import select

    from service.store.tables import audit_entries, audit_leaves, audit_tree_heads, make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            heads = connection.execute(select(audit_tree_heads.c.tree_size,
                                              audit_tree_heads.c.timestamp)
                                       .order_by(audit_tree_heads.c.tree_size)).all()
            rows = connection.execute(
                select(audit_entries.c.at, audit_leaves.c.leaf_index)
                .select_from(audit_entries.outerjoin(
                    audit_leaves, audit_leaves.c.entry_id == audit_entries.c.id))
                .where(audit_entries.c.id > after_id)).all()
    finally:
        engine.dispose()
    sizes = [h.tree_size for h in heads]
    lags, unsealed = [], 0
    for at, index in rows:
        if index is None:
            unsealed += 1
            continue
        head = heads[bisect.bisect_right(sizes, index)]  # the first head with size > index
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        lags.append(head.timestamp / 1000 - at.timestamp())
    return sorted(lags), unsealed


def verdict_text(verdict) -> str:
    """`service.rights.transparency.Verdict` in one line."""
    state = "intact" if verdict.ok else f"BROKEN: {verdict.problem}"
    return (f"{state} ({verdict.entries:,} sealed entries, {verdict.heads:,} signed heads, "
            f"{verdict.unsealed:,} unsealed)")


def check_log(url: str, env: dict, answered: int) -> str:
    """Seal what is left, verify the whole log (`verify_log`), and count the decisions'
    entries against the decisions answered (none may be missing)."""
    from sqlalchemy import func, select

    from service.base.config import Config
    from service.base.keys import audit_keys_of
    from service.rights import sequencer, transparency
    from service.store.tables import audit_entries, make_engine

    engine = make_engine(url)
    keys = audit_keys_of(Config.from_env(env))
    while sequencer.seal(engine, keys) is not None:
        pass
    verdict = transparency.verify_log(engine, keys.public)
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(audit_entries)
                                  .where(audit_entries.c.action == "eligibility")).scalar_one()
    engine.dispose()
    ok = verdict.ok and rows >= answered
    return (f"audit log: {verdict_text(verdict)}; eligibility entries {rows:,} ≥ decisions "
            f"answered {answered:,}: {'yes' if ok else 'NO'}")


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def measure_scaling(store, keys: list[str], args, work: Path) -> list[Scaling]:
    """For each worker count: the floor (`POST /decide`), then the app's single decisions with
    the in-service sealer on, each at `args.decision_connections` connections."""
    floor_bodies = [json.dumps({"key": k}) for k in keys]
    floor_lua = rotating(floor_bodies, POST_REQUEST % ('"/decide"', '"-"'), work)
    single = [json.dumps({"consent_token": t, "perk_id": "bike-deposit-free"})
              for t in store.consent_tokens]
    app_lua = rotating(single, POST_REQUEST % ('"/v1/partner/eligibility"',
                                               json.dumps(store.api_key)), work)
    connections = args.decision_connections
    out = []
    for workers in args.workers:
        with serve("bench.floor_app:app", {"FLOOR_DATABASE_URL": libpq(store.url)},
                   workers=workers) as base:
            run_wrk(base + "/", connections=connections, seconds=2, lua=floor_lua)  # warm-up
            floor = run_wrk(base + "/", connections=connections, seconds=args.seconds,
                            lua=floor_lua)
        print(f"  floor /decide   workers={workers} c={connections} {floor.line()}", flush=True)
        env = {**store.env, "OSMANTHUS_AUDIT_SEAL_SECONDS": SEAL_EVERY}
        with serve("service.wsgi:app", env, workers=workers, ready_path="/healthz") as base:
            run_wrk(base + "/", connections=connections, seconds=2, lua=app_lua)  # warm-up
            mark = _max_id(store.url)
            app = run_wrk(base + "/", connections=connections, seconds=args.seconds, lua=app_lua)
            time.sleep(3 * float(SEAL_EVERY))  # the last entries get their seal
        lags, unsealed = seal_lag(store.url, mark)
        row = Scaling(workers, connections, floor, app, _quantile(lags, .5), _quantile(lags, .99),
                      lags[-1] if lags else float("nan"), len(lags), unsealed)
        print(f"  single decision workers={workers} c={connections} {app.line()}  "
              f"({row.ratio():.0%} of the floor; seal lag p50 {row.lag_p50_s:.2f} s, p99 "
              f"{row.lag_p99_s:.2f} s, {unsealed} unsealed)", flush=True)
        out.append(row)
    return out


def _heads(engine) -> int:
    from sqlalchemy import func, select

    from service.store.tables import audit_tree_heads

    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(audit_tree_heads)).scalar_one()


def _bytes_per_entry(engine) -> str:
    """On-disk bytes per sealed entry (tables, indexes and TOAST): for the 13M sizing."""
    from sqlalchemy import text

    with engine.connect() as connection:
        sizes = {name: connection.execute(text(f"SELECT pg_total_relation_size('{name}')"))
                 .scalar_one() for name in ("audit_entries", "audit_leaves", "audit_tree",
                                            "audit_tree_heads")}
        entries = connection.execute(text("SELECT count(*) FROM audit_entries")).scalar_one()
    per = {name: size / max(entries, 1) for name, size in sizes.items()}
    return (f"on disk per entry: {per['audit_entries']:.0f} B in audit_entries, "
            f"{per['audit_leaves']:.0f} B in audit_leaves, "
            f"{per['audit_tree']:.0f} B in audit_tree, {per['audit_tree_heads']:.1f} B in heads "
            f"(with indexes; {entries:,} entries)")


def sealing_rate(url: str, entries: int, batch: int = 100_000) -> list[str]:
    """Append `entries` audit entries (as partners' decisions would, in chunks), then seal them
    all and time it: entries sealed per second. Then `verify_log` over the whole log."""
    from service.base.config import Config
    from service.base.keys import audit_keys_of
    from service.rights import audit, sequencer, transparency
    from service.store.tables import make_engine

    engine = make_engine(url)
    config = Config.from_env({"DATABASE_URL": url})
    signer = audit_keys_of(config)
    lines = []
    try:
        sequencer.seal(engine, signer)  # whatever the load left, so the timing is of ours only
        heads_before = _heads(engine)
        began = time.perf_counter()
        for start in range(0, entries, 10_000):
            chunk = [{"actor": "partner:city-bikes", "action": "eligibility",
                      "person_key": f"{i:064x}", "detail": {"perk_id": "bike-deposit-free",
                                                            "eligible": "yes"}}
                     for i in range(start, min(entries, start + 10_000))]
            audit.append_committed(engine, chunk)
        appended = time.perf_counter() - began
        lines.append(f"appended {entries:,} entries in {appended:.1f} s "
                     f"({entries / appended:,.0f}/s, chunks of 10,000)")
        began = time.perf_counter()
        sealed = sequencer.seal(engine, signer, batch=batch).tree_size  # all, `batch` a head
        seconds = time.perf_counter() - began
        seals = _heads(engine) - heads_before
        lines.append(f"sealed {entries:,} entries in {seconds:.2f} s, {seals} seals of ≤ "
                     f"{batch:,} entries (one transaction and signed head each): "
                     f"**{entries / seconds:,.0f} entries/s** (tree size {sealed:,})")
        lines.append(_bytes_per_entry(engine))
        began = time.perf_counter()
        verdict = transparency.verify_log(engine, signer.public)
        seconds = time.perf_counter() - began
        lines.append(f"verify_log over all {sealed:,} entries: {seconds:.1f} s → "
                     f"{verdict_text(verdict)}")
    finally:
        engine.dispose()
    return lines


def scaling_table(rows: list[Scaling]) -> list[str]:
    lines = ["| workers | floor /decide req/s | single decisions/s | per worker | × floor | "
             "p50 ms | p99 ms | non-2xx | seal lag p50 / p99 / max s | sealed / unsealed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.workers} | {r.floor.requests_per_s:,.0f} | {r.app.requests_per_s:,.0f} | "
            f"{r.app.requests_per_s / r.workers:,.0f} | {r.ratio():.2f} | "
            f"{r.app.latency_p50_ms:.1f} | {r.app.latency_p99_ms:.1f} | {r.app.non_2xx} | "
            f"{r.lag_p50_s:.2f} / {r.lag_p99_s:.2f} / {r.lag_max_s:.2f} | "
            f"{r.sealed:,} / {r.unsealed:,} |")
    return lines


def scaling_goals(rows: list[Scaling]) -> list[str]:
    out = []
    for r in rows:
        met = r.ratio() >= .7 and r.app.latency_p99_ms < 25
        out.append(f"goal (workers={r.workers}) single ≥ 70% of the read+insert floor, p99 < 25 "
                   f"ms: {r.ratio():.0%}, p99 {r.app.latency_p99_ms:.1f} ms → "
                   f"{'met' if met else 'NOT met'}; seal lag p99 < 2 s: {r.lag_p99_s:.2f} s → "
                   f"{'met' if r.lag_p99_s < 2 else 'NOT met'}")
    if len(rows) >= 2:
        low, high = rows[0], rows[-1]
        out.append(f"from {low.workers} to {high.workers} workers on {os.cpu_count()} cores: "
                   f"decisions/s "
                   f"{low.app.requests_per_s:,.0f} → {high.app.requests_per_s:,.0f}, × floor "
                   f"{low.ratio():.2f} → {high.ratio():.2f} (the floor's own per-worker rate "
                   f"falls with the cores, so × floor is what shows contention)")
    return out
