"""Reading a table's columns for a scorecard: which dtypes are text, and how to name the rows
where something is wrong (1-based data rows, the header not counted) in a message."""

from __future__ import annotations

import numpy as np
import polars as pl

TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum)


def row_numbers(mask: pl.Series | np.ndarray, limit: int = 5) -> str:
    """'rows 3, 17, 230 (3 in all)': the first 1-based data rows where `mask` holds."""
    rows = (np.flatnonzero(np.asarray(mask, dtype=bool)) + 1).tolist()
    shown = ", ".join(str(r) for r in rows[:limit]) + (", …" if len(rows) > limit else "")
    return f"row{'s' if len(rows) > 1 else ''} {shown} ({len(rows)} in all)"


def numbers_or_error(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A numeric feature that arrived as text: its numbers, or a ValueError naming the column,
    the stray values and their rows (a silent missing value would move a person's score)."""
    text = frame[name].cast(pl.String).str.strip_chars()
    numbers = text.cast(pl.Float64, strict=False)
    stray = text.is_not_null() & (text != "") & numbers.is_null()
    if stray.any():
        values = ", ".join(repr(v) for v in text.filter(stray).unique(maintain_order=True)
                           .head(3).to_list())
        raise ValueError(f"column {name!r} must hold numbers, but {int(stray.sum())} value(s) "
                         f"are text ({values}) in {row_numbers(stray)}")
    return pl.lit(numbers).alias(name)
