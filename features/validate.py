"""Feeds in, typed records and a quarantine out: the edge where a source's file meets its contract.

A feed (CSV, Parquet or a DataFrame; one source per feed) is checked against its
`features.records.SourceSchema` and nothing else: every Column's rule (required, type, closed
list, minimum, maximum, not in the future, "YYYY-MM" month) and the schema's named cross-column
`checks` (see `CHECKS`). Every row either comes out typed in `records` or once in `quarantine`,
with its 1-based data row number, the first failing field, the reason in plain words and all its
problems, so one bad row never costs the feed its good rows. A feed the validator cannot read at
all (unreadable file, missing required column, unknown source) raises `FeedError`.

The resident ID is checked and turned into a person key once per distinct ID (not per row), and
dropped: no raw ID reaches `records`, `quarantine`, an exception or a log line.

`record_id` is a 128-bit hash of (source, person key, natural key), computed vectorised by
`record_ids` so that re-validating a feed, even under another Polars version, gives the same
ids. Within one feed, when several rows share a record_id, the LAST row wins (a feed lists a
record's newest state last, e.g. a court listing re-sent as fulfilled) and each earlier row is
quarantined as "duplicate of row N".
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from features import identity
from features.records import (
    GENERAL_WINDOW_MONTHS,
    SCHEMAS,
    SERIOUS_WINDOW_MONTHS,
    Column,
    Source,
    SourceSchema,
    conform,
)

log = logging.getLogger(__name__)

ROW = "__row"
PROBLEMS = "__problems"
# Bounds every column keeps, whatever its own rule: a value outside them is a typing accident
# or an attack, and stored it poisons every later job (a sum of 1e308 is inf; year 1 breaks
# month arithmetic). No record of the city's data is dated before 1990, and no amount, count
# or base comes near a quadrillion (1e15; a float holds whole yuan exactly up to 9e15).
EARLIEST_RECORD_DATE = dt.date(1990, 1, 1)
MAX_ABS_NUMBER = 1e15
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(), "row_number": pl.Int64(), "field": pl.String(),
    "reason": pl.String(), "problems": pl.String(),
}
_ID_LIKE = re.compile(r"[0-9]{14,}[0-9Xx]?")


class FeedError(ValueError):
    """The whole feed is refused (unreadable, wrong columns, unknown source); safe to print."""


@dataclass(frozen=True)
class ValidationResult:
    source: Source
    records: pl.DataFrame  # exactly records.record_schema(source)
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA, one row per bad feed row
    rows_read: int
    ignored_columns: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """Counts for a person reading the command's output: nothing about any one row."""
        by_field = self.quarantine.group_by("field").len().sort(["len", "field"],
                                                                descending=[True, False])
        return {
            "source": self.source.value,
            "rows_read": self.rows_read,
            "good": self.records.height,
            "quarantined": self.quarantine.height,
            "by_field": dict(zip(by_field["field"].to_list(), by_field["len"].to_list(),
                                 strict=True)),
            "ignored_columns": list(self.ignored_columns),
        }


# ---------------------------------------------------------------- cross-column checks
# Each named check of a SourceSchema: (field it blames, the fields it reads, the reason as an
# expression over typed values that is null when the row passes). It runs only on rows whose
# fields it reads passed their own column rules.
Check = tuple[str, tuple[str, ...], pl.Expr]


def _closed_on_matches_status() -> Check:
    status, closed = pl.col("status"), pl.col("closed_on")
    reason = (pl.when((status == "active") & closed.is_not_null())
              .then(pl.lit("must be empty while status is active"))
              .when((status != "active") & closed.is_null())
              .then(pl.lit("required when status is fulfilled or removed")))
    return "closed_on", ("status", "closed_on"), reason


def _not_before(later: str, earlier: str) -> Check:
    reason = pl.when(pl.col(later) < pl.col(earlier)).then(pl.lit(f"before {earlier}"))
    return later, (later, earlier), reason


