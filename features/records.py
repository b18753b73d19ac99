"""The five record sources and their contract: every column, its type and what is allowed.

A feed arrives from a source agency with a raw 18-character `resident_id`; the validator
(`features.validate`) checks it, turns it into `person_key` (HMAC-SHA256) and drops it, so
the typed records below never hold a raw ID number.

Every record has a stable `record_id`: a hash of the source, the person key and the source's
natural key (the month for person × month sources, the source's own reference number for
events). Re-sending a record — unchanged or with a new state, such as a court listing that
has since been fulfilled — yields the same `record_id`, so storing it twice updates rather
than duplicates it.

Dates are calendar dates. A person × month record is dated on the last day of its month:
that is the first day on which the month is complete and known.

Besides the source's own columns, every typed record carries four state columns that the
store fills in (feeds never do): `repaired_on` (信用修复 accepted), `dispute_opened_on`,
`dispute_due_on` and `dispute_closed_on` (异议; the due date is fixed when the dispute is
received, so a later change of the configured period never moves an open dispute's date). A penalty feed may carry `repaired_on` itself, since the
penalising authority is the one that accepts a repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import polars as pl


class Source(StrEnum):
    SOCIAL_SECURITY = "social_security"
    TRANSIT = "transit"
    COURT = "court"
    PENALTY = "penalty"
    POSITIVE = "positive"


@dataclass(frozen=True)
class Column:
    """One column of a feed and its rule, stated once: the validator enforces exactly this."""

    name: str
    dtype: type[pl.DataType] | pl.DataType
    description: str
    required: bool = True
    allowed: tuple[str, ...] | None = None  # a closed list of values
    minimum: float | None = None
    maximum: float | None = None
    not_in_future: bool = False  # dates only
    month: bool = False  # a "YYYY-MM" month rather than a "YYYY-MM-DD" date


@dataclass(frozen=True)
class SourceSchema:
    source: Source
    grain: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]  # with the person, identifies one record of this source
    date_column: str  # the record's own date, compared with the as-of date
    checks: tuple[str, ...] = field(default=())  # cross-column rules, by name (see validate.py)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


RESIDENT_ID = Column("resident_id", pl.String, "18-character resident ID number (GB 11643)")

SEVERITIES = ("minor", "general", "serious")
PENALTY_CATEGORIES = ("traffic", "environment", "tax", "market", "public_order", "other")
COURT_STATUSES = ("active", "fulfilled", "removed")
# exempt: not liable that month (drawing a pension, in full-time study): never a failure.
CONTRIBUTION_STATUSES = ("paid", "missed", "exempt")
POSITIVE_KINDS = ("volunteering", "blood_donation", "honour")

# Disclosure windows of administrative penalties, in months (DESIGN.md, "Record rules").
GENERAL_WINDOW_MONTHS = (3, 12)
SERIOUS_WINDOW_MONTHS = (12, 36)
# The window a penalty gets when its decision does not state one.
DEFAULT_WINDOW_MONTHS: dict[str, dict[str, int]] = {
    "general": {
        "traffic": 3, "environment": 12, "tax": 12, "market": 6, "public_order": 6, "other": 6,
    },
    "serious": {
        "traffic": 12, "environment": 36, "tax": 36, "market": 24, "public_order": 24, "other": 24,
    },
}
# No record older than this counts at all (征信业管理条例 Art. 16: adverse records are kept
# five years). Person × month features look back much less than this anyway.
RETENTION_MONTHS = 60

SCHEMAS: dict[Source, SourceSchema] = {
    Source.SOCIAL_SECURITY: SourceSchema(
        Source.SOCIAL_SECURITY,
        grain="person × month",
        columns=(
            RESIDENT_ID,
            Column("month", pl.Date, "contribution month, YYYY-MM", month=True, not_in_future=True),
            Column("status", pl.String, "paid, missed, or exempt (not liable, e.g. retired)",
                   allowed=CONTRIBUTION_STATUSES),
            Column("contribution_base", pl.Float64, "monthly contribution base, CNY", minimum=0),
            Column("arrears", pl.Float64, "contribution arrears outstanding at month end, CNY", minimum=0),
            # Issue 11: a second early-payment source beside transit, so that the evidence of
            # the habit is split between two features and residents without a transit account
            # have some. Optional, like transit's, so that older feeds still validate.
            Column("paid_early", pl.Int64,
                   "1 when a paid month's contribution (on a pension: the pensioner's own dues, "
                   "such as the resident medical-insurance premium) was settled before its due "
                   "date (auto-debit or paid ahead), 0 when on or after it; empty if not reported",
                   required=False, minimum=0, maximum=1),
        ),
        natural_key=("month",),
        date_column="month",
    ),
    Source.TRANSIT: SourceSchema(
        Source.TRANSIT,
        grain="person × month",
        columns=(
            RESIDENT_ID,
            Column("month", pl.Date, "month of use, YYYY-MM", month=True, not_in_future=True),
            Column("rides", pl.Int64, "transit rides (metro and bus)", minimum=0),
            Column("bike_rides", pl.Int64, "public-bicycle rides", minimum=0),
            Column("overdue_returns", pl.Int64, "bikes returned late (past the rental limit)", minimum=0),
            Column("unpaid_fees", pl.Float64, "fees outstanding at month end, CNY", minimum=0),
            Column("fare_evasions", pl.Int64, "recorded fare evasions", minimum=0),
            Column("damage_incidents", pl.Int64, "bikes damaged by the rider", minimum=0),
            # Issue 11: how a month's bill is paid, not only whether. Optional, so that feeds
            # from before the column (and agencies that do not send it) still validate.
            Column("paid_early", pl.Int64,
                   "1 when the month's fares and fees were settled before their due date "
                   "(auto-debit or paid ahead), 0 when on or after it; empty if not reported",
                   required=False, minimum=0, maximum=1),
        ),
        natural_key=("month",),
        date_column="month",
    ),
    Source.COURT: SourceSchema(
        Source.COURT,
        grain="one listing",
        columns=(
            Column("case_no", pl.String, "the court's enforcement case number"),
            RESIDENT_ID,
            Column("filed_on", pl.Date, "date listed as a dishonest judgement debtor", not_in_future=True),
            Column("amount", pl.Float64, "amount the court ordered, CNY", minimum=0),
            Column("status", pl.String, "active, fulfilled or removed", allowed=COURT_STATUSES),
            Column("closed_on", pl.Date, "date fulfilled or removed; empty while active",
                   required=False, not_in_future=True),
        ),
        natural_key=("case_no",),
        date_column="filed_on",
        checks=("closed_on_matches_status", "closed_on_not_before_filed_on"),
    ),
    Source.PENALTY: SourceSchema(
        Source.PENALTY,
        grain="one decision",
        columns=(
            Column("decision_no", pl.String, "the authority's decision number"),
            RESIDENT_ID,
            Column("decided_on", pl.Date, "date of the decision", not_in_future=True),
            Column("category", pl.String, "what the penalty was for", allowed=PENALTY_CATEGORIES),
            Column("severity", pl.String, "minor, general or serious", allowed=SEVERITIES),
            Column("fine", pl.Float64, "fine imposed, CNY", minimum=0),
            Column("window_months", pl.Int64,
                   "disclosure window in months; empty for the category's default "
                   "(general 3–12, serious 12–36)", required=False, minimum=0),
            Column("repaired_on", pl.Date, "date a credit repair was accepted, if any",
                   required=False, not_in_future=True),
        ),
        natural_key=("decision_no",),
        date_column="decided_on",
        checks=("window_fits_severity", "repaired_on_not_before_decided_on"),
    ),
    Source.POSITIVE: SourceSchema(
        Source.POSITIVE,
        grain="one event",
        columns=(
            Column("event_no", pl.String, "the issuing body's reference number"),
            RESIDENT_ID,
            Column("event_on", pl.Date, "date of the event", not_in_future=True),
            Column("kind", pl.String, "volunteering, blood_donation or honour", allowed=POSITIVE_KINDS),
            Column("hours", pl.Float64, "volunteering hours (0 for other kinds)", minimum=0, maximum=1000),
        ),
        natural_key=("event_no",),
        date_column="event_on",
    ),
}

STATE_COLUMNS: dict[str, pl.DataType] = {
    "repaired_on": pl.Date(),
    "dispute_opened_on": pl.Date(),
    "dispute_closed_on": pl.Date(),
    "dispute_due_on": pl.Date(),
}


def record_schema(source: Source | str) -> dict[str, pl.DataType]:
    """The typed record frame of a source: what validation yields and features consume."""
    spec = SCHEMAS[Source(source)]
    out: dict[str, pl.DataType] = {"record_id": pl.String(), "person_key": pl.String()}
    for col in spec.columns:
        if col.name == "resident_id":
            continue
        out[col.name] = col.dtype() if isinstance(col.dtype, type) else col.dtype
    for name, dtype in STATE_COLUMNS.items():
        out.setdefault(name, dtype)
    return out


def empty_records(source: Source | str) -> pl.DataFrame:
    return pl.DataFrame(schema=record_schema(source))


def conform(source: Source | str, frame: pl.DataFrame) -> pl.DataFrame:
    """Give a typed record frame every column of its schema, in order (state columns may be
    absent in frames made by hand or by the city); extra columns are dropped."""
    schema = record_schema(source)
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items()
               if name not in frame.columns]
    return frame.with_columns(missing).select(
        [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    )


@dataclass
class Records:
    """Typed records of all five sources, for one person or a whole city."""

    social_security: pl.DataFrame = field(default_factory=lambda: empty_records(Source.SOCIAL_SECURITY))
    transit: pl.DataFrame = field(default_factory=lambda: empty_records(Source.TRANSIT))
    court: pl.DataFrame = field(default_factory=lambda: empty_records(Source.COURT))
    penalty: pl.DataFrame = field(default_factory=lambda: empty_records(Source.PENALTY))
    positive: pl.DataFrame = field(default_factory=lambda: empty_records(Source.POSITIVE))

    def __post_init__(self) -> None:
        for source in Source:
            setattr(self, source.value, conform(source, getattr(self, source.value)))

    def get(self, source: Source | str) -> pl.DataFrame:
        return getattr(self, Source(source).value)

    def persons(self) -> pl.Series:
        keys = pl.concat([self.get(s).select("person_key") for s in Source])
        return keys.get_column("person_key").unique().sort()

    def filter_persons(self, person_keys: list[str] | pl.Series) -> Records:
        keys = pl.Series("person_key", list(person_keys), dtype=pl.String)
        return Records(**{s.value: self.get(s).filter(pl.col("person_key").is_in(keys.implode()))
                          for s in Source})

    @classmethod
    def read_parquet(cls, directory: str, sources: list[Source] | None = None) -> Records:
        """Typed records from `<directory>/<source>.parquet` (as written by `write_parquet`)."""
        from pathlib import Path

        frames = {}
        for source in sources or list(Source):
            path = Path(directory) / f"{source.value}.parquet"
            if path.exists():
                frames[source.value] = pl.read_parquet(path)
        return cls(**frames)

    def write_parquet(self, directory: str) -> None:
        from pathlib import Path

        Path(directory).mkdir(parents=True, exist_ok=True)
        for source in Source:
            self.get(source).write_parquet(Path(directory) / f"{source.value}.parquet")
