"""A feed with a share of bad rows of every kind the validator can name: every good row is
stored, every bad row is quarantined with exactly the reason it was spoiled with, and the
store's counts reconcile (records + quarantine == rows read, per reason == injected).

`spoiled_feed` builds the feed (CSV, all strings, as a source would send it) from the source's
schema itself: every column rule (`features.records.Column`), every resident-ID reason
(`features.identity.id_problem_expr`), every cross-column check (`features.validate.CHECKS`)
and the in-feed duplicate. `bench/faults.py` runs it at 100,000 rows per source.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest
from sqlalchemy import func, select

from features import identity, validate
from features.identity import check_digit, make_resident_id
from features.records import SCHEMAS, Column, Source
from features.validate import CHECKS

MONTHS = [f"{2022 + m // 12}-{1 + m % 12:02d}" for m in range(48)]  # 2022-01 … 2025-12
Row = dict[str, str]


@dataclass(frozen=True)
class Spoiler:
    """One way to spoil a good row: the field it breaks and the reason the validator gives."""

    kind: str
    field: str
    reason: str
    spoil: Callable[[Row], None]


# --- good rows --------------------------------------------------------------------------------
def resident(k: int) -> str:
    """The k-th distinct valid resident ID (region and sequence together are unique in k)."""
    born = dt.date(1950 + k % 50, 1 + (k // 50) % 12, 1 + (k // 600) % 28)
    return make_resident_id(110000 + k // 1000, born, k % 1000)


def good_row(source: Source, i: int) -> Row:
    """The i-th good row of a feed; (person, natural key) is unique in i."""
    cycle = i % 3
    if source in (Source.SOCIAL_SECURITY, Source.TRANSIT):
        row = {"resident_id": resident(i // len(MONTHS)), "month": MONTHS[i % len(MONTHS)]}
        if source is Source.SOCIAL_SECURITY:
            return {**row, "status": ("paid", "missed", "exempt")[cycle],
                    "contribution_base": "5200.5", "arrears": "0"}
        return {**row, "rides": "31", "bike_rides": "4", "overdue_returns": "0",
                "unpaid_fees": "0.0", "fare_evasions": "0", "damage_incidents": "0"}
    person = resident(i // 3)
    if source is Source.COURT:
        status = ("active", "fulfilled", "removed")[cycle]
        return {"case_no": f"C-{i}", "resident_id": person, "filed_on": "2023-03-15",
                "amount": "12000", "status": status,
                "closed_on": "" if status == "active" else "2024-01-10"}
    if source is Source.PENALTY:
        severity = ("minor", "general", "serious")[cycle]
        return {"decision_no": f"D-{i}", "resident_id": person, "decided_on": "2024-03-01",
                "category": ("traffic", "tax", "market", "other")[i % 4], "severity": severity,
                "fine": "200", "window_months": {"general": "6", "serious": "24"}.get(severity, ""),
                "repaired_on": "2024-06-01" if i % 7 == 0 else ""}
    kind = ("volunteering", "blood_donation", "honour")[cycle]
    return {"event_no": f"E-{i}", "resident_id": person, "event_on": "2024-05-05", "kind": kind,
            "hours": "3" if kind == "volunteering" else "0"}


# --- ways to spoil one ------------------------------------------------------------------------
def _set(field: str, value: str) -> Callable[[Row], None]:
    def spoil(row: Row) -> None:
        row[field] = value
    return spoil


def _set_all(**values: str) -> Callable[[Row], None]:
    def spoil(row: Row) -> None:
        row.update(values)
    return spoil


def _id(make: Callable[[str], str]) -> Callable[[Row], None]:
    def spoil(row: Row) -> None:
        row["resident_id"] = make(row["resident_id"])
    return spoil


def _not_a_real_birth_date(value: str) -> str:
    first17 = value[:6] + "19800230" + value[14:17]
    return first17 + check_digit(first17)


def _wrong_check_digit(value: str) -> str:
    chars = identity.CHECK_CHARS
    return value[:17] + chars[(chars.index(value[17]) + 1) % 11]


ID_SPOILERS = [
    Spoiler("id_missing", "resident_id", "missing", _set("resident_id", "")),
    Spoiler("id_length", "resident_id", "must be 18 characters, got 17", _id(lambda v: v[:17])),
    Spoiler("id_shape", "resident_id", "must be 17 digits followed by a digit or X",
            _id(lambda v: v[:10] + "A" + v[11:])),
    Spoiler("id_birth_not_real", "resident_id", "birth date is not a real date",
            _id(_not_a_real_birth_date)),
    Spoiler("id_birth_out_of_range", "resident_id", "birth date out of range",
            _id(lambda v: make_resident_id(int(v[:6]), dt.date(1850, 1, 1), int(v[14:17])))),
    Spoiler("id_check_digit", "resident_id", "check digit wrong", _id(_wrong_check_digit)),
]

CHECK_SPOILERS: dict[str, list[Spoiler]] = {  # each sets what its check reads, all of it
    "closed_on_matches_status": [
        Spoiler("closed_while_active", "closed_on", "must be empty while status is active",
                _set_all(status="active", closed_on="2024-01-10")),
        Spoiler("not_closed_when_over", "closed_on",
                "required when status is fulfilled or removed",
                _set_all(status="fulfilled", closed_on="")),
    ],
    "closed_on_not_before_filed_on": [
        Spoiler("closed_before_filed", "closed_on", "before filed_on",
                _set_all(status="removed", filed_on="2023-03-15", closed_on="2023-01-01")),
    ],
    "window_fits_severity": [
        Spoiler("general_window", "window_months", "must be 3–12 months for a general penalty",
                _set_all(severity="general", window_months="24")),
        Spoiler("serious_window", "window_months", "must be 12–36 months for a serious penalty",
                _set_all(severity="serious", window_months="6")),
    ],
    "repaired_on_not_before_decided_on": [
        Spoiler("repaired_before_decided", "repaired_on", "before decided_on",
                _set_all(decided_on="2024-03-01", repaired_on="2024-01-01")),
    ],
}


def _column_spoilers(col: Column) -> list[Spoiler]:
    """Every rule of one column, broken alone."""
    name, out = col.name, []
    if col.required:
        out.append(Spoiler(f"{name}:missing", name, "missing", _set(name, "")))
    if col.month:
        out.append(Spoiler(f"{name}:not_a_month", name, "not a month (expected YYYY-MM)",
                           _set(name, "2024-13")))
    elif col.dtype == pl.Date:
        out.append(Spoiler(f"{name}:not_a_date", name, "not a date (expected YYYY-MM-DD)",
                           _set(name, "2024-02-30")))
    elif col.dtype == pl.Int64:
        out.append(Spoiler(f"{name}:not_whole", name, "not a whole number", _set(name, "1.5")))
    elif col.dtype == pl.Float64:
        out.append(Spoiler(f"{name}:not_a_number", name, "not a number", _set(name, "12,5")))
    if col.allowed is not None:
        out.append(Spoiler(f"{name}:not_allowed", name,
                           "must be one of: " + ", ".join(col.allowed), _set(name, "bogus")))
    if col.minimum is not None:
        out.append(Spoiler(f"{name}:below_minimum", name, f"must be ≥ {col.minimum:g}",
                           _set(name, f"{col.minimum - 1:g}")))
    if col.maximum is not None:
        out.append(Spoiler(f"{name}:above_maximum", name, f"must be ≤ {col.maximum:g}",
                           _set(name, f"{col.maximum + 1:g}")))
    if col.not_in_future:
        out.append(Spoiler(f"{name}:future", name, "in the future",
                           _set(name, "2099-01" if col.month else "2099-01-01")))
    # the bounds every column keeps (features/validate.py)
    if col.dtype == pl.Date:
        out.append(Spoiler(f"{name}:before_the_data", name,
                           f"before {validate.EARLIEST_RECORD_DATE.year}",
                           _set(name, "1980-01" if col.month else "1980-01-01")))
    elif col.dtype in (pl.Int64, pl.Float64) and col.maximum is None:
        out.append(Spoiler(f"{name}:beyond_bound", name, f"beyond ±{validate.MAX_ABS_NUMBER:g}",
                           _set(name, "10000000000000000")))
    return out


def spoilers(source: Source) -> list[Spoiler]:
    """Every way a row of this source can be bad, except the duplicate (see `spoiled_feed`)."""
    spec = SCHEMAS[source]
    found = list(ID_SPOILERS)
    for col in spec.columns:
        if col.name != "resident_id":
            found += _column_spoilers(col)
    for check in spec.checks:
        found += CHECK_SPOILERS[check]
    return found


DUPLICATE = "duplicate"


def spoiled_feed(source: Source, rows: int, bad_share: float = 0.05,
                 seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A feed of `rows` rows, `bad_share` of them bad, spread evenly over every kind, and the
    quarantine it must give: row_number, field, reason, kind (row numbers 1-based)."""
    rng = np.random.default_rng(seed)
    feed = [good_row(source, i) for i in range(rows)]
    kinds = [*spoilers(source), DUPLICATE]
    bad = rng.choice(rows, size=round(rows * bad_share), replace=False)
    taken = set(bad.tolist())
    natural_key = SCHEMAS[source].natural_key
    expected = []
    for n, i in enumerate(sorted(bad.tolist())):
        kind = kinds[n % len(kinds)]
        if kind == DUPLICATE:  # a later good row re-sends this one's record: the later wins
            later = next((k for k in range(i + 1, rows) if k not in taken), None)
            if later is not None:
                taken.add(later)
                for name in ("resident_id", *natural_key):
                    feed[later][name] = feed[i][name]
                expected.append((i + 1, natural_key[0], f"duplicate of row {later + 1} (same "
                                 f"person and {', '.join(natural_key)})", DUPLICATE))
                continue
            kind = kinds[0]
        kind.spoil(feed[i])
        expected.append((i + 1, kind.field, kind.reason, kind.kind))
    frame = pl.DataFrame(feed, schema={name: pl.String for name in SCHEMAS[source].column_names})
    quarantine = pl.DataFrame(expected, schema={"row_number": pl.Int64, "field": pl.String,
                                                "reason": pl.String, "kind": pl.String},
                              orient="row")
    return frame, quarantine


