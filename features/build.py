"""Features as of a date: one row per person, the catalog's columns, from counting records.

The same function serves one person re-scored after a dispute and a city of millions: one
Polars group-by per source over the records that count (`features.rules`), joined on the person
key. There is no per-person Python.

Where the time goes, and why it is shaped this way (see `bench/features.py`):
- hashing the 64-character person key is the floor; each source is grouped exactly once;
- the rules are date comparisons against literals computed once from the as-of date (no string
  reasons: `counts_expr` is a boolean), and `m_ago` and `bit` of the person × month sources are
  table lookups, before the group-by (calendar arithmetic and a per-row power cost more than
  the rest of the build together);
- the catalog's aggregations mask (`when/then`) rather than `.filter()` inside the group-by, so
  Polars evaluates them over whole columns and then reduces per group;
- the people to return are the groups' own keys plus the few people whose records of a source
  all fail the rules, not a second pass over every record's key.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import polars as pl

from features.catalog import DERIVED, FEATURE_NAMES, FEATURES, features_of
from features.records import RETENTION_MONTHS, SCHEMAS, Records, Source
from features.rules import (
    Frame,
    add_months,
    counts_expr,
    is_monthly,
    month_index,
    month_index_expr,
)

RECORDS_COUNTED = "records_counted"  # not a feature: 0 means "no record yet"
BITMAP_MONTHS = 36  # `bit` covers m_ago 1..36
EPOCH = dt.date(1970, 1, 1)


def _uses(source: Source, column: str) -> bool:
    return any(column in f.expr.meta.root_names() for f in features_of(source))


def _m_ago(source: Source, as_of: dt.date) -> pl.Expr:
    """Months between a counting record's month and the as-of month.

    For person × month sources, the rules leave only months from the oldest retained one to
    last month, a span of about 1,830 days: a lookup by days before the as-of date replaces
    per-row calendar arithmetic on tens of millions of rows (the index is clipped, so a record
    outside the span could only read a wrong month, never fail; the rules exclude them)."""
    spec = SCHEMAS[source]
    if not is_monthly(source):
        return pl.lit(month_index(as_of), dtype=pl.Int32) - month_index_expr(spec.date_column)
    oldest = (add_months(as_of, -RETENTION_MONTHS) + dt.timedelta(days=1)).replace(day=1)
    span = (as_of - oldest).days
    table = pl.Series([month_index(as_of) - month_index(as_of - dt.timedelta(days=k))
                       for k in range(span + 1)], dtype=pl.Int32)
    days_before = pl.lit((as_of - EPOCH).days, dtype=pl.Int32) - pl.col(spec.date_column).cast(
        pl.Int32)
    return pl.lit(table).gather(days_before.clip(0, span))


def counting_frame(records: Records, source: Source, as_of: dt.date) -> pl.LazyFrame:
    """The records of a source that count as of `as_of`, with the helper columns the catalog's
    expressions use: `m_ago` and, for person × month sources, `bit` (2**(m_ago-1) for m_ago in
    1..36, else 0; looked up, since a per-row power is several times slower)."""
    frame = records.get(source).lazy().filter(counts_expr(source, as_of)).with_columns(
        _m_ago(source, as_of).alias("m_ago"))
    if is_monthly(source) and _uses(source, "bit"):
        bits = pl.Series([0, *(2 ** k for k in range(BITMAP_MONTHS)), 0], dtype=pl.Int64)
        frame = frame.with_columns(
            pl.lit(bits).gather(pl.col("m_ago").clip(0, BITMAP_MONTHS + 1)).alias("bit"))
    return frame


def _aggregate(records: Records, source: Source, as_of: dt.date) -> pl.LazyFrame:
    aggregations = [f.expr.alias(f.name) for f in features_of(source)]
    aggregations.append(pl.len().cast(pl.Int64).alias(f"_n_{source.value}"))
    return counting_frame(records, source, as_of).group_by("person_key").agg(aggregations)


def _not_counting_keys(records: Records, source: Source, as_of: dt.date) -> pl.LazyFrame:
    """Keys of people with a record of this source that does not count (usually few rows)."""
    return (records.get(source).lazy().filter(~counts_expr(source, as_of))
            .select("person_key").unique())


def build_features(
    records: Records,
    as_of: dt.date,
    persons: pl.Series | list[str] | None = None,
) -> pl.DataFrame:
    """One row per person as of `as_of`, sorted by person key; every feature Float64.

    `persons` lists whom to return (people with no records get the catalog defaults);
    by default, everyone who has any record of any source, counting or not. One person
    (an online re-score) takes `_build_one`, which gives the same row faster.
    """
    if persons is not None:
        distinct = set(persons)
        if len(distinct) == 1:
            return _build_one(records, as_of, distinct.pop())
    sources = list(Source)
    plans = [_aggregate(records, s, as_of) for s in sources]
    if persons is None:
        plans += [_not_counting_keys(records, s, as_of) for s in sources]
    frames = pl.collect_all(plans)
    aggregates = frames[: len(sources)]
    if persons is None:
        keys = pl.concat([f.select("person_key") for f in frames])
    else:
        keys = pl.DataFrame({"person_key": pl.Series(list(persons), dtype=pl.String)})
    joined = keys.unique().sort("person_key")
    for aggregate in aggregates:
        joined = joined.join(aggregate, on="person_key", how="left", maintain_order="left")
    return _finish(joined)


def _finish(joined: Frame) -> Frame:
    """Person key and aggregates (null: no counting record) → the features table: defaults
    filled, `records_counted`, derived features, catalog order. Eager for many people (as it
    always was), lazy inside the one-person query."""
    sources = list(Source)
    source_features = [f for f in FEATURES if f.source != DERIVED]
    counted = [pl.col(f"_n_{s.value}").fill_null(0) for s in sources]
    joined = joined.with_columns(
        [pl.col(f.name).cast(pl.Float64).fill_null(f.default) for f in source_features]
        + [pl.sum_horizontal(counted).cast(pl.Int64).alias(RECORDS_COUNTED)]
    )
    joined = joined.with_columns(
        [f.expr.cast(pl.Float64).alias(f.name) for f in FEATURES if f.source == DERIVED]
    )
    return joined.select(["person_key", *FEATURE_NAMES, RECORDS_COUNTED])


@lru_cache(maxsize=64)
def _one_person_plan(source: Source, as_of: dt.date) -> tuple[pl.Expr, list[pl.Expr],
                                                                list[pl.Expr]]:
    """(counts, helper columns, aggregations) of a source as of a date, built once: building
    the rules' and catalog's expressions (and the `m_ago` lookup table) costs more than
    evaluating them on one person's records. Each aggregation is null when no record
    counts, as the group-by's left join leaves it."""
    helpers = [_m_ago(source, as_of).alias("m_ago")]
    if is_monthly(source) and _uses(source, "bit"):
        bits = pl.Series([0, *(2 ** k for k in range(BITMAP_MONTHS)), 0], dtype=pl.Int64)
        helpers.append(pl.lit(bits).gather(pl.col("m_ago").clip(0, BITMAP_MONTHS + 1))
                       .alias("bit"))
    aggregations = [f.expr.alias(f.name) for f in features_of(source)]
    aggregations.append(pl.len().cast(pl.Int64).alias(f"_n_{source.value}"))
    any_counting = pl.len() > 0
    return (counts_expr(source, as_of), helpers,
            [pl.when(any_counting).then(a).alias(a.meta.output_name()) for a in aggregations])


