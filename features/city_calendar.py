"""The synthetic city's calendar and the small helpers every feed's simulation shares: months
as indices, random days within a month, strings from a closed list."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.city_people import month_index


@dataclass(frozen=True)
class Calendar:
    """The span of months the city covers, as month indices (year*12 + month-1)."""

    start: int
    months: int

    @classmethod
    def between(cls, start: str, end: str) -> Calendar:
        first = month_index(dt.date.fromisoformat(f"{start}-01"))
        last = month_index(dt.date.fromisoformat(f"{end}-01"))
        if last < first:
            raise ValueError("the span ends before it starts")
        return cls(first, last - first + 1)

    @property
    def index(self) -> np.ndarray:
        return self.start + np.arange(self.months)

    @property
    def labels(self) -> pl.Series:
        return pl.Series([f"{i // 12:04d}-{i % 12 + 1:02d}" for i in self.index], dtype=pl.String)

    @property
    def first_day(self) -> np.ndarray:
        return (self.index - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]")

    @property
    def days(self) -> np.ndarray:
        return ((self.index + 1 - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]")
                - self.first_day).astype(np.int64)

    @property
    def last_day(self) -> dt.date:
        return (self.first_day[-1] + np.timedelta64(int(self.days[-1]) - 1, "D")).item()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def iso_days(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype("datetime64[D]")).dt.strftime("%Y-%m-%d")


def event_days(rng: np.random.Generator, cal: Calendar, t: np.ndarray) -> np.ndarray:
    """A random day within each event's month (t may be before the span: negative)."""
    month = cal.start + np.asarray(t) - 1970 * 12
    first = month.astype("datetime64[M]").astype("datetime64[D]")
    days = ((month + 1).astype("datetime64[M]").astype("datetime64[D]") - first).astype(np.int64)
    offset = np.floor(rng.random(len(month)) * days).astype(np.int64)
    return first + offset.astype("timedelta64[D]")


def from_list(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    """Strings from a closed list by position: far cheaper than numpy string arrays."""
    return pl.Series(values, dtype=pl.String).gather(index.astype(np.int64))
