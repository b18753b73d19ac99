"""The feed validator: every rule of every source, inputs, stable record_ids, secrecy, the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re

import polars as pl
import pytest
from click.testing import CliRunner

from features import records as rec
from features import validate as val
from features.identity import make_resident_id
from features.records import SCHEMAS, Source, record_schema
from features.validate import FeedError, validate_feed
from service.cli.main import main

TODAY = dt.date(2025, 6, 1)
SECRET = b"test-secret"
IDS = [make_resident_id(110101 + i, dt.date(1970 + i, 1 + i, 1 + i), 10 + i) for i in range(3)]

GOOD: dict[Source, dict[str, list[str | None]]] = {
    Source.SOCIAL_SECURITY: {"month": ["2024-01", "2024-02", "2024-03"],
                             "status": ["paid", "missed", "paid"],
                             "contribution_base": ["5000", "5000.5", "0"],
                             "arrears": ["0", "120.25", "0"], "paid_early": ["1", None, "0"]},
    Source.TRANSIT: {"month": ["2024-01", "2024-02", "2024-03"], "rides": ["10", "0", "3"],
                     "bike_rides": ["2", "0", "1"], "overdue_returns": ["0", "1", "0"],
                     "unpaid_fees": ["0", "4.5", "0"], "fare_evasions": ["0", "0", "1"],
                     "damage_incidents": ["0", "0", "0"], "paid_early": ["1", "0", None]},
    Source.COURT: {"case_no": ["(2023)京0101执1号", "(2023)京0101执2号", "C-3"],
                   "filed_on": ["2023-01-05", "2023-02-05", "2023-03-05"],
                   "amount": ["1000", "2500.5", "0"],
                   "status": ["active", "fulfilled", "removed"],
                   "closed_on": [None, "2024-01-01", "2024-02-01"]},
    Source.PENALTY: {"decision_no": ["D1", "D2", "D3"],
                     "decided_on": ["2024-01-02", "2024-02-02", "2024-03-02"],
                     "category": ["traffic", "tax", "other"],
                     "severity": ["general", "serious", "minor"],
                     "fine": ["200", "5000", "50"], "window_months": ["6", None, None],
                     "repaired_on": [None, "2024-05-01", None]},
    Source.POSITIVE: {"event_no": ["E1", "E2", "E3"],
                      "event_on": ["2024-01-09", "2024-02-09", "2024-03-09"],
                      "kind": ["volunteering", "blood_donation", "honour"],
                      "hours": ["3.5", "0", "0"]},
}


def feed(source: Source, **changes: str | None) -> pl.DataFrame:
    """Three good rows of a source as strings; `changes` replace row 2's values."""
    columns = {"resident_id": list(IDS), **{k: list(v) for k, v in GOOD[source].items()}}
    for name, value in changes.items():
        columns[name][1] = value
    return pl.DataFrame(columns, schema={name: pl.String for name in columns})


def run(frame, source: Source, **kwargs) -> val.ValidationResult:
    return validate_feed(frame, source, secret=SECRET, today=TODAY, **kwargs)


