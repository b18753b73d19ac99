"""Record rules: does a record count as of a date, and if not, why.

Each rule is written once, as a Polars condition over a typed record frame, so that the same
code decides for one record (a citizen's records page), one person (online re-scoring) and a
city (batch features). `counts(source, record, as_of)` and `reason(...)` evaluate the same
conditions on one record, for tests and for the API.

Time, stated once:
- "As of T" means: everything known before day T. A record dated on or after T does not count
  (a person × month record is dated on the last day of its month, when it is complete).
- A change of state takes effect on its own date: a court listing fulfilled or removed on day D
  no longer counts as of D; a repair accepted on D likewise.
- A dispute (征信业管理条例 Art. 25) does not stop a record counting: the record is labelled
  "under dispute" from the day it is received (`under_dispute_expr`) until the day it is
  answered. Only a dispute still unanswered after its due date stops the record counting
  (FCRA §1681i: what cannot be verified in time is not reported): with due date D it counts
  as of D (the whole of day D is there to answer) and not as of D + 1, until the day it is
  answered or withdrawn, from which it counts again (a rejected dispute) or is gone (upheld).
- A penalty's disclosure window of w months ends on `decided_on + w months` (Polars'
  calendar arithmetic: Jan 31 + 1 month is Feb 28): on that day it no longer counts.
- No record dated on or before `T - RETENTION_MONTHS months` counts, except an active court
  listing, which counts for as long as it is active.

The first rule that applies gives the reason, in this order: not yet known, dispute overdue,
repaired,
closed (court), minor (penalty), outside the disclosure window (penalty), past retention.

Every condition compares a column with a date or month computed once from the as-of date, so
the rules cost a few vectorised comparisons per record (no per-row date arithmetic on the large
person × month sources).
"""

from __future__ import annotations

import calendar
import datetime as dt
from functools import reduce
from typing import Any, TypeVar

import polars as pl

from features.records import DEFAULT_WINDOW_MONTHS, RETENTION_MONTHS, SCHEMAS, Source, conform

NOT_YET_KNOWN = "dated on or after the as-of date"
DISPUTE_OVERDUE = "dispute not answered by its due date: not counted until answered"
REPAIRED = "repaired: credit repair accepted"
FULFILLED = "court listing fulfilled"
REMOVED = "court listing removed"
MINOR = "minor penalty: never disclosed"
OUTSIDE_WINDOW = "outside its disclosure window"
PAST_RETENTION = f"older than {RETENTION_MONTHS} months"

