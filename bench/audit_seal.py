"""The audit sequencer's sealing rate on PostgreSQL (issue 15: goal ≥ 50,000 entries/s).

Appends `--entries` audit entries through the partner path's own insert
(`audit.append_committed`, `--chunk` per statement) into a new PostgreSQL schema, then seals
them all (`sequencer.seal`, `--batch` per transaction and signed head) and reports entries
sealed per second, then a second round of `--entries` on top of the first tree (a grown
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    args = parser.parse_args()

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
        for round_ in (1, 2):
            took = _append(engine, args.entries, args.chunk, (round_ - 1) * args.entries)
            print(f"round {round_}: appended {args.entries:,} entries in {took:.2f} s "
                  f"({args.entries / took:,.0f}/s, {args.chunk} per insert)", flush=True)
            start = time.perf_counter()
            head = sequencer.seal(engine, keys, batch=args.batch)
            took = time.perf_counter() - start
            print(f"round {round_}: sealed {args.entries:,} entries in {took:.2f} s: "
                  f"{args.entries / took:,.0f} entries/s (tree size {head.tree_size:,}, "
                  f"{args.batch:,} per transaction)", flush=True)
        start = time.perf_counter()
        verdict = verify_log(engine, keys.public)
        took = time.perf_counter() - start
        print(f"verify_log: {verdict.entries:,} entries, {verdict.heads} heads, "
              f"{'ok' if verdict.ok else verdict.problem} in {took:.2f} s "
              f"({verdict.entries / took:,.0f} entries/s)")
        print(f"peak memory: {peak_rss_mb():.0f} MiB")
    finally:
        engine.dispose()
        drop_schemas(SERVER, schema)


if __name__ == "__main__":
    main()
