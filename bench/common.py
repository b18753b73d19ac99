"""What every benchmark prints: the machine it ran on, timings, and peak memory.

Importing it also gives the benchmark the development secrets the `osmanthus` commands use
(the person key that hashes ID numbers, the token keys), generated once into
`var/secrets.json`: there is no default secret anywhere (issue 14), so a benchmark that builds
a city or signs a token needs them as the demo does."""

from __future__ import annotations

import os
import platform
import resource
import time
from contextlib import contextmanager

from service.base.config import export_development_secrets

export_development_secrets()


def machine() -> str:
    """One line naming the machine, so a figure is never read without its context."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as handle:
            mem_kb = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
        memory = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.node()} · {cpu} · {os.cpu_count()} cores · {memory} · "
            f"Python {platform.python_version()} · load {load:.2f}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


@contextmanager
def timed(label: str, results: dict[str, float]):
    """Time a block and record its seconds under `label`."""
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start
    print(f"  {label}: {results[label]:.2f} s", flush=True)


def create_schema(server_url: str, prefix: str) -> tuple[str, str]:
    """A new, empty PostgreSQL schema on `server_url`, so a benchmark never touches anyone's
    tables: (a URL whose connections use it, its name). Raises when the server is away."""
    import uuid

    from sqlalchemy import text

    from service.store.tables import make_engine

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
    finally:
        admin.dispose()
    separator = "&" if "?" in server_url else "?"
    return f"{server_url}{separator}options=-csearch_path%3D{name}", name


def drop_schemas(server_url: str, *names: str) -> None:
    """Drop schemas `create_schema` made, with everything in them."""
    from sqlalchemy import text

    from service.store.tables import make_engine

    if not names:
        return
    admin = make_engine(server_url)
    try:
        with admin.begin() as connection:
            for name in names:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    finally:
        admin.dispose()


def city_records(workdir, people: int, seed: int):
    """A synthetic city in `workdir` (generated once, then reused) and its validated records:
    (the city's folder, `Records`)."""
    from pathlib import Path

    from features.city import generate_city
    from features.records import Records, Source
    from features.validate import validate_feed

    city = Path(workdir) / f"city-{people}-{seed}"
    if not (city / "outcomes.parquet").exists():
        start = time.perf_counter()
        generate_city(people, seed, city, progress=False)
        print(f"  generated {people:,} people in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    records = Records(**{s.value: validate_feed(city / "feeds" / f"{s.value}.parquet", s).records
                         for s in Source})
    print(f"  feeds validated in {time.perf_counter() - start:.1f} s", flush=True)
    return city, records