@dataclass
class Reconciled:
    rows_read: int
    stored: int
    quarantined: int
    by_kind: dict[str, int]


def reconcile(engine, feed_id: str, source: Source, expected: pl.DataFrame,
              rows: int) -> Reconciled:
    """Check the store against the feed exactly; the counts, for a report."""
    from service.store.tables import RECORD_TABLES, feeds, quarantine

    table = RECORD_TABLES[source]
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(table)
                                    .where(table.c.feed_id == feed_id)).scalar_one()
        got = connection.execute(select(quarantine.c.row_number, quarantine.c.field,
                                        quarantine.c.reason)
                                 .where(quarantine.c.feed_id == feed_id)).all()
        feed = connection.execute(select(feeds).where(feeds.c.feed_id == feed_id)).one()
    want = {(r, f, why) for r, f, why, _ in expected.iter_rows()}
    assert len(got) == len(want) and {tuple(row) for row in got} == want
    assert stored == rows - len(want), "every good row stored, no more"
    assert stored + len(got) == rows == feed.rows_read
    assert (feed.rows_stored, feed.rows_quarantined, feed.status) == (stored, len(got),
                                                                       "complete")
    by_reason = Counter(why for _, _, why in got)
    assert by_reason == Counter(expected["reason"].to_list())
    return Reconciled(rows, stored, len(got), dict(Counter(expected["kind"].to_list())))