def _window_fits_severity() -> Check:
    window, severity = pl.col("window_months"), pl.col("severity")
    (g_lo, g_hi), (s_lo, s_hi) = GENERAL_WINDOW_MONTHS, SERIOUS_WINDOW_MONTHS
    reason = (pl.when((severity == "general") & ~window.is_between(g_lo, g_hi))
              .then(pl.lit(f"must be {g_lo}–{g_hi} months for a general penalty"))
              .when((severity == "serious") & ~window.is_between(s_lo, s_hi))
              .then(pl.lit(f"must be {s_lo}–{s_hi} months for a serious penalty")))
    return "window_months", ("window_months", "severity"), reason


CHECKS = {
    "closed_on_matches_status": _closed_on_matches_status,
    "closed_on_not_before_filed_on": lambda: _not_before("closed_on", "filed_on"),
    "window_fits_severity": _window_fits_severity,
    "repaired_on_not_before_decided_on": lambda: _not_before("repaired_on", "decided_on"),
}


def assert_checks_implemented(schemas: dict[Source, SourceSchema]) -> None:
    """Refuse a schema naming a check with no implementation, so nothing goes unchecked."""
    missing = sorted({name for spec in schemas.values() for name in spec.checks} - set(CHECKS))
    if missing:
        raise NotImplementedError(f"record checks named but not implemented: {missing}")


assert_checks_implemented(SCHEMAS)


