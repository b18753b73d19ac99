"""Bad rows on purpose: the synthetic city's `--corrupt-rate`, so that quarantine is exercised
end to end and a test can check it caught exactly the rows that were spoiled.

Each corrupted row gets exactly one bad field, and the field is chosen so that no cross-column
check is dragged in (a court listing's filed date is only spoiled while it has no closed date;
a penalty's decision date only when it has no repair date).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from features.identity import CHECK_CHARS
from features.records import Source

BAD_CHECK_DIGIT = "bad_check_digit"
BAD_LENGTH = "bad_length"
IMPOSSIBLE_DATE = "impossible_date"
FUTURE_DATE = "future_date"
NEGATIVE_AMOUNT = "negative_amount"
UNKNOWN_VALUE = "unknown_value"
KINDS = (BAD_CHECK_DIGIT, BAD_LENGTH, IMPOSSIBLE_DATE, FUTURE_DATE, NEGATIVE_AMOUNT, UNKNOWN_VALUE)

# Per source: the date column, the amount column, the closed-list column and a value outside it.
TARGETS: dict[Source, tuple[str, str, tuple[str, str] | None]] = {
    Source.SOCIAL_SECURITY: ("month", "contribution_base", ("status", "deferred")),
    Source.TRANSIT: ("month", "unpaid_fees", None),
    Source.COURT: ("filed_on", "amount", ("status", "suspended")),
    Source.PENALTY: ("decided_on", "fine", ("severity", "severe")),
    Source.POSITIVE: ("event_on", "hours", ("kind", "donation")),
}
MANIFEST_SCHEMA = {"source": pl.String, "row_number": pl.Int64, "field": pl.String,
                   "kind": pl.String}


def _date_safe(source: Source, frame: pl.DataFrame) -> np.ndarray:
    """Rows whose own date can be spoiled without also failing a cross-column check."""
    if source is Source.COURT:
        return frame.get_column("closed_on").is_null().to_numpy()
    if source is Source.PENALTY:
        return frame.get_column("repaired_on").is_null().to_numpy()
    return np.ones(frame.height, dtype=bool)


def _bad_id(value: str, kind: str, salt: int) -> str:
    if kind == BAD_LENGTH:
        return value[:17] if salt % 2 else value + str(salt % 10)
    wrong = CHECK_CHARS[(CHECK_CHARS.index(value[17]) + 1 + salt % 10) % 11]
    return value[:17] + wrong


def _bad_date(value: str, kind: str, month: bool, salt: int) -> str:
    if kind == FUTURE_DATE:
        return "2099" + value[4:]
    if month:
        return value[:5] + ("13" if salt % 2 else "00")
    return value[:5] + ("02-30" if salt % 2 else "04-31")


def corrupt(source: Source, frame: pl.DataFrame, rate: float, rng: np.random.Generator,
            first_row: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Spoil about `rate` of the rows; return the feed and the manifest of what was spoiled.

    `first_row` is the number of rows of this feed already written, so that manifest row
    numbers are 1-based positions in the whole file, as the validator counts them.
    """
    date_col, amount_col, closed = TARGETS[source]
    kinds = [k for k in KINDS if k != UNKNOWN_VALUE or closed is not None]
    hit = np.flatnonzero(rng.random(frame.height) < rate)
    kind = np.array(kinds)[rng.integers(0, len(kinds), len(hit))]
    salt = rng.integers(0, 1000, len(hit))
    dated = np.isin(kind, (IMPOSSIBLE_DATE, FUTURE_DATE))
    kind = np.where(dated & ~_date_safe(source, frame)[hit], NEGATIVE_AMOUNT, kind)

    fields = np.select([np.isin(kind, (BAD_CHECK_DIGIT, BAD_LENGTH)), dated & (kind != NEGATIVE_AMOUNT),
                        kind == NEGATIVE_AMOUNT],
                       ["resident_id", date_col, amount_col],
                       closed[0] if closed else "")
    columns = {}
    for field in np.unique(fields):
        rows = hit[fields == field]
        which, salts = kind[fields == field], salt[fields == field]
        series = frame.get_column(field)
        old = series.gather(rows).to_list()
        if field == "resident_id":
            new = [_bad_id(v, k, s) for v, k, s in zip(old, which, salts, strict=True)]
        elif field == date_col:
            new = [_bad_date(v, k, field == "month", s) for v, k, s in zip(old, which, salts,
                                                                           strict=True)]
        elif field == amount_col:
            new = [-(abs(v) + 1.0 + s / 10) for v, s in zip(old, salts, strict=True)]
        else:
            new = [closed[1]] * len(rows)
        columns[field] = series.scatter(rows, pl.Series(new, dtype=series.dtype))
    manifest = pl.DataFrame({
        "source": [source.value] * len(hit),
        "row_number": (hit + first_row + 1).astype(np.int64),
        "field": fields.astype(str),
        "kind": kind.astype(str),
    }, schema=MANIFEST_SCHEMA)
    return frame.with_columns(**columns) if columns else frame, manifest
