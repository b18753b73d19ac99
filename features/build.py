"""Features as of a date: one row per person, the catalog's columns, from counting records.

The same function serves one person re-scored after a dispute and a city of millions: it is a
handful of Polars group-bys, one per source, over the records that count (`features.rules`),
joined on the person key. There is no per-person Python.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from features.catalog import DERIVED, FEATURE_NAMES, FEATURES, features_of
from features.records import SCHEMAS, Records, Source
from features.rules import counts_expr

RECORDS_COUNTED = "records_counted"  # not a feature: 0 means "no record yet"


def _month_index(expr: pl.Expr) -> pl.Expr:
    return expr.dt.year().cast(pl.Int32) * 12 + expr.dt.month().cast(pl.Int32)


def _source_frame(records: Records, source: Source, as_of: dt.date) -> pl.LazyFrame:
    spec = SCHEMAS[source]
    as_of_index = as_of.year * 12 + as_of.month
    m_ago = (pl.lit(as_of_index, dtype=pl.Int32) - _month_index(pl.col(spec.date_column)))
    frame = records.get(source).lazy().filter(counts_expr(source, as_of)).with_columns(
        m_ago.alias("m_ago")
    )
    if spec.column(spec.date_column).month:
        in_bitmap = (pl.col("m_ago") >= 1) & (pl.col("m_ago") <= 36)
        frame = frame.with_columns(
            pl.when(in_bitmap)
            .then(pl.lit(2, dtype=pl.Int64).pow(pl.col("m_ago") - 1))
            .otherwise(0)
            .cast(pl.Int64)
            .alias("bit")
        )
    aggregations = [f.expr.alias(f.name) for f in features_of(source)]
    aggregations.append(pl.len().cast(pl.Int64).alias(f"_n_{source.value}"))
    return frame.group_by("person_key").agg(aggregations)


def build_features(
    records: Records,
    as_of: dt.date,
    persons: pl.Series | list[str] | None = None,
) -> pl.DataFrame:
    """One row per person as of `as_of`, sorted by person key.

    `persons` lists whom to return (people with no records get the catalog defaults);
    by default, everyone who has any record of any source, counting or not.
    """
    if persons is None:
        persons = records.persons()
    base = pl.DataFrame({"person_key": pl.Series(list(persons), dtype=pl.String)}).unique()
    joined = base.lazy()
    for source in Source:
        joined = joined.join(_source_frame(records, source, as_of), on="person_key", how="left")
    source_features = [f for f in FEATURES if f.source != DERIVED]
    counts = [f"_n_{s.value}" for s in Source]
    joined = joined.with_columns(
        [pl.col(f.name).cast(pl.Float64).fill_null(f.default) for f in source_features]
        + [pl.sum_horizontal([pl.col(c).fill_null(0) for c in counts]).alias(RECORDS_COUNTED)]
    )
    joined = joined.with_columns(
        [f.expr.cast(pl.Float64).alias(f.name) for f in FEATURES if f.source == DERIVED]
    )
    return (
        joined.select(["person_key", *FEATURE_NAMES, RECORDS_COUNTED])
        .sort("person_key")
        .collect()
    )