# ---------------------------------------------------------------- reading
def _redact(message: str) -> str:
    """An engine's error may quote a line of the file: never let an ID number through."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return _ID_LIKE.sub("<redacted>", first_line)[:300]


def read_feed(feed: str | Path | pl.DataFrame) -> pl.DataFrame:
    """The feed as a frame: CSV read all as strings, Parquet as stored, a DataFrame as is."""
    if isinstance(feed, pl.DataFrame):
        return feed
    path = Path(feed)
    if not path.is_file():
        raise FeedError(f"cannot read feed {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False, raise_if_empty=True)
        elif suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            raise FeedError(f"cannot read feed {path.name}: expected a .csv or .parquet file")
    except FeedError:
        raise
    except Exception as error:  # any engine error means the file as a whole is unreadable
        raise FeedError(f"cannot read feed {path.name}: {_redact(str(error))}") from None
    return frame.rename({name: name.strip() for name in frame.columns})


# ---------------------------------------------------------------- per-column rules
def _number(value: float) -> str:
    return f"{value:g}"


def _parse(col: Column, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, null-or-parse-failure) of one column from its raw feed column."""
    raw = pl.col(col.name)
    target = col.dtype() if isinstance(col.dtype, type) else col.dtype
    if col.month:
        if dtype in (pl.Date(),) or isinstance(dtype, pl.Datetime):
            return raw.cast(pl.Date).dt.month_start(), pl.lit(None, pl.String)
        shaped = raw.str.contains(r"^[0-9]{4}-[0-9]{2}$")
        value = pl.when(shaped).then((raw + "-01").str.to_date("%Y-%m-%d", strict=False))
        return value, pl.when(value.is_null()).then(pl.lit("not a month (expected YYYY-MM)"))
    if target == pl.Date():
        if dtype == pl.Date() or isinstance(dtype, pl.Datetime):
            return raw.cast(pl.Date), pl.lit(None, pl.String)
        shaped = raw.str.contains(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        value = pl.when(shaped).then(raw.str.to_date("%Y-%m-%d", strict=False))
        return value, pl.when(value.is_null()).then(pl.lit("not a date (expected YYYY-MM-DD)"))
    if target == pl.Int64():
        if dtype.is_float():
            value = pl.when(raw == raw.floor()).then(raw.cast(pl.Int64, strict=False))
        else:
            value = raw.cast(pl.Int64, strict=False)
        return value, pl.when(value.is_null()).then(pl.lit("not a whole number"))
    if target == pl.Float64():
        value = raw.cast(pl.Float64, strict=False)
        finite = value.is_finite().fill_null(False)
        return (pl.when(finite).then(value),
                pl.when(~finite).then(pl.lit("not a number")))
    return raw.cast(pl.String), pl.lit(None, pl.String)


def _rules(col: Column, today: dt.date) -> pl.Expr:
    """The reason a parsed value breaks its column's rule, or null (value column is typed)."""
    value = pl.col(col.name)
    reason = pl.when(pl.lit(False)).then(pl.lit(None, pl.String))
    if col.allowed is not None:
        reason = reason.when(~value.is_in(list(col.allowed))).then(
            pl.lit("must be one of: " + ", ".join(col.allowed)))
    if col.minimum is not None:
        reason = reason.when(value < col.minimum).then(pl.lit(f"must be ≥ {_number(col.minimum)}"))
    if col.maximum is not None:
        reason = reason.when(value > col.maximum).then(pl.lit(f"must be ≤ {_number(col.maximum)}"))
    if col.not_in_future:  # a month is in the future when it has not begun
        reason = reason.when(value > pl.lit(today, pl.Date)).then(pl.lit("in the future"))
    if col.dtype in (pl.Date, pl.Date()):
        reason = reason.when(value < pl.lit(EARLIEST_RECORD_DATE, pl.Date)).then(
            pl.lit(f"before {EARLIEST_RECORD_DATE.year}"))
    elif col.dtype in (pl.Float64, pl.Float64(), pl.Int64, pl.Int64()):
        reason = reason.when(value.abs() > MAX_ABS_NUMBER).then(
            pl.lit(f"beyond ±{_number(MAX_ABS_NUMBER)}"))
    return reason.otherwise(pl.lit(None, pl.String))


def _problem(name: str) -> str:
    return f"__p_{name}"


def _check_columns(spec: SourceSchema, frame: pl.DataFrame) -> tuple[str, ...]:
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        raise FeedError(f"{spec.source.value} feed is missing required column(s): "
                        f"{', '.join(missing)}")
    return tuple(name for name in frame.columns if name not in spec.column_names)


def _typed(spec: SourceSchema, frame: pl.DataFrame, today: dt.date) -> pl.DataFrame:
    """Every column stripped, parsed and checked: typed values plus a `__p_<column>` reason."""
    fields = [c for c in spec.columns if c.name != "resident_id"]
    present = [c for c in fields if c.name in frame.columns]
    lf = frame.lazy().select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW),
        (pl.col("resident_id").cast(pl.String).str.strip_chars().fill_null("")
         .alias("resident_id")),
        *[pl.col(c.name) for c in present],
        *[pl.lit(None, pl.String).alias(c.name) for c in fields if c.name not in frame.columns],
    )
    strings = [c.name for c in present if frame.schema[c.name] == pl.String()]
    lf = lf.with_columns([
        pl.when(pl.col(n).str.strip_chars() != "").then(pl.col(n).str.strip_chars()).alias(n)
        for n in strings
    ])
    parsed = {c.name: _parse(c, frame.schema.get(c.name, pl.String())) for c in fields}
    lf = lf.with_columns(
        *[v.alias(n) for n, (v, _) in parsed.items()],
        *[pl.when(pl.col(n).is_null()).then(pl.lit("missing" if c.required else None, pl.String))
          .otherwise(parsed[n][1]).alias(_problem(n)) for c in fields for n in [c.name]],
    )
    lf = lf.with_columns([
        pl.coalesce(pl.col(_problem(c.name)),
                    pl.when(pl.col(c.name).is_not_null()).then(_rules(c, today)))
        .alias(_problem(c.name)) for c in fields
    ])
    return lf.collect()