REASONS = (NOT_YET_KNOWN, DISPUTE_OVERDUE, REPAIRED, FULFILLED, REMOVED, MINOR, OUTSIDE_WINDOW,
           PAST_RETENTION)

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` moved by whole calendar months, clamped to the month's end (as Polars does)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def month_index(day: dt.date) -> int:
    """Months since year 0: consecutive months differ by one."""
    return day.year * 12 + day.month


def month_index_expr(column: str) -> pl.Expr:
    return pl.col(column).dt.year().cast(pl.Int32) * 12 + pl.col(column).dt.month().cast(pl.Int32)


def is_monthly(source: Source | str) -> bool:
    """Person × month sources carry a month, dated on its last day."""
    spec = SCHEMAS[Source(source)]
    return spec.column(spec.date_column).month


def record_date(source: Source | str) -> pl.Expr:
    """The date a record became known: its own date, or the last day of its month."""
    spec = SCHEMAS[Source(source)]
    column = pl.col(spec.date_column)
    return column.dt.month_end() if is_monthly(source) else column


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


def elapsed_months_expr(column: str, as_of: dt.date) -> pl.Expr:
    """Whole calendar months from a date to `as_of`: the largest k with date + k months <= as_of.

    `date + diff months` falls in the as-of month on day min(date's day, the as-of month's
    length); it is after the as-of date exactly when that day is, and then one month fewer has
    elapsed. So `elapsed >= w` is `date + w months <= as_of`, without per-row date arithmetic.
    """
    last = calendar.monthrange(as_of.year, as_of.month)[1]
    diff = pl.lit(month_index(as_of), dtype=pl.Int32) - month_index_expr(column)
    late = pl.min_horizontal(pl.col(column).dt.day(), pl.lit(last, dtype=pl.Int8)) > as_of.day
    return diff - late.cast(pl.Int32)


def _lit(value: dt.date) -> pl.Expr:
    return pl.lit(value, dtype=pl.Date)


def _open_dispute(when: pl.Expr) -> pl.Expr:
    return (pl.col("dispute_opened_on") <= when) & (
        pl.col("dispute_closed_on").is_null() | (pl.col("dispute_closed_on") > when))


def under_dispute_expr(as_of: dt.date) -> pl.Expr:
    """True while a record's dispute is open as of `as_of` (received, not yet answered): the
    label "under dispute" shown beside the record, which may still count."""
    return _open_dispute(_lit(as_of)).fill_null(False)


def conditions(source: Source | str, as_of: dt.date) -> list[tuple[str, pl.Expr]]:
    """The rules of a source in order: (reason, condition under which the record does not count).

    Every condition is null-safe (a missing state date means the state never happened)."""
    source = Source(source)
    spec = SCHEMAS[source]
    date = pl.col(spec.date_column)
    cutoff = add_months(as_of, -RETENTION_MONTHS)
    if is_monthly(source):
        # month_end(d) >= T  <=>  d's month is T's month or later
        not_yet = date >= _lit(as_of.replace(day=1))
        # month_end(d) <= cutoff  <=>  d's month is before the month of the day after cutoff
        past = date < _lit((cutoff + dt.timedelta(days=1)).replace(day=1))
    else:
        not_yet = date >= _lit(as_of)
        past = date <= _lit(cutoff)
    when = _lit(as_of)
    rules = [
        (NOT_YET_KNOWN, not_yet),
        (DISPUTE_OVERDUE, _open_dispute(when) & (pl.col("dispute_due_on") < when)),
        (REPAIRED, pl.col("repaired_on") <= when),
    ]
    if source is Source.COURT:
        # A listing whose status is closed but whose closing date is missing counts as closed.
        closed = (pl.col("closed_on") <= when) | (
            pl.col("closed_on").is_null() & (pl.col("status") != "active"))
        rules += [
            (FULFILLED, closed & (pl.col("status") == "fulfilled")),
            (REMOVED, closed),
        ]  # an active listing counts however old it is: no retention rule
    elif source is Source.PENALTY:
        rules += [
            (MINOR, pl.col("severity") == "minor"),
            (OUTSIDE_WINDOW, elapsed_months_expr(spec.date_column, as_of) >= window_months_expr()),
            (PAST_RETENTION, past),
        ]
    else:
        rules.append((PAST_RETENTION, past))
    return [(text, condition.fill_null(False)) for text, condition in rules]


def reason_expr(source: Source | str, as_of: dt.date) -> pl.Expr:
    """Why a record does not count as of `as_of`; null when it counts."""
    rules = conditions(source, as_of)
    chain = pl.when(rules[0][1]).then(pl.lit(rules[0][0]))
    for text, condition in rules[1:]:
        chain = chain.when(condition).then(pl.lit(text))
    return chain.otherwise(pl.lit(None, dtype=pl.String))


def counts_expr(source: Source | str, as_of: dt.date) -> pl.Expr:
    """True when a record counts as of `as_of`: no rule applies (the same conditions as
    `reason_expr`, without building a string per record)."""
    return ~reduce(lambda a, b: a | b, (condition for _, condition in conditions(source, as_of)))


def counting(source: Source | str, frame: Frame, as_of: dt.date) -> Frame:
    """Only the records of a frame that count as of `as_of`."""
    return frame.filter(counts_expr(source, as_of))


def explain_records(source: Source | str, frame: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Every record with `counts`, `reason` and `under_dispute` columns: the records page."""
    return frame.with_columns(reason_expr(source, as_of).alias("reason"),
                              under_dispute_expr(as_of).alias("under_dispute")).with_columns(
        pl.col("reason").is_null().alias("counts")
    )


def reason(source: Source | str, record: dict[str, Any], as_of: dt.date) -> str | None:
    """Why one record does not count as of `as_of` (None when it counts)."""
    row = {"record_id": "r", "person_key": "p", **record}
    frame = conform(source, pl.DataFrame([row], infer_schema_length=None, strict=False))
    return frame.select(reason_expr(source, as_of)).item()


def counts(source: Source | str, record: dict[str, Any], as_of: dt.date) -> bool:
    """Whether one record counts as of `as_of`."""
    return reason(source, record, as_of) is None
