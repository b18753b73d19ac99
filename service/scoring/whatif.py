"""What a person's score would be without one record: the exact points a record is worth.

The scorecard is a sum of per-feature points, but a record can feed several features (a court
listing is an active listing, an amount and a count), so its worth is not one table row: it is
the person's score re-computed from their own records with that record left out, by the same
feature builder and scorecard as the real score. Every variant of a person is built and scored
in one pass (a person has at most a few hundred records), so asking about every record costs
one feature build.

Used by disputes (warn before disputing a record that raises the score), credit repair and the
advice on the perks page (the points a record would restore).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl
from flask import Flask

from features.build import build_features
from features.records import Records, Source

Removal = tuple[str, str] | Iterable[tuple[str, str]] | None


def _pairs(removal: Removal) -> dict[str, set[str]]:
    """source → record ids that one variant leaves out (None: none; one `(source, id)`; or
    several)."""
    if removal is None:
        return {}
    if isinstance(removal, tuple) and len(removal) == 2 and isinstance(removal[0], str):
        removal = [removal]
    out: dict[str, set[str]] = {}
    for source, record_id in removal:
        out.setdefault(source, set()).add(record_id)
    return out


def scores_without(app: Flask, records: Records, removals: list[Removal],
                   as_of: dt.date) -> list[tuple[float, dict]]:
    """For each removal in `removals` — None (remove nothing), one `(source, record_id)`, or
    several of them at once (e.g. every adverse record: what clearing all of them gives) —
    the person's (score, features) as of `as_of` with those records removed, in order. All
    variants are built and scored in one pass."""
    frames: dict[str, list[pl.DataFrame]] = {s.value: [] for s in Source}
    for i, removal in enumerate(removals):
        variant = pl.lit(f"v{i:05d}")
        dropped = _pairs(removal)
        for source in Source:
            frame = records.get(source)
            if dropped.get(source.value):
                frame = frame.filter(~pl.col("record_id").is_in(sorted(dropped[source.value])))
            frames[source.value].append(frame.with_columns(variant.alias("person_key")))
    variants = Records(**{name: pl.concat(parts) for name, parts in frames.items()})
    keys = [f"v{i:05d}" for i in range(len(removals))]
    table = build_features(variants, as_of, keys)  # sorted by key, i.e. by removal
    scored = app.extensions["osmanthus.model"].scorecard.score_frame(table)
    return [(float(score), row) for score, row in
            zip(scored.score, table.iter_rows(named=True), strict=True)]


def record_worth(app: Flask, records: Records, source: str, record_id: str,
                 as_of: dt.date) -> float:
    """The points one record gives the person's score now: positive when it raises it."""
    (with_it, _), (without, _) = scores_without(app, records, [None, (source, record_id)], as_of)
    return with_it - without