def _identify(frame: pl.DataFrame, today: dt.date, secret: bytes) -> pl.DataFrame:
    """ID check and person key per distinct ID (the HMAC is the one per-value Python step)."""
    ids = frame.select(pl.col("resident_id").unique())
    ids = ids.with_columns(identity.id_problem_expr("resident_id", today).alias("__p_resident_id"))
    valid = ids.filter(pl.col("__p_resident_id").is_null()).select(
        pl.col("resident_id"), pl.col("resident_id").str.to_uppercase().alias("__normal"))
    normals = valid.get_column("__normal").unique()
    keys = pl.DataFrame({"__normal": normals,
                         "person_key": identity.hash_ids(normals.to_list(), secret)},
                        schema={"__normal": pl.String, "person_key": pl.String})
    table = ids.join(valid, on="resident_id", how="left").join(keys, on="__normal", how="left")
    return (frame.join(table.drop("__normal"), on="resident_id", how="left",
                       maintain_order="left")
            .drop("resident_id"))


# ---------------------------------------------------------------- record_id
# A stable 128-bit hash of a sequence of 64-bit words, two lanes with different seeds and
# mixers (MurmurHash3's and SplitMix64's finalisers), each word absorbed as h ^= w; mix(h).
# A string part is absorbed as its UTF-8 byte length, then its bytes as little-endian 8-byte
# words, zero-padded; a date part as its days since 1970-01-01. record_id = the source name,
# then the person key, then the natural key values, as hex (lane a, then lane b).
LANES = ((0x9E3779B97F4A7C15, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 33, 33, 33),
         (0x6A09E667F3BCC908, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 30, 27, 31))
_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint16)


def _absorb(state: list[np.ndarray], word: np.ndarray, mask: np.ndarray | None = None) -> None:
    for h, (_, c1, c2, s1, s2, s3) in zip(state, LANES, strict=True):
        x = h ^ word
        x ^= x >> np.uint64(s1)
        x *= np.uint64(c1)
        x ^= x >> np.uint64(s2)
        x *= np.uint64(c2)
        x ^= x >> np.uint64(s3)
        if mask is None:
            h[:] = x
        else:
            np.copyto(h, x, where=mask)