BAD_ID = IDS[1][:17] + ("0" if IDS[1][17] != "0" else "1")
MATRIX = [
    *[(s, "resident_id", BAD_ID, "check digit wrong") for s in Source],
    *[(s, "resident_id", "", "missing") for s in Source],
    *[(s, "resident_id", IDS[1][:10], "must be 18 characters, got 10") for s in Source],
    (Source.SOCIAL_SECURITY, "month", "2024-13", "not a month (expected YYYY-MM)"),
    (Source.SOCIAL_SECURITY, "month", "2030-01", "in the future"),
    (Source.SOCIAL_SECURITY, "status", "late", "must be one of: paid, missed, exempt"),
    (Source.SOCIAL_SECURITY, "contribution_base", "-1", "must be ≥ 0"),
    (Source.SOCIAL_SECURITY, "arrears", "abc", "not a number"),
    (Source.TRANSIT, "month", None, "missing"),
    (Source.TRANSIT, "month", "2024-01-15", "not a month (expected YYYY-MM)"),
    (Source.TRANSIT, "rides", "1.5", "not a whole number"),
    (Source.TRANSIT, "bike_rides", "-1", "must be ≥ 0"),
    (Source.TRANSIT, "overdue_returns", "many", "not a whole number"),
    (Source.TRANSIT, "unpaid_fees", "-0.5", "must be ≥ 0"),
    (Source.TRANSIT, "unpaid_fees", "inf", "not a number"),
    (Source.TRANSIT, "fare_evasions", "-2", "must be ≥ 0"),
    (Source.TRANSIT, "damage_incidents", "", "missing"),
    (Source.SOCIAL_SECURITY, "paid_early", "-1", "must be ≥ 0"),
    (Source.TRANSIT, "paid_early", "2", "must be ≤ 1"),
    (Source.TRANSIT, "paid_early", "yes", "not a whole number"),
    (Source.COURT, "case_no", "  ", "missing"),
    (Source.COURT, "filed_on", "2023-02-30", "not a date (expected YYYY-MM-DD)"),
    (Source.COURT, "filed_on", "2030-01-01", "in the future"),
    (Source.COURT, "amount", "-5", "must be ≥ 0"),
    (Source.COURT, "status", "pending", "must be one of: active, fulfilled, removed"),
    (Source.COURT, "closed_on", "yesterday", "not a date (expected YYYY-MM-DD)"),
    (Source.PENALTY, "decision_no", None, "missing"),
    (Source.PENALTY, "decided_on", "02/02/2024", "not a date (expected YYYY-MM-DD)"),
    (Source.PENALTY, "category", "parking", "must be one of: traffic, environment, tax, "
                                            "market, public_order, other"),
    (Source.PENALTY, "severity", "huge", "must be one of: minor, general, serious"),
    (Source.PENALTY, "fine", "-1", "must be ≥ 0"),
    (Source.PENALTY, "window_months", "-1", "must be ≥ 0"),
    (Source.PENALTY, "window_months", "x", "not a whole number"),
    (Source.PENALTY, "repaired_on", "2030-01-01", "in the future"),
    (Source.POSITIVE, "event_no", "", "missing"),
    (Source.POSITIVE, "event_on", "2025-06-02", "in the future"),
    (Source.POSITIVE, "kind", "gift", "must be one of: volunteering, blood_donation, honour"),
    (Source.POSITIVE, "hours", "1001", "must be ≤ 1000"),
    (Source.POSITIVE, "hours", "-1", "must be ≥ 0"),
    # the bounds every column keeps (a sum of 1e308 is inf; year 1 breaks month arithmetic)
    (Source.TRANSIT, "unpaid_fees", "1e308", "beyond ±1e+15"),
    (Source.SOCIAL_SECURITY, "month", "0001-01", "before 1990"),
    (Source.COURT, "filed_on", "1899-12-31", "before 1990"),
]


def test_the_matrix_covers_every_column_of_every_source():
    covered = {(s, f) for s, f, _, _ in MATRIX}
    assert covered == {(s, c.name) for s, spec in SCHEMAS.items() for c in spec.columns}


@pytest.mark.parametrize(("source", "field", "value", "reason"), MATRIX,
                         ids=[f"{s.value}-{f}-{r}" for s, f, _, r in MATRIX])
def test_each_bad_field_quarantines_exactly_its_row(source, field, value, reason):
    result = run(feed(source, **{field: value}), source)
    assert result.quarantine.rows(named=True) == [{
        "source": source.value, "row_number": 2, "field": field, "reason": reason,
        "problems": f"{field}: {reason}"}]
    assert result.records.schema == pl.Schema(record_schema(source))
    assert result.records.height == 2
    clean = run(feed(source), source).records
    assert result.records.equals(clean.filter(pl.int_range(pl.len()) != 1))


