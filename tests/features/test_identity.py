"""Resident ID checks (GB 11643) and person keys: vectors, reasons, secrecy, vectorised parity."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import identity
from features.identity import (
    InvalidResidentId,
    id_problem,
    id_problem_expr,
    make_resident_id,
    person_key,
    validate_resident_id,
)

TODAY = dt.date(2025, 6, 1)
# Published examples of the format (GB 11643-1999), check digits worked out by hand below.
HAND_CHECKED = ["11010519491231002X", "440524198001010013"]


def with_check(first17: str) -> str:
    return first17 + identity.check_digit(first17)


@pytest.mark.parametrize(("first17", "total", "check"), [
    ("11010519491231002", 167, "X"),  # 167 mod 11 = 2 → X
    ("44052418800101001", 195, "4"),  # 195 mod 11 = 8 → 4 (born 1880: out of range, below)
    ("44052419800101001", 196, "3"),  # 196 mod 11 = 9 → 3
])
def test_hand_checked_check_digits(first17, total, check):
    # weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2; (Σ digit × weight) mod 11 indexes "10X98765432"
    assert sum(int(d) * w for d, w in zip(first17, identity.WEIGHTS, strict=True)) == total
    assert identity.check_digit(first17) == check


@pytest.mark.parametrize("resident_id", [
    *HAND_CHECKED,
    "11010519491231002x",  # lower-case x is accepted
    make_resident_id(110101, dt.date(1990, 2, 28), 123),
    make_resident_id(440305, dt.date(2000, 2, 29), 2),
    make_resident_id(650102, dt.date(1900, 1, 1), 999),
    make_resident_id(310104, TODAY, 0),
])
def test_valid_ids(resident_id):
    assert id_problem(resident_id, TODAY) is None
    assert validate_resident_id(resident_id, TODAY) == resident_id.upper()


VALID = make_resident_id(110101, dt.date(1990, 5, 17), 42)
INVALID = [
    (None, "missing"),
    ("", "missing"),
    (VALID[:17], "must be 18 characters, got 17"),
    (VALID + "1", "must be 18 characters, got 19"),
    (VALID[:5] + "A" + VALID[6:], "must be 17 digits followed by a digit or X"),
    (VALID[:17] + "Y", "must be 17 digits followed by a digit or X"),
    ("X" + VALID[1:], "must be 17 digits followed by a digit or X"),
    (VALID[:16] + "²" + VALID[17], "must be 17 digits followed by a digit or X"),  # no crash
    ("١" * 17 + "X", "must be 17 digits followed by a digit or X"),  # other scripts' digits
    (with_check("11010519900230004"), "birth date is not a real date"),  # 30 February
    (with_check("11010519901301004"), "birth date is not a real date"),  # month 13
    (with_check("11010518991231004"), "birth date out of range"),  # before 1900
    ("440524188001010014", "birth date out of range"),  # the standard's own example, 1880
    (with_check("11010520250602004"), "birth date out of range"),  # after TODAY
    (VALID[:17] + str((int(VALID[17]) + 1) % 10 if VALID[17] != "X" else 0), "check digit wrong"),
]


@pytest.mark.parametrize(("resident_id", "reason"), INVALID)
def test_every_reason_is_named(resident_id, reason):
    assert id_problem(resident_id, TODAY) == reason


@pytest.mark.parametrize(("resident_id", "reason"), INVALID)
def test_errors_never_contain_the_number(resident_id, reason):
    with pytest.raises(InvalidResidentId) as caught:
        validate_resident_id(resident_id, TODAY)
    assert caught.value.reason == f"resident ID {reason}"
    message = str(caught.value)
    if resident_id:
        assert resident_id not in message
        assert resident_id[:6] not in message and resident_id[6:14] not in message


def test_vectorised_reasons_match_the_table():
    frame = pl.DataFrame({"id": [r for r, _ in INVALID] + HAND_CHECKED},
                         schema={"id": pl.String})
    got = frame.select(id_problem_expr("id", TODAY)).to_series().to_list()
    assert got == [reason for _, reason in INVALID] + [None] * len(HAND_CHECKED)


def test_person_key_is_hmac_under_the_environment_key(monkeypatch):
    monkeypatch.setenv(identity.KEY_ENV, "key-one")
    first = person_key(VALID)
    assert first == person_key(VALID)  # stable
    assert first == hmac.new(b"key-one", VALID.encode(), hashlib.sha256).hexdigest()
    assert VALID not in first and len(first) == 64
    monkeypatch.setenv(identity.KEY_ENV, "key-two")
    assert person_key(VALID) != first
    assert person_key(VALID, secret=b"key-one") == first


def test_lower_case_x_gives_the_same_person_key():
    assert person_key("11010519491231002x", b"k") == person_key("11010519491231002X", b"k")


def test_hash_ids_matches_person_key():
    ids = [make_resident_id(110101, dt.date(1980, 1, 1) + dt.timedelta(days=i), i) for i in range(5)]
    assert identity.hash_ids(ids, b"secret") == [person_key(i, b"secret") for i in ids]


def test_person_key_refuses_an_invalid_id():
    with pytest.raises(InvalidResidentId, match="check digit wrong"):
        person_key(INVALID[-1][0], b"k")


def test_production_without_a_key_refuses(monkeypatch):
    monkeypatch.delenv(identity.KEY_ENV, raising=False)
    monkeypatch.setenv("OSMANTHUS_ENV", "production")
    with pytest.raises(RuntimeError, match=identity.KEY_ENV):
        identity.person_key_secret()
    with pytest.raises(RuntimeError):
        person_key(VALID)


def test_no_default_key_even_outside_production(monkeypatch):
    """No usable default anywhere: without the key set, development refuses too (the CLI fills
    it from a generated secrets file, service/config.py)."""
    monkeypatch.delenv(identity.KEY_ENV, raising=False)
    monkeypatch.delenv("OSMANTHUS_ENV", raising=False)
    with pytest.raises(RuntimeError, match=identity.KEY_ENV):
        identity.person_key_secret()


def _expr_problem(values: list[str | None]) -> list[str | None]:
    frame = pl.DataFrame({"id": values}, schema={"id": pl.String})
    return frame.select(id_problem_expr("id", TODAY)).to_series().to_list()


ID_CHARS = st.sampled_from(list("0123456789Xx") + ["A", " ", "-", "٣", "²", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(ID_CHARS, min_size=0, max_size=20),
    st.from_regex(r"\A[0-9]{17}[0-9Xx]\Z"),
    st.text(min_size=18, max_size=18),
), min_size=1, max_size=20))
def test_expr_agrees_with_id_problem_on_random_strings(values):
    assert _expr_problem(values) == [id_problem(v, TODAY) for v in values]


@settings(max_examples=300, deadline=None)
@given(
    region=st.integers(110000, 659999),
    born=st.dates(dt.date(1900, 1, 1), TODAY),
    sequence=st.integers(0, 999),
    position=st.integers(0, 17),
    digit=st.sampled_from(list("0123456789Xx²٣ ")),
)
def test_expr_agrees_with_id_problem_on_valid_ids_with_one_char_changed(
        region, born, sequence, position, digit):
    valid = make_resident_id(region, born, sequence)
    changed = valid[:position] + digit + valid[position + 1:]
    assert _expr_problem([valid, changed]) == [None, id_problem(changed, TODAY)]
    if changed != valid and position < 17 and digit in "0123456789":
        assert id_problem(changed, TODAY) is not None  # one changed digit is always caught


def test_id_numbers_in_free_text_are_redacted_and_nothing_else_is():
    from features.identity import REDACTED, redact_ids

    number = make_resident_id(110101, dt.date(1990, 5, 17), 123)
    text = f"不是我的。身份证 {number}，订单号 12345678901234567890，电话 13800138000"
    redacted = redact_ids(text)
    assert number not in redacted and redacted.count(REDACTED) == 1
    assert "12345678901234567890" in redacted and "13800138000" in redacted
    assert redact_ids(number[:17] + "x") == REDACTED


WIDE = str.maketrans("0123456789X-", "０１２３４５６７８９Ｘ－")


@pytest.mark.parametrize("write", [
    lambda n: n.translate(WIDE),  # full-width digits
    lambda n: f"{n[:6]}-{n[6:14]}-{n[14:]}",  # ASCII hyphens between groups
    lambda n: f"{n[:6]} {n[6:14]} {n[14:]}",  # spaces
    lambda n: f"{n[:6]}－{n[6:14]}－{n[14:]}".translate(WIDE),  # full-width hyphens and digits
    lambda n: f"{n[:3]}.{n[3:6]}.{n[6:10]}\u3000{n[10:14]}/{n[14:]}",  # dots, ideographic space
    lambda n: f"{n[:6]}\u2013{n[6:]}",  # an en dash
])
def test_ids_written_wide_or_with_separators_are_redacted(write):
    from features.identity import REDACTED, redact_ids

    number = make_resident_id(110101, dt.date(1990, 5, 17), 123)
    redacted = redact_ids(f"身份证号{write(number)}，请删除")
    assert redacted == f"身份证号{REDACTED}，请删除"
    assert not any(ch.isdigit() for ch in redacted)
