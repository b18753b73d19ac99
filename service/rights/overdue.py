"""Overdue disputes stop counting on time, not at the person's next re-score.

A record under an open dispute stops counting the day after its due date (`features.rules`:
with due date D it counts as of D, not as of D + 1). A stored score is as of the day it was
computed, so a score computed on or before D still counts the record after D has passed: it
is *stale*. Two things keep a stale score from being served as if current:

- On serving (`refreshed`: every citizen page; and the partner path in `eligibility`, which
  reads the same facts in its one query): a person's latest score whose as-of date is on or
  before the due date of one of their open disputes that has passed (due_on < today) is
  re-scored first, as of today, before the page or the partner's answer is given. The test
  is date-grained, so the cached score page is keyed by the clock's day too
  (`service.base.cache.page_key`): a page cached yesterday is never read today.
- A sweep (`sweep`: `osmanthus disputes sweep`, and each API worker once an hour,
  `OSMANTHUS_SWEEP_SECONDS`) re-scores exactly the people whose dispute went overdue since
  their last score, so stored scores and the admin's reads agree without anyone asking first
  (`osmanthus rescore --all` needs no sweep: it re-scores everyone as of today).

Both find the same people: open disputes with `due_on < today` whose person's newest score
row has `as_of <= due_on`. People never scored are left to be scored when first asked.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from flask import Flask
from sqlalchemy import Connection, select

from service.base import clock
from service.scoring.score import rescore
from service.store.tables import disputes, scores

log = logging.getLogger(__name__)

_LATEST_AS_OF = (select(scores.c.as_of).where(scores.c.person_key == disputes.c.person_key)
                 .order_by(scores.c.id.desc()).limit(1).correlate(disputes).scalar_subquery())


def stale_people(connection: Connection, today: dt.date,
                 person_keys: list[str] | None = None) -> list[str]:
    """People (of `person_keys`, or all) whose newest score still counts a record whose
    dispute went unanswered past its due date, sorted."""
    query = (select(disputes.c.person_key).distinct()
             .where(disputes.c.state == "open", disputes.c.due_on < today,
                    disputes.c.due_on >= _LATEST_AS_OF))
    if person_keys is not None:
        if not person_keys:
            return []
        query = query.where(disputes.c.person_key.in_(person_keys))
    return sorted(connection.execute(query).scalars())


def refreshed(app: Flask, person_key: str) -> dict | None:
    """A new score row as of today when the person's latest one is stale, else None (also
    when no model is loaded: then the stored score is all there is)."""
    if not app.extensions["osmanthus.model"].ready:
        return None
    with app.extensions["osmanthus.engine"].connect() as connection:
        if not stale_people(connection, clock.today(app), [person_key]):
            return None
    return rescore(app, person_key)


def sweep(app: Flask) -> list[str]:
    """Re-score everyone whose dispute went overdue since their last score; their keys."""
    if not app.extensions["osmanthus.model"].ready:
        return []
    with app.extensions["osmanthus.engine"].connect() as connection:
        keys = stale_people(connection, clock.today(app))
    for key in keys:
        rescore(app, key)
    return keys


def start_sweeping(app: Flask, seconds: float) -> threading.Event | None:
    """Sweep every `seconds` in a daemon thread of this process; returns the event that stops
    it (None when `seconds` <= 0). Several workers sweeping at once is harmless: a person
    re-scored by one is no longer stale for the next."""
    if seconds <= 0:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                sweep(app)
            except Exception:  # noqa: BLE001 - a failed sweep must not end the thread
                log.exception("dispute sweep failed")

    threading.Thread(target=loop, name="osmanthus-dispute-sweep", daemon=True).start()
    return stop
