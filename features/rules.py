"""Record rules: does a record count as of a date, and if not, why.

Each rule is written once, as a Polars expression over a typed record frame, so that the same
code decides for one record (a citizen's records page), one person (online re-scoring) and a
city (batch features). `counts(source, record, as_of)` and `reason(...)` evaluate the same
expressions on one record, for tests and for the API.

Time, stated once:
- "As of T" means: everything known before day T. A record dated on or after T does not count
  (a person × month record is dated on the last day of its month, when it is complete).
- A change of state takes effect on its own date: a court listing fulfilled or removed on day D
  no longer counts as of D; a repair accepted on D, and a dispute received on D, likewise; a
  rejected dispute closed on D lets the record count again as of D.
- No record older than `RETENTION_MONTHS` counts, except an active court listing, which counts
  for as long as it is active.

The first rule that applies gives the reason, in this order: not yet known, disputed, repaired,
closed (court), minor (penalty), outside the disclosure window (penalty), past retention.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from features.records import DEFAULT_WINDOW_MONTHS, RETENTION_MONTHS, SCHEMAS, Source, conform

NOT_YET_KNOWN = "dated on or after the as-of date"
DISPUTED = "disputed: frozen until the dispute is resolved"
REPAIRED = "repaired: credit repair accepted"
FULFILLED = "court listing fulfilled"
REMOVED = "court listing removed"
MINOR = "minor penalty: never disclosed"
OUTSIDE_WINDOW = "outside its disclosure window"
PAST_RETENTION = f"older than {RETENTION_MONTHS} months"

REASONS = (NOT_YET_KNOWN, DISPUTED, REPAIRED, FULFILLED, REMOVED, MINOR, OUTSIDE_WINDOW,
           PAST_RETENTION)


def _date(value: dt.date) -> pl.Expr:
    return pl.lit(value, dtype=pl.Date)


def record_date(source: Source | str) -> pl.Expr:
    """The date a record became known: its own date, or the last day of its month."""
    spec = SCHEMAS[Source(source)]
    column = pl.col(spec.date_column)
    if spec.column(spec.date_column).month:
        return column.dt.month_end()
    return column


def window_months_expr() -> pl.Expr:
    """A penalty's disclosure window: its own, or its severity and category's default."""
    default = pl.lit(None, dtype=pl.Int64)
    for severity, by_category in DEFAULT_WINDOW_MONTHS.items():
        for category, months in by_category.items():
            default = (
                pl.when((pl.col("severity") == severity) & (pl.col("category") == category))
                .then(pl.lit(months, dtype=pl.Int64))
                .otherwise(default)
            )
    return pl.coalesce(pl.col("window_months"), default)


def reason_expr(source: Source | str, as_of: dt.date) -> pl.Expr:
    """Why a record does not count as of `as_of`; null when it counts."""
    source = Source(source)
    when = _date(as_of)
    known = record_date(source)
    disputed = (pl.col("dispute_opened_on") <= when) & (
        pl.col("dispute_closed_on").is_null() | (pl.col("dispute_closed_on") > when)
    )
    retained = known > _date(as_of).dt.offset_by(f"-{RETENTION_MONTHS}mo")

    chain = (
        pl.when(known >= when).then(pl.lit(NOT_YET_KNOWN))
        .when(disputed.fill_null(False)).then(pl.lit(DISPUTED))
        .when((pl.col("repaired_on") <= when).fill_null(False)).then(pl.lit(REPAIRED))
    )
    if source is Source.COURT:
        closed = (pl.col("closed_on") <= when).fill_null(False)
        active = ~closed
        chain = (
            chain.when(closed & (pl.col("status") == "fulfilled")).then(pl.lit(FULFILLED))
            .when(closed).then(pl.lit(REMOVED))
            .when(~active & ~retained).then(pl.lit(PAST_RETENTION))
        )
    elif source is Source.PENALTY:
        window_end = pl.col("decided_on").dt.offset_by(pl.format("{}mo", window_months_expr()))
        chain = (
            chain.when(pl.col("severity") == "minor").then(pl.lit(MINOR))
            .when(window_end <= when).then(pl.lit(OUTSIDE_WINDOW))
            .when(~retained).then(pl.lit(PAST_RETENTION))
        )
    else:
        chain = chain.when(~retained).then(pl.lit(PAST_RETENTION))
    return chain.otherwise(pl.lit(None, dtype=pl.String))


def counts_expr(source: Source | str, as_of: dt.date) -> pl.Expr:
    return reason_expr(source, as_of).is_null()


def counting(source: Source | str, frame: pl.DataFrame | pl.LazyFrame, as_of: dt.date):
    """Only the records of a frame that count as of `as_of`."""
    return frame.filter(counts_expr(source, as_of))


def explain_records(source: Source | str, frame: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Every record with `counts` and `reason` columns: the citizen's records page."""
    reason = reason_expr(source, as_of)
    return frame.with_columns(reason.alias("reason")).with_columns(
        pl.col("reason").is_null().alias("counts")
    )


def reason(source: Source | str, record: dict[str, Any], as_of: dt.date) -> str | None:
    """Why one record does not count as of `as_of` (None when it counts)."""
    row = {"record_id": "r", "person_key": "p", **record}
    frame = conform(source, pl.DataFrame([row], infer_schema_length=None, strict=False))
    return frame.select(reason_expr(source, as_of)).item()


def counts(source: Source | str, record: dict[str, Any], as_of: dt.date) -> bool:
    return reason(source, record, as_of) is None
