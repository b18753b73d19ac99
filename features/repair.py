"""Credit repair (信用修复) terms of a record: is it adverse, from when may the citizen apply for
repair, and when does it stop counting by itself.

The periods follow the national rules on repairing credit information after the failing is
corrected (国家发展改革委《失信行为纠正后的信用信息修复管理办法（试行）》, 2023): a record may be
repaired only once its obligation is fulfilled (the fine or fee paid, the arrears settled) and
its minimum publication period has passed. Stated once, here:

| source | adverse when | minimum publication before repair | the obligation | stops counting by itself |
|---|---|---|---|---|
| penalty, general | always | 3 months from the decision | pay the fine, correct the act | end of its disclosure window (3–12 months) |
| penalty, serious | always | 12 months from the decision | pay the fine, correct the act | end of its disclosure window (12–36 months) |
| penalty, minor | never (never disclosed) | — | — | never counts |
| court listing | while active | not repairable: fulfilling it closes it | fulfil the judgment | when fulfilled or removed |
| social security month | missed or in arrears | 3 months from the month's end | settle the arrears | 60 months after the month |
| transit month | overdue returns, unpaid fees, fare evasion, damage | 3 months from the month's end | pay the fees, settle the damage | 60 months after the month |
| positive | never | — | — | 60 months after the event |

Whether the obligation is fulfilled is not in the records (a month's record shows what was owed
that month); the applicant states it and the source checks it, which is why an admin for the
source approves or refuses every application.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from features.records import DEFAULT_WINDOW_MONTHS, RETENTION_MONTHS, Source
from features.rules import add_months

# source (and penalty severity) → months of publication before repair may be applied for
MIN_PUBLICATION_MONTHS: dict[str, int] = {
    "penalty:general": 3, "penalty:serious": 12, "social_security": 3, "transit": 3,
}
OBLIGATIONS: dict[str, tuple[str, str]] = {  # (zh, en)
    "penalty": ("缴清罚款并纠正违法行为", "pay the fine and correct the offence"),
    "court": ("履行法院判决确定的义务", "fulfil the court judgment"),
    "social_security": ("补缴欠费", "settle the contribution arrears"),
    "transit": ("缴清欠费、归还车辆并赔偿损坏", "pay the fees, return bikes, settle damage"),
}


@dataclass(frozen=True)
class RepairTerms:
    """What credit repair can do for one record."""

    adverse: bool
    repairable: bool  # by repair at all (a court listing closes by fulfilment instead)
    repairable_from: dt.date | None
    expires_on: dt.date | None  # first day it no longer counts by itself; None: while active
    obligation_zh: str | None
    obligation_en: str | None


def _known(source: Source, record: dict[str, Any]) -> dt.date:
    if source in (Source.SOCIAL_SECURITY, Source.TRANSIT):
        month = record["month"]
        return add_months(month.replace(day=1), 1) - dt.timedelta(days=1)
    return record[{Source.COURT: "filed_on", Source.PENALTY: "decided_on",
                   Source.POSITIVE: "event_on"}[source]]


def retention_end(known: dt.date) -> dt.date:
    """The first as-of date on which a record known on `known` is past retention
    (`rules`: it counts while known > as_of - RETENTION_MONTHS months)."""
    day = add_months(known, RETENTION_MONTHS)
    while add_months(day, -RETENTION_MONTHS) < known:  # month-end clamping (Feb 29)
        day += dt.timedelta(days=1)
    return day


def is_adverse(source: Source | str, record: dict[str, Any]) -> bool:
    source = Source(source)
    if source is Source.SOCIAL_SECURITY:
        return record.get("status") == "missed" or (record.get("arrears") or 0) > 0
    if source is Source.TRANSIT:
        return any((record.get(name) or 0) > 0 for name in (
            "overdue_returns", "unpaid_fees", "fare_evasions", "damage_incidents"))
    if source is Source.COURT:
        return record.get("status") == "active"
    if source is Source.PENALTY:
        return record.get("severity") in ("general", "serious")
    return False


def terms(source: Source | str, record: dict[str, Any]) -> RepairTerms:
    """The repair terms of one record (its source's own columns, as stored)."""
    source = Source(source)
    known = _known(source, record)
    adverse = is_adverse(source, record)
    obligation = OBLIGATIONS.get(source.value, (None, None)) if adverse else (None, None)
    if source is Source.COURT:
        return RepairTerms(adverse, False, None, None, *obligation)
    if source is Source.PENALTY:
        severity = record.get("severity")
        if severity not in ("general", "serious"):
            return RepairTerms(False, False, None, None, None, None)
        window = record.get("window_months") or DEFAULT_WINDOW_MONTHS[severity][
            record.get("category")]
        months = MIN_PUBLICATION_MONTHS[f"penalty:{severity}"]
        return RepairTerms(True, True, add_months(known, months),
                           add_months(record["decided_on"], int(window)), *obligation)
    expires = retention_end(known)
    if not adverse:
        return RepairTerms(False, False, None, expires, None, None)
    return RepairTerms(True, True, add_months(known, MIN_PUBLICATION_MONTHS[source.value]),
                       expires, *obligation)
