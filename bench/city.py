"""Benchmark: generate a synthetic city of N people (`features.city.generate_city`).

Run: `.venv/bin/python bench/city.py --people 1000000`.

Prints the machine, wall and CPU seconds, people per second, rows per source (and rows per
second), file sizes and peak memory. The goal (issue 2) is 1,000,000 people in under a minute
of wall time on a 2-core machine. The output folder is a temporary one unless `--out` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, peak_rss_mb  # noqa: E402
from features.city import generate_city  # noqa: E402


def run(people: int, seed: int, out: Path, corrupt_rate: float) -> dict[str, float]:
    """Generate once and print the figures; returns them for callers."""
    wall, cpu = time.perf_counter(), time.process_time()
    manifest = generate_city(people, seed, out, corrupt_rate=corrupt_rate, progress=False,
                             secret=b"bench-key")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = sum(manifest.rows.values())
    print(f"  wall {wall:.1f} s · cpu {cpu:.1f} s · {people / wall:,.0f} people/s · "
          f"{rows / wall:,.0f} rows/s · peak {peak_rss_mb():,.0f} MiB")
    for source, count in manifest.rows.items():
        size = (out / "feeds" / f"{source}.parquet").stat().st_size / 2**20
        print(f"  {source:<16} {count:>12,} rows  {size:8.1f} MiB")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"  all files {total:,.1f} MiB · default rate {manifest.default_rate}")
    verdict = "meets" if wall < 60 or people < 1_000_000 else "misses"
    print(f"  goal (1,000,000 people < 60 s wall): {verdict} at this size")
    return {"wall_s": wall, "cpu_s": cpu, "people_per_s": people / wall, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corrupt-rate", type=float, default=0.0)
    parser.add_argument("--out", type=Path, help="keep the city here (default: a temp folder)")
    args = parser.parse_args()
    print(f"city benchmark · {args.people:,} people · seed {args.seed}")
    print(f"  {machine()}")
    if args.out:
        run(args.people, args.seed, args.out, args.corrupt_rate)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args.people, args.seed, Path(tmp), args.corrupt_rate)


if __name__ == "__main__":
    main()
