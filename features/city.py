"""The synthetic city: a realistic population of any size, its five record feeds and its fate.

The generative story
--------------------
Adults aged 18–80 on the first snapshot date (an age pyramid with the bulges of China's 1960s
and 1980s cohorts) live in Hangzhou's ten urban districts, which differ in how urban they are.
Each resident carries three hidden traits, drawn once:

- **reliability** (N(0, 1)): conscientiousness — returning bikes on time, paying the fare,
  volunteering, staying clear of penalties;
- **integrity** (N(0, 1)): willingness to pay when it costs (the "character" of credit
  analysis) — it shows in court listings, serious penalties and defaults, hardly in bus fares;
- **base strain**: the long-run level of financial strain (lower with higher reliability),
  the same in distribution whatever one's age, sex or district, so that true risk is
  group-neutral and any gap in approvals between groups is a model's proxy,

plus **luck**, an unobserved risk that shows in no record and only in the outcome.

Month by month, **financial strain** = base strain + a slow AR(1) drift (ρ = 0.95 a month) + rare
shocks (illness, divorce) + a jump while unemployed + the fines of penalties (a fine is a
bill). Employment is a two-state Markov chain
(job loss likelier under strain, less likely with reliability); students start work at about
22; men retire at 60 and women at 55. A month's *risk* = strain − 0.8 · reliability.

The records follow from that, each with its own noise, so that no feature is a perfect signal:

- **social security**: a row per month in covered work (formal 70%, flexible 13%, none); a
  month is missed with a probability rising with risk (flexible workers far more often), missed
  months build up arrears that are paid back at a risk-dependent pace; unemployment and study
  leave gaps or no rows at all, while a covered resident's pension months are rows with
  status `exempt` (not liable: retirement is not a missed payment);
- **transit and public bicycle**: card holding and ride rates vary by district and age; overdue
  returns, fare evasion and damage rise with low reliability and strain; small fees left
  unpaid rise with risk;
- **court enforcement**: about 0.8% of adults listed at a time (the feed starts with the list
  as it stands), listings far likelier within a year of a default and among the unwilling; most
  are paid after a year or so, a few removed, the rest still active;
- **administrative penalties**: a few decisions per 100 adults a year, mostly minor (which never
  count), about a third general, about 7% serious (concentrated among the unwilling and
  the strained), with categories, fines, stated or default disclosure windows and repairs;
- **paying early**: each resident has a habit of settling bills before they are due
  (auto-debit, paying ahead), leaning a little on reliability and integrity; a transit month
  with nothing left unpaid, and a social-security month in good standing (a pensioner's own
  dues included), is marked `paid_early` with a probability rising with the habit and falling
  with that month's strain: one habit, two sources of evidence;
- **positive records**: about two in five adults volunteer, about 1.5% give blood in a year,
  honours are uncommon (about 5% over five years); modestly tied to reliability and integrity.

**The outcome**: each month a resident defaults on a deposit-free service (a fee or bill unpaid
more than 30 days) with hazard σ(−7.7 + 1.1 · strain − 0.5 · reliability − 0.5 · integrity
+ 0.35 · luck − 0.3 · early habit + 2.0 · [an active court listing]). Month by month, because a default makes a
listing likelier and a listing the next default (`features.city_events` and
`features.city_records` hold every dial beside the fact it follows). For a
snapshot T (the first of a month), `defaulted` says whether a default happened in the 12 months
from T, and `true_pd` = 1 − Π(1 − hazard) over those months: the chance given the hidden traits
*and* the strain path of that year, an upper bound no model can reach. Most defaults also leave
a trace in later records (the unpaid fee stays on the transit card for months), as in life; so
a default before T is visible to the features as of T, and one after T only after T.

Gender, birth date and district go to `people.parquet` for fairness measurement only; the feeds
carry them only inside the resident ID, as real feeds do. The hidden traits go to
`truth.parquet` for evaluation only.

Determinism: one `numpy.random.SeedSequence(seed)` spawns a stream for the population and one
per chunk of `CHUNK` residents, and Parquet is written with fixed settings and no timestamps,
so the same arguments give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.city_corrupt import MANIFEST_SCHEMA, corrupt
from features.city_people import DISTRICT_NAMES, Population, draw_population, month_index
from features.city_records import Calendar, numbered, simulate
from features.identity import hash_ids, person_key_secret
from features.records import SCHEMAS, Source

CHUNK = 20_000  # residents simulated at once: bounds memory; part of the seed's meaning
DEFAULT_SNAPSHOTS = (dt.date(2024, 1, 1), dt.date(2025, 1, 1))
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "use_dictionary": True,
                   "write_statistics": True}


@dataclass
class CityManifest:
    """What `generate_city` wrote; also saved as `city.json`."""

    out: str
    people: int
    seed: int
    start: str
    end: str
    snapshots: list[str]
    corrupt_rate: float
    rows: dict[str, int] = field(default_factory=dict)
    corrupted: dict[str, int] = field(default_factory=dict)
    default_rate: dict[str, float] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return Path(self.out) / name

    def feed(self, source: Source | str) -> Path:
        return Path(self.out) / "feeds" / f"{Source(source).value}.parquet"


def _arrow_schema(source: Source) -> pa.Schema:
    """The feed's Parquet schema: dates and months as text, so that bad ones can exist."""
    types = {pl.Float64: pa.float64(), pl.Int64: pa.int64()}
    return pa.schema([(c.name, types.get(c.dtype, pa.large_string()))
                      for c in SCHEMAS[source].columns])


