"""Benchmark: ingest a city transit feed (default 1,000,000 rows, ~1% bad) into a fresh store.

    .venv/bin/python bench/ingest.py [--rows N] [--backend sqlite|postgresql|both]
                                     [--postgres URL] [--old-rows N]

Per backend (a fresh SQLite file; a fresh PostgreSQL schema, dropped afterwards): the first
load, then the same feed sent again (nothing changes), in rows/s, with peak memory. Floors from
the same run: the validation alone (`validate_feed`, which the ingest runs first), and a bare
bulk insert of the same good rows into an empty table (`service.store.bulk.write_records`: COPY on
PostgreSQL, executemany of tuples on SQLite); the ingest's ratio is to validation + bare
insert. `--old-rows` also times the previous row-by-row upsert (the oracle in
tests/service/test_ingest_fast.py) on the first N rows, for the before/after figure (0: skip).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import create_schema, drop_schemas, machine, peak_rss_mb  # noqa: E402
from bench.validate import build_feed  # noqa: E402
from features.records import Records, Source  # noqa: E402
from features.validate import validate_feed  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Store:
    """Fresh, migrated databases on one backend; PostgreSQL schemas dropped at the end."""

    def __init__(self, backend: str, folder: Path, postgres: str) -> None:
        self.backend, self.folder, self.postgres, self.schemas = backend, folder, postgres, []

    def fresh(self):
        from service.store.tables import make_engine, migrate

        if self.backend == "sqlite":
            url = f"sqlite:///{self.folder / f'bench_ingest_{uuid.uuid4().hex[:10]}'}.db"
        else:
            url, name = create_schema(self.postgres, "bench_ingest")
            self.schemas.append(name)
        engine = make_engine(url)
        migrate(engine)
        return engine

    def drop(self) -> None:
        drop_schemas(self.postgres, *self.schemas)


def clock(label: str, run):
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    print(f"  {label}: {seconds:.2f} s · peak {peak_rss_mb():,.0f} MiB", flush=True)
    return out, seconds


def bench_backend(backend: str, feed: Path, folder: Path, args, validate_s: float,
                  good: pl.DataFrame) -> dict:
    from service.store.bulk import write_records
    from service.store.ingest import ingest_feed

    print(f"{backend}:", flush=True)
    store = Store(backend, folder, args.postgres)
    try:
        engine = store.fresh()
        first, first_s = clock("ingest, first load", lambda: ingest_feed(engine, feed, Source.TRANSIT))
        second, second_s = clock("ingest, same feed again",
                                 lambda: ingest_feed(engine, feed, Source.TRANSIT))
        assert first.rows_stored == good.height and second.changed_persons == set()
        engine.dispose()
        engine = store.fresh()
        _, floor_s = clock("floor: bare bulk insert (write_records)",
                           lambda: write_records(engine, Records(transit=good)))
        engine.dispose()
        old_s = old_rows = None
        if args.old_rows:
            from tests.service.test_ingest_fast import reference_ingest

            old_rows = min(args.old_rows, good.height)
            part = folder / "old.parquet"
            pl.read_parquet(feed).head(old_rows).write_parquet(part)
            engine = store.fresh()
            _, old_s = clock(f"previous row-by-row upsert, first {old_rows:,} rows",
                             lambda: reference_ingest(engine, part, Source.TRANSIT))
            engine.dispose()
    finally:
        store.drop()
    rows = first.rows_read
    return {"backend": backend, "rows": rows, "first": first_s, "second": second_s,
            "floor": floor_s, "validate": validate_s, "old": old_s, "old_rows": old_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--old-rows", type=int, default=100_000)
    args = parser.parse_args()
    print(machine(), flush=True)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        feed = folder / "transit.parquet"
        clock(f"build a {args.rows:,}-row transit feed", lambda: build_feed(args.rows, feed))
        result, validate_s = clock("floor: validate_feed alone",
                                   lambda: validate_feed(feed, Source.TRANSIT))
        good = result.records
        del result
        rows = [bench_backend(b, feed, folder, args, validate_s, good) for b in backends]
    print()
    print("| backend | rows | first load | rows/s | same feed again | rows/s | validate (floor) "
          "| bare insert (floor) | first ÷ (validate + insert) | again ÷ validate "
          "| previous path rows/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        old = (f"{r['old_rows'] / r['old']:,.0f} ({r['old_rows']:,} rows)" if r["old"] else "–")
        speedup = (f"{(r['rows'] / r['first']) / (r['old_rows'] / r['old']):.1f}×"
                   if r["old"] else "–")
        print(f"| {r['backend']} | {r['rows']:,} | {r['first']:.1f} s | {r['rows'] / r['first']:,.0f} "
              f"| {r['second']:.1f} s | {r['rows'] / r['second']:,.0f} | {r['validate']:.1f} s "
              f"| {r['floor']:.1f} s | {r['first'] / (r['validate'] + r['floor']):.2f}× "
              f"| {r['second'] / r['validate']:.2f}× | {old} | {speedup} |")
    print(f"\npeak memory (whole process) {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
