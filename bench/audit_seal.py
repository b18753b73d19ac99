"""The audit sequencer's sealing rate on PostgreSQL (issue 15: goal ≥ 50,000 entries/s).

Appends `--entries` audit entries through the partner path's own insert
(`audit.append_committed`, `--chunk` per statement) into a new PostgreSQL schema, then seals
them all (`sequencer.seal`, `--batch` per transaction and signed head) and reports entries
sealed per second (wall time, and per CPU-second of the sequencer plus its PostgreSQL backend,
which a machine shared with other work does not distort), then a second round of `--entries` on top of the first tree (a grown
frontier), and `transparency.verify_log` over the whole log. The schema is dropped afterwards.

    .venv/bin/python bench/audit_seal.py [--entries 200000] [--batch 100000] [--chunk 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import create_schema, drop_schemas, machine, peak_rss_mb  # noqa: E402

SERVER = os.environ.get("DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _append(engine, n: int, chunk: int, offset: int) -> float:
    from service.rights import audit

    start = time.perf_counter()
    for at in range(offset, offset + n, chunk):
        audit.append_committed(engine, [
            {"actor": f"partner:p{i % 7}", "action": "eligibility",
             "person_key": f"{i * 2654435761 % 2**64:016x}" * 4,
             "detail": {"perk_id": "bike", "eligible": "yes" if i % 3 else "no",
                        "decision_id": f"{i:032x}", "policy_version": 1}}
            for i in range(at, min(offset + n, at + chunk))])
    return time.perf_counter() - start


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a local process has used: the PostgreSQL backend's own, so
    the rate can be read apart from the other loads on a shared machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    args = parser.parse_args()

    from sqlalchemy import create_engine

    from service.base.config import Config
    from service.base.keys import audit_keys_of
    from service.rights import sequencer
    from service.rights.transparency import verify_log
    from service.store.tables import make_engine, migrate

    print(f"machine: {machine()}")
    print(f"command: bench/audit_seal.py --entries {args.entries} --batch {args.batch} "
          f"--chunk {args.chunk}")
    url, schema = create_schema(SERVER, "bench_seal")
    engine = make_engine(url)
    try:
        migrate(engine)
        keys = audit_keys_of(Config.from_env())
        # the sequencer on one pooled connection, so its backend's CPU time can be read
        sealing = create_engine(url, pool_size=1, max_overflow=0)
        with sealing.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        for round_ in (1, 2):
            took = _append(engine, args.entries, args.chunk, (round_ - 1) * args.entries)
            print(f"round {round_}: appended {args.entries:,} entries in {took:.2f} s "
                  f"({args.entries / took:,.0f}/s, {args.chunk} per insert)", flush=True)
            server_cpu, start, own_cpu = _cpu(pid), time.perf_counter(), time.process_time()
            head = sequencer.seal(sealing, keys, batch=args.batch)
            took, own_cpu = time.perf_counter() - start, time.process_time() - own_cpu
            server_cpu = _cpu(pid) - server_cpu
            print(f"round {round_}: sealed {args.entries:,} entries in {took:.2f} s: "
                  f"{args.entries / took:,.0f} entries/s (tree size {head.tree_size:,}, "
                  f"{args.batch:,} per transaction); CPU: sequencer {own_cpu:.2f} s, its "
                  f"PostgreSQL backend {server_cpu:.2f} s = "
                  f"{args.entries / (own_cpu + server_cpu):,.0f} entries per CPU-second",
                  flush=True)
        start = time.perf_counter()
        verdict = verify_log(engine, keys.public)
        took = time.perf_counter() - start
        print(f"verify_log: {verdict.entries:,} entries, {verdict.heads} heads, "
              f"{'ok' if verdict.ok else verdict.problem} in {took:.2f} s "
              f"({verdict.entries / took:,.0f} entries/s)")
        print(f"peak memory: {peak_rss_mb():.0f} MiB")
        sealing.dispose()
    finally:
        engine.dispose()
        drop_schemas(SERVER, schema)


if __name__ == "__main__":
    main()