# --- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", list(Source), ids=lambda s: s.value)
def test_a_feed_with_every_kind_of_bad_row_reconciles_exactly_through_the_store(
        engine, tmp_path, source):
    from service.store.ingest import ingest_feed

    rows = 2_000
    frame, expected = spoiled_feed(source, rows, 0.05, seed=list(Source).index(source))
    path = tmp_path / f"{source.value}.csv"
    frame.write_csv(path)
    summary = ingest_feed(engine, path, source)
    assert (summary.rows_read, summary.rows_quarantined) == (rows, expected.height)
    result = reconcile(engine, summary.feed_id, source, expected, rows)
    assert set(result.by_kind) == {s.kind for s in spoilers(source)} | {DUPLICATE}
    again = ingest_feed(engine, path, source)  # a feed sent twice changes nothing
    assert again.changed_persons == set()
    reconcile(engine, summary.feed_id, source, expected, rows)


def test_every_reason_the_validator_can_give_is_injected_somewhere():
    """A new rule in validate.py or identity.py without a spoiler here fails this test."""
    text = inspect.getsource(validate) + inspect.getsource(identity.id_problem_expr)
    literals = re.findall(r'pl\.(?:lit|format)\(f?"([^"{]*)', text)
    prefixes = {p for p in literals if len(p) >= 4 and re.search(r"[a-z]{2}", p)}
    reasons = {s.reason for source in Source for s in spoilers(source)}
    reasons.add("duplicate of row 2 (same person and month)")
    missing = sorted(p for p in prefixes if not any(r.startswith(p) for r in reasons))
    assert not missing, f"reasons never injected: {missing}"
    assert set(CHECK_SPOILERS) == set(CHECKS), "every cross-column check has its spoilers"


def test_the_city_generators_corruption_kinds_are_all_covered():
    """features/city_corrupt.py spoils IDs, dates, amounts and closed lists: each is a kind
    here too, so the city's quarantine is a subset of what this feed exercises."""
    from features import city_corrupt

    covers = {city_corrupt.BAD_CHECK_DIGIT: "id_check_digit", city_corrupt.BAD_LENGTH: "id_length",
              city_corrupt.IMPOSSIBLE_DATE: ":not_a", city_corrupt.FUTURE_DATE: ":future",
              city_corrupt.NEGATIVE_AMOUNT: ":below_minimum",
              city_corrupt.UNKNOWN_VALUE: ":not_allowed"}
    assert set(covers) == set(city_corrupt.KINDS)
    kinds = {s.kind for source in Source for s in spoilers(source)}
    assert all(any(want in kind for kind in kinds) for want in covers.values())