def _build_one(records: Records, as_of: dt.date, person_key: str) -> pl.DataFrame:
    """One person's row, as `build_features` gives it, in one Polars query without group-bys
    or joins: per source the catalog's aggregations in a `select` over the person's counting
    records (null when none counts, as the left join leaves a person without a group), side
    by side, then the same `_finish`. A source without any record of the person is not
    queried at all: its columns are null. Polars plans every expression on every query, so
    for one person fewer expressions is most of the saving (tests/features/
    test_build_one.py proves the rows equal)."""
    parts = [pl.LazyFrame({"person_key": [person_key]}, schema={"person_key": pl.String})]
    absent: list[str] = []
    for source in Source:
        frame = records.get(source)
        counts, helpers, aggregations = _one_person_plan(source, as_of)
        if frame.height == 0:
            absent += [a.meta.output_name() for a in aggregations]
            continue
        plan = frame.lazy().filter((pl.col("person_key") == person_key) & counts)
        for helper in helpers:  # `bit` reads `m_ago`
            plan = plan.with_columns(helper)
        parts.append(plan.select(aggregations))
    joined = pl.concat(parts, how="horizontal").with_columns(
        pl.lit(None).alias(name) for name in absent)
    return _finish(joined).collect(engine="in-memory")  # no streaming set-up for one row
