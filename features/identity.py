"""Resident ID numbers (GB 11643-1999) in, person keys out.

A raw ID number exists only inside this module's functions: it is checked, hashed with
HMAC-SHA256 under a secret key that lives outside the database, and dropped. Errors name what
is wrong ("check digit wrong"), never the number, so that they can be logged and returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re

import polars as pl

KEY_ENV = "OSMANTHUS_PERSON_KEY"
# There is no default key: a known one would let anyone link a person key to an ID number.
# Development generates a random one (service/config.py: `development_secrets`).

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # indexed by (Σ digit × weight) mod 11
EARLIEST_BIRTH = dt.date(1900, 1, 1)


class InvalidResidentId(ValueError):
    """A resident ID failed a check; `reason` is safe to show and to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_digit(first17: str) -> str:
    total = sum(int(ch) * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def id_problem(resident_id: object, today: dt.date | None = None) -> str | None:
    """What is wrong with an ID number, in plain words, or None when it is valid."""
    if not isinstance(resident_id, str) or not resident_id:
        return "missing"
    if len(resident_id) != 18:
        return f"must be 18 characters, got {len(resident_id)}"
    value = resident_id.upper()
    # isascii: str.isdigit() also accepts other scripts' digits, and "²", which int() refuses
    if (not value.isascii() or not value[:17].isdigit()
            or not (value[17].isdigit() or value[17] == "X")):
        return "must be 17 digits followed by a digit or X"
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return "birth date is not a real date"
    if born < EARLIEST_BIRTH or born > (today or dt.date.today()):
        return "birth date out of range"
    if check_digit(value[:17]) != value[17]:
        return "check digit wrong"
    return None


def validate_resident_id(resident_id: str, today: dt.date | None = None) -> str:
    """The normalised ID (upper-case X), or InvalidResidentId naming what is wrong."""
    problem = id_problem(resident_id, today)
    if problem is not None:
        raise InvalidResidentId(f"resident ID {problem}")
    return resident_id.upper()


def person_key_secret() -> bytes:
    """The HMAC key from the environment; fails loudly when it is missing (the `osmanthus`
    commands fill it in development from a generated secrets file)."""
    value = os.environ.get(KEY_ENV)
    if value:
        return value.encode()
    raise RuntimeError(f"{KEY_ENV} is not set (the osmanthus commands generate one in "
                       "development; production must set it)")


def person_key(resident_id: str, secret: bytes | None = None) -> str:
    """HMAC-SHA256 of a valid ID under the secret key, as 64 hex characters."""
    normalised = validate_resident_id(resident_id)
    return hmac.new(secret or person_key_secret(), normalised.encode(), hashlib.sha256).hexdigest()


def hash_ids(ids: list[str], secret: bytes) -> list[str]:
    """Person keys for many already-validated IDs (the HMAC pads are computed once)."""
    template = hmac.new(secret, digestmod=hashlib.sha256)
    out = []
    for value in ids:
        h = template.copy()
        h.update(value.encode())
        out.append(h.hexdigest())
    return out


def id_problem_expr(column: str, today: dt.date) -> pl.Expr:
    """A vectorised `id_problem`: the reason as a string, null where the ID is valid."""
    value = pl.col(column).str.to_uppercase()
    shape_ok = value.str.contains(r"^[0-9]{17}[0-9X]$")
    born = value.str.slice(6, 8).str.to_date("%Y%m%d", strict=False)
    weighted = pl.sum_horizontal(
        [value.str.slice(i, 1).cast(pl.Int32, strict=False) * w for i, w in enumerate(WEIGHTS)]
    )
    expected = pl.lit(list(CHECK_CHARS)).list.get(weighted % 11)
    return (
        pl.when(pl.col(column).is_null() | (pl.col(column) == ""))
        .then(pl.lit("missing"))
        .when(pl.col(column).str.len_chars() != 18)
        .then(pl.format("must be 18 characters, got {}", pl.col(column).str.len_chars()))
        .when(~shape_ok)
        .then(pl.lit("must be 17 digits followed by a digit or X"))
        .when(born.is_null() | (born.dt.year() < 1))  # year 0 parses here, not in Python
        .then(pl.lit("birth date is not a real date"))
        .when((born < EARLIEST_BIRTH) | (born > today))
        .then(pl.lit("birth date out of range"))
        .when(expected != value.str.slice(17, 1))
        .then(pl.lit("check digit wrong"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def make_resident_id(region: int, born: dt.date, sequence: int) -> str:
    """A valid ID from its parts (for the synthetic city and tests): region is 6 digits,
    sequence 3 digits whose parity is the sex (odd male, even female)."""
    first17 = f"{region:06d}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_digit(first17)


# A digit of any script (full-width ０-９ too), and what people type between digit groups:
# spaces of any kind, hyphens and dashes (ASCII, Unicode, full-width), dots, slashes.
_DIGIT = r"\d"
_SEPARATOR = r"[\s\-\u2010-\u2015\u2212\uFF0D\u30FC.\uFF0E\u00B7\u30FB_/\uFF0F]{0,3}"
_CHECK = r"[\dXx\uFF38\uFF58]"
_ALNUM = r"0-9A-Za-z\uFF10-\uFF19\uFF21-\uFF3A\uFF41-\uFF5A"  # Latin letters, digits, wide too
ID_SHAPE = re.compile(rf"(?<![{_ALNUM}])(?<!\d){_DIGIT}(?:{_SEPARATOR}{_DIGIT}){{16}}"
                      rf"{_SEPARATOR}{_CHECK}(?![{_ALNUM}])(?!\d)")
REDACTED = "[身份证号已隐去 ID number removed]"


def redact_ids(text: str) -> str:
    """Free text (a dispute statement, a reviewer's note) with anything shaped like a resident
    ID number replaced, so that what a person types can be kept without keeping their number.

    The shape is generous on purpose: digits of any script (full-width ones too) with
    separators between groups, since "１１０１０１－１９９０…" is the same number to a reader. An
    18-digit account number is removed as well; keeping one ID is the worse mistake."""
    return ID_SHAPE.sub(REDACTED, text)
