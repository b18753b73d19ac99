"""Table mode's checks: what a credit bureau's model-risk review asks of a modeller's own table
before a scorecard is fit on it, and of a table before it is scored.

Decisions (README "Decisions" repeats them):
- **Monotone by default.** A numeric column the catalog does not mention gets a direction
  inferred on the training rows: the sign of its Spearman rank correlation with the target
  (bad = 1). A positive correlation means more of it comes with more defaults, so more of it
  lowers the score (direction -1); a negative one raises it (+1). Spearman rather than
  Pearson because it is unchanged by any monotone transformation and by outliers, which is
  what a monotone constraint is about. The direction is then a constraint: the column's points
  never change direction. Only a significant correlation gives a direction (p <
  `DIRECTION_ALPHA`, two-sided): a column with no clear trend is left free rather than forced
  into a guessed one, its changes of direction counted on the card (with the opt-out of
  `direction_alpha=None`, every sign counts, an exact zero giving +1). A catalog
  declares `1`/`-1` to fix a direction, or `0` to leave a column free (a U-shape or any other
  shape, because the modeller says so); `--no-infer-directions` leaves undeclared columns free.
- **Stray text in a numeric column.** A text column of which at least 90% of the non-missing
  values read as numbers is numeric: the other values are stray text, reported (column, values,
  first rows, count) and treated as missing at training. At scoring, text in a column the model
  reads as a number is an error: a silent missing value would move a real person's score.
- **Useless columns are dropped with a warning:** all missing; one value and no missing value
  (constant); index-like (text or whole numbers, every row a different value, e.g. a row number
  or an account id), since such a column can only memorise rows. A column the catalog declares
  is never dropped as index-like (the modeller has spoken for it).
- **Unseen categories at scoring** are scored as missing (the model's "missing" bin), counted
  and reported, per column with the first rows.
Row numbers are 1-based data rows (the header is not a row), as a spreadsheet user would count
them after the header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata
from scipy.stats import t as student_t

from model.columns import TEXT_TYPES, row_numbers

# A direction is inferred only from a rank correlation significant at this level (two-sided);
# a weaker one leaves the column free. A constraint forced on a column with no clear trend is
# a guess that costs accuracy where the risk is U-shaped (German credit's loan amount: small
# and large loans are both riskier, ρ near 0; constrained, the trainer fell 0.002 AUC behind
# the WoE scorecard, whose binning picks a peak or valley by itself), while a significant
# trend is kept monotone, which is where a scorecard's promise matters. 0.05: the level a
# model reviewer reads as "the data show a direction".
DIRECTION_ALPHA = 0.05
NUMERIC_SHARE = 0.9  # share of non-missing values that must read as numbers
MIN_INDEX_ROWS = 20  # fewer rows than this and "every value distinct" proves nothing


@dataclass
class Prepared:
    """A table ready to train on: the frame (stray text now missing), the feature columns kept,
    and the warnings to show the modeller (also stored in the training report)."""

    frame: pl.DataFrame
    features: list[str]
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


def _examples(values: pl.Series, limit: int = 3) -> str:
    counts = values.value_counts(sort=True).head(limit)
    parts = [f"{v!r} ×{n}" if n > 1 else repr(v) for v, n in counts.iter_rows()]
    more = values.n_unique() - len(parts)
    return ", ".join(parts) + (f" and {more} other value(s)" if more > 0 else "")


def stray_text(column: pl.Series) -> pl.Series | None:
    """For a text column that is numeric but for a few stray values: a boolean mask of the stray
    rows. None when the column is not text, or is text for real (fewer than 90% numbers)."""
    if column.dtype not in TEXT_TYPES:
        return None
    text = column.cast(pl.String).str.strip_chars()
    present = text.is_not_null() & (text != "")
    numbers = text.cast(pl.Float64, strict=False).is_not_null()
    n_present = int(present.sum())
    if n_present == 0 or int(numbers.sum()) < NUMERIC_SHARE * n_present:
        return None
    return present & ~numbers


def numeric_text_to_null(frame: pl.DataFrame, features: list[str],
                         name: str = "the table") -> tuple[pl.DataFrame, list[str]]:
    """Columns that are numbers but for some stray text become Float64, the stray text missing;
    one warning per such column naming the values, the first rows and the count."""
    warnings: list[str] = []
    fixed = []
    for column in features:
        if column not in frame.columns:
            continue
        mask = stray_text(frame[column])
        if mask is None:
            continue
        if mask.any():
            warnings.append(
                f"column {column!r} in {name} is numeric but has {int(mask.sum())} text "
                f"value(s) ({_examples(frame[column].filter(mask))}) in {row_numbers(mask)}: "
                "treated as missing")
        fixed.append(pl.col(column).cast(pl.String).str.strip_chars()
                     .cast(pl.Float64, strict=False).alias(column))
    return (frame.with_columns(fixed) if fixed else frame), warnings


def useless_columns(frame: pl.DataFrame, features: list[str],
                    declared: dict[str, int] | None = None) -> dict[str, str]:
    """{column: why} for columns no scorecard should use: all missing, constant, index-like."""
    declared = declared or {}
    out: dict[str, str] = {}
    n = frame.height
    for column in features:
        series = frame[column]
        nulls = series.null_count()
        if nulls == n:
            out[column] = "every value is missing"
            continue
        distinct = series.n_unique()
        if distinct == 1:
            out[column] = f"every row has the same value ({series[0]!r})"
        elif (column not in declared and n >= MIN_INDEX_ROWS and nulls == 0 and distinct == n
              and (series.dtype in TEXT_TYPES or series.dtype.is_integer())):
            out[column] = ("index-like: every row has a different value "
                           f"({series.dtype}), so it can only memorise rows")
    return out


def check_columns(frame: pl.DataFrame, source: str, target: str | None = None) -> None:
    """A table read with the wrong delimiter comes back as one column: say so, with what was
    found, instead of training on nothing. A missing target lists the columns found."""
    found = ", ".join(repr(c) for c in frame.columns[:12]) + (
        f" and {frame.width - 12} more" if frame.width > 12 else "")
    if frame.width == 1:
        name = frame.columns[0]
        hint = next((f" (the header has {d!r}: is that the delimiter?)"
                     for d in (";", "\t", "|", ",") if d in name), "")
        raise ValueError(f"{source}: the delimiter gave one column, {name!r}{hint}; a "
                         "training table needs the target and at least one feature column")
    if target is not None and target not in frame.columns:
        raise ValueError(f"{source}: no column {target!r}; columns found: {found}")


def check_catalog(catalog: dict[str, Any], frame: pl.DataFrame, source: str,
                  target: str | None = None, ids: tuple[str, ...] | list[str] = ()) -> None:
    """Every catalog key must name a feature column: a misspelt key would silently leave the
    column it meant without its declared direction."""
    unknown = sorted(k for k in catalog if k not in frame.columns)
    if unknown:
        raise ValueError(f"catalog keys match no column of {source}: "
                         + ", ".join(repr(k) for k in unknown)
                         + "; columns: " + ", ".join(repr(c) for c in frame.columns))
    not_features = sorted(k for k in catalog if k == target or k in ids)
    if not_features:
        raise ValueError("the catalog declares a direction for the target or an id column: "
                         + ", ".join(repr(k) for k in not_features))


def prepare_table(frame: pl.DataFrame, target: str, *, source: str = "the table",
                  id_columns: tuple[str, ...] | list[str] = (),
                  catalog: dict[str, int] | None = None) -> Prepared:
    """Table mode's checks before training, in order: delimiter and target, catalog keys, stray
    text in numeric columns (→ missing, warned), useless columns (dropped, warned)."""
    catalog = catalog or {}
    check_columns(frame, source, target)
    check_catalog(catalog, frame, source, target, id_columns)
    candidates = [c for c in frame.columns if c != target and c not in id_columns]
    frame, warnings = numeric_text_to_null(frame, candidates, source)
    dropped = useless_columns(frame, candidates, catalog)
    declared_dropped = sorted(c for c in dropped if c in catalog)
    if declared_dropped:
        raise ValueError("the catalog declares columns that cannot be used: " + "; ".join(
            f"{c!r}: {dropped[c]}" for c in declared_dropped))
    warnings += [f"column {c!r} dropped: {why}" for c, why in dropped.items()]
    features = [c for c in candidates if c not in dropped]
    if not features:
        raise ValueError(f"{source}: no usable feature column is left")
    return Prepared(frame, features, warnings, dropped)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of x and y over the rows where x is known (0.0 when either
    does not vary there)."""
    known = ~np.isnan(x)
    if known.sum() < 3:
        return 0.0
    rx, ry = rankdata(x[known]), rankdata(y[known])
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def spearman_p(rho: float, n: int) -> float:
    """Two-sided p-value of a Spearman correlation `rho` on `n` rows (Student's t with n − 2
    degrees of freedom, as `scipy.stats.spearmanr` computes it); 1.0 when nothing can be said."""
    if n < 3 or not np.isfinite(rho):
        return 1.0
    if abs(rho) >= 1.0:
        return 0.0
    t = rho * np.sqrt((n - 2) / (1.0 - rho * rho))
    return float(2.0 * student_t.sf(abs(t), n - 2))