def _write_table(frame: pl.DataFrame, path: Path) -> None:
    pq.write_table(frame.to_arrow(), path, **PARQUET_OPTIONS)


def _rng(seed: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _check_arguments(people: int, cal: Calendar, snapshots: tuple[dt.date, ...],
                     corrupt_rate: float) -> list[int]:
    if people < 1:
        raise ValueError("a city needs at least one resident")
    if not 0.0 <= corrupt_rate <= 1.0:
        raise ValueError("corrupt_rate must be between 0 and 1")
    if cal.last_day > dt.date.today():
        raise ValueError("the span may not end in the future: feeds would fail validation")
    if not snapshots:
        raise ValueError("at least one snapshot date is needed")
    columns = []
    for snap in snapshots:
        t = month_index(snap) - cal.start
        if snap.day != 1 or t < 1 or t + 12 > cal.months:
            raise ValueError(f"snapshot {snap} must be the first of a month with history before "
                             "it and 12 months of span after it")
        columns.append(t)
    return columns


def generate_city(
    people: int,
    seed: int,
    out: Path,
    *,
    corrupt_rate: float = 0.0,
    start: str = "2022-01",
    end: str = "2025-12",
    snapshots: tuple[dt.date, ...] = DEFAULT_SNAPSHOTS,
    progress: bool = True,
    secret: bytes | None = None,
) -> CityManifest:
    """Write a city of `people` residents under `out` (see the module docstring).

    Chunks are simulated one after another in this process while a thread writes the last
    one: a process pool was measured slower here (pickling the frames costs what it saves)."""
    out = Path(out)
    snapshots = tuple(snapshots)
    cal = Calendar.between(start, end)
    columns = _check_arguments(people, cal, snapshots, corrupt_rate)
    (out / "feeds").mkdir(parents=True, exist_ok=True)
    n_chunks = math.ceil(people / CHUNK)
    seeds = np.random.SeedSequence(seed).spawn(1 + 2 * n_chunks)
    pop = draw_population(_rng(seeds[0]), people, snapshots[0])
    keys = pl.Series("person_key", hash_ids(pop.resident_id.to_list(),
                                            secret or person_key_secret()), dtype=pl.String)
    manifest = CityManifest(str(out), people, seed, start, end, [s.isoformat() for s in snapshots],
                            corrupt_rate, rows={s.value: 0 for s in Source},
                            corrupted={s.value: 0 for s in Source})
    schemas = {s: _arrow_schema(s) for s in Source}
    writers = {s: pq.ParquetWriter(manifest.feed(s), schemas[s], **PARQUET_OPTIONS) for s in Source}
    spoiled: list[pl.DataFrame] = []
    fates: list[list[np.ndarray]] = [[], [], []]
    pending: Future | None = None

    def write(tables: dict[Source, pa.Table]) -> None:
        for source, table in tables.items():
            if table.num_rows:
                writers[source].write_table(table)

    bar = tqdm(total=people, unit="people", desc="city", disable=not progress)
    with ThreadPoolExecutor(max_workers=1) as pool:  # writing overlaps the next chunk's draws
        for c in range(n_chunks):
            chunk = simulate(pop.slice(c * CHUNK, (c + 1) * CHUNK), cal, columns,
                             _rng(seeds[1 + 2 * c]))
            spoil = _rng(seeds[2 + 2 * c])
            tables = {}
            for source, raw in chunk.feeds.items():
                frame = numbered(source, raw, manifest.rows[source])
                if corrupt_rate > 0:
                    frame, bad = corrupt(source, frame, corrupt_rate, spoil,
                                         manifest.rows[source])
                    spoiled.append(bad)
                    manifest.corrupted[source] += bad.height
                manifest.rows[source] += frame.height
                tables[source] = frame.to_arrow().cast(schemas[source])
            for bucket, values in zip(fates, (chunk.defaulted, chunk.true_pd, chunk.strain_at),
                                      strict=True):
                bucket.append(np.stack(values))
            if pending is not None:
                pending.result()
            pending = pool.submit(write, tables)
            bar.update(len(chunk.defaulted[0]))
        if pending is not None:
            pending.result()
    bar.close()
    for writer in writers.values():
        writer.close()

    defaulted, true_pd, strain = (np.concatenate(b, axis=1) for b in fates)
    _write_people(out, pop, keys)
    _write_fates(out, pop, keys, snapshots, defaulted, true_pd, strain)
    if corrupt_rate > 0:
        table = pl.concat(spoiled) if spoiled else pl.DataFrame(schema=MANIFEST_SCHEMA)
        _write_table(table, out / "corruptions.parquet")
    else:  # a clean city in a reused folder must not keep an old manifest
        (out / "corruptions.parquet").unlink(missing_ok=True)
    manifest.default_rate = {s.isoformat(): round(float(d.mean()), 6)
                             for s, d in zip(snapshots, defaulted, strict=True)}
    record = {k: v for k, v in asdict(manifest).items() if k != "out"}
    (out / "city.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _write_people(out: Path, pop: Population, keys: pl.Series) -> None:
    _write_table(pl.DataFrame({
        "person_key": keys,
        "gender": np.where(pop.male, "male", "female"),
        "birth_date": pl.Series(pop.birth.astype("datetime64[D]")),
        "district": pl.Series(DISTRICT_NAMES).gather(pop.district),
    }), out / "people.parquet")


def _write_fates(out: Path, pop: Population, keys: pl.Series, snapshots: tuple[dt.date, ...],
                 defaulted: np.ndarray, true_pd: np.ndarray, strain: np.ndarray) -> None:
    n = len(keys)
    snapshot = pl.Series("snapshot", np.repeat(np.array(snapshots, dtype="datetime64[D]"), n))
    person = pl.concat([keys] * len(snapshots))
    _write_table(pl.DataFrame({
        "person_key": person, "snapshot": snapshot,
        "defaulted": pl.Series(defaulted.reshape(-1), dtype=pl.Int8),
    }), out / "outcomes.parquet")
    _write_table(pl.DataFrame({
        "person_key": person, "snapshot": snapshot,
        "true_pd": true_pd.reshape(-1),
        "reliability": np.tile(pop.reliability, len(snapshots)),
        "base_strain": np.tile(pop.base_strain, len(snapshots)),
        "strain": strain.reshape(-1),
        "luck": np.tile(pop.luck, len(snapshots)),
        "integrity": np.tile(pop.integrity, len(snapshots)),
        "early_habit": np.tile(pop.early_habit, len(snapshots)),
    }), out / "truth.parquet")