def _absorb_strings(state: list[np.ndarray], values: pl.Series) -> None:
    if values.len() == 0:
        return
    lengths = values.str.len_bytes().cast(pl.UInt64).to_numpy()
    _absorb(state, lengths)
    width = -(-int(lengths.max() or 0) // 8) * 8
    if width == 0:
        return
    padded = values.str.pad_end(width, "\0").cast(pl.Binary).to_frame("b")
    words = padded.select([pl.col("b").bin.slice(8 * k, 8).bin.reinterpret(
        dtype=pl.UInt64, endianness="little").alias(str(k)) for k in range(width // 8)])
    for k in range(width // 8):
        _absorb(state, words.get_column(str(k)).to_numpy(), lengths > 8 * k)


def _new_state(n: int, source: str) -> list[np.ndarray]:
    state = [np.full(1, seed, dtype=np.uint64) for seed, *_ in LANES]
    _absorb_strings(state, pl.Series([source]))
    return [np.repeat(h, n) for h in state]


def record_ids(source: Source | str, frame: pl.DataFrame) -> pl.Series:
    """The record_id of every row of a frame with person_key and the natural key columns."""
    spec = SCHEMAS[Source(source)]
    persons = frame.get_column("person_key").unique()
    prefix = _new_state(persons.len(), spec.source.value)
    _absorb_strings(prefix, persons)
    lookup = pl.DataFrame({"person_key": persons, "__a": prefix[0], "__b": prefix[1]})
    lanes = frame.select("person_key").join(lookup, on="person_key", how="left",
                                            maintain_order="left")
    state = [lanes.get_column(lane).to_numpy().copy() for lane in ("__a", "__b")]
    for name in spec.natural_key:
        column = frame.get_column(name)
        if column.dtype == pl.Date():
            _absorb(state, column.cast(pl.Int64).to_numpy().view(np.uint64))
        else:
            _absorb_strings(state, column.cast(pl.String))
    raw = np.stack(state, axis=1).astype(">u8").view(np.uint8)
    text = _HEX[raw].tobytes()
    offsets = pa.py_buffer(np.arange(0, 32 * frame.height + 1, 32, dtype=np.int32).tobytes())
    array = pa.Array.from_buffers(pa.string(), frame.height, [None, offsets, pa.py_buffer(text)])
    return pl.Series("record_id", array)


# ---------------------------------------------------------------- the validator
def _quarantine_columns(source: Source, fields: list[str],
                        checks: list[tuple[str, pl.Expr]]) -> list[pl.Expr]:
    """field, reason and problems of a row from its per-field and cross-column reasons."""
    reasons = [(f, pl.col(_problem(f))) for f in fields] + checks
    return [
        pl.lit(source.value).alias("source"),
        pl.col(ROW).alias("row_number"),
        pl.coalesce([pl.when(r.is_not_null()).then(pl.lit(f)) for f, r in reasons]).alias("field"),
        pl.coalesce([r for _, r in reasons]).alias("reason"),
        pl.concat_str([pl.format("{}: {}", pl.lit(f), r) for f, r in reasons],
                      separator="; ", ignore_nulls=True).alias("problems"),
    ]


def validate_feed(
    feed: str | Path | pl.DataFrame,
    source: Source | str,
    *,
    secret: bytes | None = None,
    today: dt.date | None = None,
) -> ValidationResult:
    """Typed records and a quarantine from one source's feed; `FeedError` if it is unusable."""
    try:
        source = Source(source)
    except ValueError:
        raise FeedError(f"unknown source {source!r}: expected one of "
                        f"{', '.join(s.value for s in Source)}") from None
    spec = SCHEMAS[source]
    assert_checks_implemented({source: spec})
    today = today or dt.date.today()
    raw = read_feed(feed)
    ignored = _check_columns(spec, raw)
    frame = _identify(_typed(spec, raw, today), today, secret or identity.person_key_secret())

    fields = spec.column_names
    own_ok = {f: pl.col(_problem(f)).is_null() for f in fields}
    checks = []
    for i, name in enumerate(spec.checks):
        blamed, reads, reason = CHECKS[name]()
        runs = pl.all_horizontal([own_ok[f] for f in reads])
        column = f"__check{i}"
        frame = frame.with_columns(pl.when(runs).then(reason.otherwise(None)).cast(pl.String)
                                   .alias(column))
        checks.append((blamed, pl.col(column)))
    failed = pl.any_horizontal([~ok for ok in own_ok.values()]
                               + [reason.is_not_null() for _, reason in checks])
    frame = frame.with_columns(failed.alias("__failed"))
    bad = frame.filter("__failed").select(_quarantine_columns(source, fields, checks))
    good = frame.filter(~pl.col("__failed"))
    good = good.with_columns(record_ids(source, good))

    duplicated = good.get_column("record_id").is_duplicated()
    if duplicated.any():
        good = good.with_columns(pl.col(ROW).last().over("record_id").alias("__kept"))
        earlier = good.filter(pl.col(ROW) != pl.col("__kept")).with_columns(
            pl.lit(source.value).alias("source"),
            pl.col(ROW).alias("row_number"),
            pl.lit(spec.natural_key[0]).alias("field"),
            pl.format("duplicate of row {} (same person and {})", pl.col("__kept"),
                      pl.lit(", ".join(spec.natural_key))).alias("reason"),
        ).with_columns(pl.format("{}: {}", pl.col("field"), pl.col("reason")).alias("problems"))
        bad = pl.concat([bad.select(list(QUARANTINE_SCHEMA)), earlier.select(list(QUARANTINE_SCHEMA))])
        good = good.filter(pl.col(ROW) == pl.col("__kept"))

    quarantine = bad.select(list(QUARANTINE_SCHEMA)).cast(QUARANTINE_SCHEMA).sort("row_number")
    result = ValidationResult(source, conform(source, good), quarantine, raw.height, ignored)
    log.info("validated %s feed: %d rows, %d good, %d quarantined", source.value,
             result.rows_read, result.records.height, result.quarantine.height)
    return result
