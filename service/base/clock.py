"""The service's one clock: what "now" and "today" are for every rights flow, the page and the
API (disputes, repairs, consents, reviews, partner decisions, the audit log, online scoring).

Before there was one clock, disputes and repairs were dated by the scoring as-of date while
consents, reviews and the audit log used the wall clock, and the demo page showed a dispute
filed "2026-01-01" beside a consent granted "2026-12-06". Now everything that a citizen, a
partner or an admin can see asks `Clock.now()` / `Clock.today()`:

- Production (`OSMANTHUS_AS_OF` unset; production refuses it): the wall clock. "Today" is the
  city's calendar date (China Standard Time, UTC+8, no summer time), not the server's local
  date, so a dispute received at 07:30 Beijing time is dated that day on a server in UTC.
- A city that lives in its own time (the demo: its records run to December 2025):
  `OSMANTHUS_AS_OF=D` starts the city's clock at D 00:00 city time, and
  `OSMANTHUS_CLOCK_SINCE=<ISO instant>` says at which wall-clock instant that was; from then on
  the clock runs at real speed (a dispute filed in the demo is due 20 real days later; a
  consent ends at the end of its day in the city's calendar). Every process given the same two
  settings reads the same time. `osmanthus demo` sets both when it builds the city.
- `OSMANTHUS_AS_OF=D` alone freezes the clock at D 12:00 city time (tests, and a scratch
  environment): the date never changes, so nothing ages by itself. Tests move a frozen clock
  by giving the app another config (`config.with_(as_of=...)`).

A score is "as of" a date of this clock: online re-scores are as of `today()`; the batch scores
as of `today()` unless told a date (the demo also scores the three quarter-starts before it, so
its trend has four points). So every date a page shows (a score's as-of date, a dispute's
received and due dates, a consent's grant and end, a review, an access-log entry) comes from
the same world.

Not on this clock, on purpose: token expiry and signing (`exp`, `iat`: a frozen demo clock must
never make a token immortal), rate limits, caches' time-to-live, feed receipts, the model
registry's and the scores table's own bookkeeping (`created_at`), which no page shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CITY_TZ = dt.timezone(dt.timedelta(hours=8), "CST")
FROZEN_AT = dt.time(12)  # a frozen day's time: noon, the same date in UTC and in the city


@dataclass(frozen=True)
class Clock:
    """Wall clock (`start` None), frozen at `start` noon (no `since`), or running from `start`
    00:00 city time, which began at the wall-clock instant `since`."""

    start: dt.date | None = None
    since: dt.datetime | None = None

    def now(self) -> dt.datetime:
        """This moment, an aware UTC datetime."""
        wall = dt.datetime.now(dt.UTC)
        if self.start is None:
            return wall
        if self.since is None:
            return dt.datetime.combine(self.start, FROZEN_AT, CITY_TZ).astimezone(dt.UTC)
        began = dt.datetime.combine(self.start, dt.time(), CITY_TZ)
        return (began + (wall - self.since)).astimezone(dt.UTC)

    def today(self) -> dt.date:
        """The city's calendar date now."""
        return city_date(self.now())

    @property
    def kind(self) -> str:
        return "wall" if self.start is None else "frozen" if self.since is None else "running"


def city_date(moment: dt.datetime) -> dt.date:
    """The city's calendar date of an aware moment."""
    return moment.astimezone(CITY_TZ).date()


def clock_of(config) -> Clock:
    """The clock a `Config` (or anything with `as_of` / `clock_since`) describes."""
    return Clock(getattr(config, "as_of", None), getattr(config, "clock_since", None))


def now(app) -> dt.datetime:
    """The app's "now" (`app.extensions["osmanthus.config"]`'s clock)."""
    return clock_of(app.extensions["osmanthus.config"]).now()


def today(app) -> dt.date:
    """The app's "today": the city's date on the app's clock."""
    return clock_of(app.extensions["osmanthus.config"]).today()