def test_good_rows_come_out_typed():
    result = run(feed(Source.PENALTY), Source.PENALTY)
    row = result.records.row(1, named=True)
    assert row["decided_on"] == dt.date(2024, 2, 2) and row["repaired_on"] == dt.date(2024, 5, 1)
    assert row["fine"] == 5000.0 and row["window_months"] is None
    assert row["dispute_opened_on"] is None and "resident_id" not in result.records.columns
    transit = run(feed(Source.TRANSIT), Source.TRANSIT).records
    assert transit["month"].to_list() == [dt.date(2024, m, 1) for m in (1, 2, 3)]
    assert transit["rides"].to_list() == [10, 0, 3]
    assert transit["person_key"].n_unique() == 3 and transit["record_id"].n_unique() == 3


def test_all_problems_of_a_row_are_listed_and_the_first_field_named():
    result = run(feed(Source.TRANSIT, rides="-3", month="soon", resident_id=BAD_ID),
                 Source.TRANSIT)
    row = result.quarantine.row(0, named=True)
    assert (row["field"], row["reason"]) == ("resident_id", "check digit wrong")
    assert row["problems"] == ("resident_id: check digit wrong; "
                               "month: not a month (expected YYYY-MM); rides: must be ≥ 0")


def test_whitespace_is_stripped():
    frame = feed(Source.SOCIAL_SECURITY, status="  missed ", month=" 2024-02",
                 resident_id=f"  {IDS[1]}\t")
    assert run(frame, Source.SOCIAL_SECURITY).records.equals(
        run(feed(Source.SOCIAL_SECURITY), Source.SOCIAL_SECURITY).records)


@pytest.mark.parametrize("source", list(Source))
def test_csv_parquet_and_dataframe_give_the_same_records(source, tmp_path):
    frame = feed(source)
    frame.write_csv(tmp_path / "feed.csv")
    frame.write_parquet(tmp_path / "strings.parquet")
    typed = run(frame, source).records
    typed_feed = typed.drop("record_id", "person_key").with_columns(
        pl.Series("resident_id", IDS))
    if SCHEMAS[source].column(SCHEMAS[source].date_column).month:  # a Date mid-month is its month
        typed_feed = typed_feed.with_columns(pl.col("month").dt.offset_by("14d"))
    typed_feed.write_parquet(tmp_path / "typed.parquet")
    for path in ("feed.csv", "strings.parquet", "typed.parquet"):
        assert run(tmp_path / path, source).records.equals(typed), path
    assert run(str(tmp_path / "feed.csv"), source.value).records.equals(typed)


def test_record_ids_are_stable_and_depend_on_key_and_secret():
    first = run(feed(Source.COURT), Source.COURT).records
    again = run(feed(Source.COURT), Source.COURT).records
    assert first["record_id"].to_list() == again["record_id"].to_list()
    other_secret = validate_feed(feed(Source.COURT), Source.COURT, secret=b"x", today=TODAY)
    assert set(other_secret.records["record_id"]).isdisjoint(first["record_id"])
    changed = run(feed(Source.COURT, case_no="(2023)京0101执9号"), Source.COURT).records
    assert changed["record_id"].to_list()[0::2] == first["record_id"].to_list()[0::2]
    assert changed["record_id"][1] != first["record_id"][1]
    # a new state of the same listing (fulfilled later) keeps its record_id
    updated = run(feed(Source.COURT, status="removed", closed_on="2024-03-01"), Source.COURT)
    assert updated.records["record_id"].equals(first["record_id"])