def infer_directions(x: np.ndarray, y: np.ndarray, features: list[str],
                     categories: dict[str, Any], declared: dict[str, int],
                     alpha: float | None = None
                     ) -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
    """Directions for the numeric features the catalog does not declare, from the sign of the
    Spearman correlation with the target on these (training) rows; each correlation; and its
    p-value. With `alpha`, a correlation whose p-value is not below it gives no direction (0,
    free): the data do not say which way the column moves risk (see DIRECTION_ALPHA)."""
    directions, rho, p = dict(declared), {}, {}
    target = np.asarray(y, dtype=np.float64)
    for j, name in enumerate(features):
        if name in declared or name in categories:
            continue
        rho[name] = spearman(x[:, j], target)
        p[name] = spearman_p(rho[name], int((~np.isnan(x[:, j])).sum()))
        if alpha is not None and p[name] >= alpha:
            directions[name] = 0
        else:
            directions[name] = -1 if rho[name] > 0 else 1
    return directions, rho, p


def direction_changes(points: pl.DataFrame) -> dict[str, int]:
    """How often each numeric feature's points change direction from bin to bin (missing and
    categories aside): 0 for a monotone feature, 1 for a U-shape."""
    out: dict[str, int] = {}
    numeric = points.filter(pl.col("lower").is_not_null())
    for (name,), group in numeric.group_by("feature", maintain_order=True):
        steps = np.diff(group["points"].to_numpy())
        signs = np.sign(steps[np.abs(steps) > 1e-9])
        out[str(name)] = int(np.sum(signs[1:] != signs[:-1])) if len(signs) > 1 else 0
    return out


def unseen_categories(frame: pl.DataFrame, categories: dict[str, list[str]]) -> list[str]:
    """One message per text column with values the model never saw: count, values, first rows.
    They are scored as missing (the encoding maps them to NaN)."""
    notes = []
    for column, known in categories.items():
        if column not in frame.columns:
            continue
        text = frame[column].cast(pl.String)
        mask = text.is_not_null() & ~text.is_in(known)
        if mask.any():
            notes.append(f"column {column!r}: {int(mask.sum())} row(s) with categories the "
                         f"model never saw ({_examples(text.filter(mask))}) in "
                         f"{row_numbers(mask)}: scored as missing")
    return notes