def _reference_record_id(source: str, person_key: str, natural: list[object]) -> str:
    """The documented hash, in plain Python integers."""
    mask = (1 << 64) - 1
    words: list[int] = []
    for part in [source, person_key, *natural]:
        if isinstance(part, dt.date):
            words.append((part - dt.date(1970, 1, 1)).days & mask)
            continue
        data = str(part).encode()
        words.append(len(data))
        data += b"\0" * (-len(data) % 8)
        words += [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
    out = ""
    for seed, c1, c2, s1, s2, s3 in val.LANES:
        h = seed
        for w in words:
            h ^= w
            h ^= h >> s1
            h = (h * c1) & mask
            h ^= h >> s2
            h = (h * c2) & mask
            h ^= h >> s3
        out += f"{h:016x}"
    return out


@pytest.mark.parametrize("source", list(Source))
def test_record_ids_follow_the_documented_hash(source):
    records = run(feed(source), source).records
    spec = SCHEMAS[source]
    for row in records.iter_rows(named=True):
        natural = [row[name] for name in spec.natural_key]
        assert row["record_id"] == _reference_record_id(source.value, row["person_key"], natural)


def _cells(frame: pl.DataFrame) -> list[str]:
    return [v for c in frame.columns if frame[c].dtype == pl.String for v in frame[c] if v]


def test_no_raw_id_anywhere_in_outputs_or_logs(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    bad_ids = [BAD_ID, IDS[1][:17], IDS[1] + "9"]
    outputs = []
    for source in Source:
        for bad in bad_ids:
            result = run(feed(source, resident_id=bad), source)
            outputs += _cells(result.records) + _cells(result.quarantine)
            outputs.append(str(result.summary()))
    for n, content in enumerate([f'"{IDS[0]},2024-01\n', f"{IDS[0]},2024-01,1,2,3\n"]):
        path = tmp_path / f"transit{n}.csv"
        path.write_text("resident_id,month\n" + content)
        with pytest.raises(FeedError) as caught:
            run(path, Source.TRANSIT)
        outputs.append(str(caught.value))
    safe = "\n".join(outputs) + caplog.text
    assert "check digit wrong" in safe and "cannot read feed" in safe  # the scan sees them
    for raw in [*IDS, *bad_ids]:
        assert raw not in safe and raw[:14] not in safe


def test_feed_errors_redact_anything_like_an_id_number(tmp_path):
    path = tmp_path / "transit.csv"
    path.write_text(f'resident_id,month\n"{IDS[2]},2024-01\n')
    with pytest.raises(FeedError) as caught:
        run(path, Source.TRANSIT)
    assert not re.search(r"[0-9]{10}", str(caught.value))
    assert "\n" not in str(caught.value)


def test_missing_required_column_refuses_the_feed():
    with pytest.raises(FeedError, match="missing required column.*arrears"):
        run(feed(Source.SOCIAL_SECURITY).drop("arrears"), Source.SOCIAL_SECURITY)
    with pytest.raises(FeedError, match="resident_id"):
        run(feed(Source.POSITIVE).drop("resident_id"), Source.POSITIVE)


def test_optional_columns_may_be_absent_and_unknown_ones_are_reported():
    frame = feed(Source.PENALTY).drop("window_months", "repaired_on").with_columns(
        pl.lit("x").alias("clerk"))
    result = run(frame, Source.PENALTY)
    assert result.records.height == 3 and result.records["window_months"].is_null().all()
    assert result.summary()["ignored_columns"] == ["clerk"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("nothing.csv", None, "no such file"),
    ("feed.txt", "resident_id\n", "expected a .csv or .parquet"),
    ("feed.parquet", "not parquet at all", "cannot read feed"),
    ("empty.csv", "", "cannot read feed"),
])
def test_unreadable_feeds_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(FeedError, match=message):
        run(path, Source.TRANSIT)


def test_unknown_source_is_refused():
    with pytest.raises(FeedError, match="unknown source 'weather'"):
        run(feed(Source.TRANSIT), "weather")


@pytest.mark.parametrize(("source", "changes", "field", "reason"), [
    (Source.COURT, {"status": "active", "closed_on": "2024-01-01"}, "closed_on",
     "must be empty while status is active"),
    (Source.COURT, {"status": "fulfilled", "closed_on": None}, "closed_on",
     "required when status is fulfilled or removed"),
    (Source.COURT, {"closed_on": "2023-02-04"}, "closed_on", "before filed_on"),
    (Source.PENALTY, {"severity": "general", "window_months": "24"}, "window_months",
     "must be 3–12 months for a general penalty"),
    (Source.PENALTY, {"severity": "serious", "window_months": "6"}, "window_months",
     "must be 12–36 months for a serious penalty"),
    (Source.PENALTY, {"repaired_on": "2024-02-01"}, "repaired_on", "before decided_on"),
])
def test_cross_column_checks(source, changes, field, reason):
    result = run(feed(source, **changes), source)
    assert result.quarantine.select("row_number", "field", "reason").rows() == [(2, field, reason)]
    assert result.records.height == 2


def test_a_check_does_not_pile_onto_a_field_that_already_failed():
    result = run(feed(Source.COURT, status="pending", closed_on="2024-01-01"), Source.COURT)
    assert result.quarantine["problems"].to_list() == [
        "status: must be one of: active, fulfilled, removed"]


def test_a_named_check_without_implementation_raises(monkeypatch):
    val.assert_checks_implemented(SCHEMAS)
    broken = dataclasses.replace(SCHEMAS[Source.COURT], checks=("closed_on_in_a_leap_year",))
    monkeypatch.setitem(rec.SCHEMAS, Source.COURT, broken)
    with pytest.raises(NotImplementedError, match="closed_on_in_a_leap_year"):
        run(feed(Source.COURT), Source.COURT)


def test_duplicates_the_later_row_wins():
    frame = pl.concat([feed(Source.TRANSIT), feed(Source.TRANSIT).head(1).with_columns(
        pl.lit("99").alias("rides"))])
    result = run(frame, Source.TRANSIT)
    assert result.quarantine.select("row_number", "field", "reason").rows() == [
        (1, "month", "duplicate of row 4 (same person and month)")]
    assert result.records["rides"].to_list() == [0, 3, 99]
    summary = result.summary()
    assert summary["rows_read"] == 4 and summary["good"] == 3 and summary["quarantined"] == 1
    assert summary["by_field"] == {"month": 1}


def test_summary_counts_by_field():
    frame = pl.concat([feed(Source.POSITIVE, kind="gift"), feed(Source.POSITIVE, hours="-1")
                       .with_columns(pl.Series("event_no", ["E4", "E5", "E6"])),
                       feed(Source.POSITIVE, kind="x").with_columns(
                           pl.Series("event_no", ["E7", "E8", "E9"]))])
    summary = run(frame, Source.POSITIVE).summary()
    assert summary["by_field"] == {"kind": 2, "hours": 1}
    assert summary["good"] + summary["quarantined"] == summary["rows_read"] == 9


def test_cli_validate_writes_records_and_quarantine(tmp_path):
    feed(Source.TRANSIT, rides="-1").write_csv(tmp_path / "transit.csv")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "transit.csv"), "--source",
                                       "transit", "--out", str(out), "--today", "2025-06-01"])
    assert result.exit_code == 0, result.output
    records = pl.read_parquet(out / "records" / "transit.parquet")
    quarantine = pl.read_parquet(out / "quarantine" / "transit.parquet")
    assert records.schema == pl.Schema(record_schema(Source.TRANSIT)) and records.height == 2
    assert quarantine["row_number"].to_list() == [2]
    assert "3 rows read, 2 good, 1 quarantined" in result.output and "rides" in result.output
    assert rec.Records.read_parquet(str(out / "records")).transit.height == 2


def test_cli_validates_a_folder_of_feeds(tmp_path):
    for source in (Source.COURT, Source.POSITIVE):
        feed(source).write_parquet(tmp_path / f"{source.value}.parquet")
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o" / "records").iterdir()) == [
        "court.parquet", "positive.parquet"]


def test_cli_refuses_a_bad_feed_with_a_message(tmp_path):
    feed(Source.TRANSIT).drop("rides").write_csv(tmp_path / "transit.csv")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "transit.csv"), "--source",
                                       "transit", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "missing required column(s): rides" in result.output
    assert not (tmp_path / "out" / "records").exists()
    assert all(i not in result.output for i in IDS)
