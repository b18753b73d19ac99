"""The synthetic city's residents: who they are, where they live, and their hidden traits.

Drawn once for the whole city (a few arrays of one number per person), so that resident IDs are
unique city-wide; the month-by-month lives in `features.city_records` are drawn chunk by chunk.
See `features.city` for the generative story.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.identity import CHECK_CHARS, WEIGHTS

# Hangzhou's ten urban districts (osmanthus is its city flower): region code, name, share of
# adults, and how urban the district is (0–1), which drives transit and public-bike use.
DISTRICTS: tuple[tuple[int, str, float, float], ...] = (
    (330102, "Shangcheng", 0.12, 1.00),
    (330105, "Gongshu", 0.11, 1.00),
    (330106, "Xihu", 0.12, 0.95),
    (330108, "Binjiang", 0.08, 0.95),
    (330109, "Xiaoshan", 0.15, 0.60),
    (330110, "Yuhang", 0.13, 0.70),
    (330111, "Fuyang", 0.07, 0.35),
    (330112, "Lin'an", 0.06, 0.30),
    (330113, "Linping", 0.08, 0.55),
    (330114, "Qiantang", 0.08, 0.60),
)
REGION_CODES = np.array([d[0] for d in DISTRICTS], dtype=np.int64)
DISTRICT_NAMES = [d[1] for d in DISTRICTS]
URBAN = np.array([d[3] for d in DISTRICTS])

# Adult age pyramid (relative weight by age): a dip in the late twenties, bulges around 35 and
# 52 (China's 1960s and 1980s birth cohorts), thinning after 70.
AGE_KNOTS = np.array([18, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80])
AGE_WEIGHTS = np.array([1.0, 1.1, 1.4, 1.5, 1.3, 1.3, 1.55, 1.5, 1.25, 1.1, 0.8, 0.55, 0.35])
MIN_AGE, MAX_AGE = 18, 80

# Social-security coverage of working-age adults.
NONE, FORMAL, FLEXIBLE = 0, 1, 2
RETIREMENT_AGE = {True: 60, False: 55}  # men, women
BASE_MIN, BASE_MAX = 4462.0, 24930.0  # contribution base floor and ceiling, CNY (2024)
# Spread of the long-run level of financial strain. Payment-history studies find past
# delinquency the strongest single predictor of the next (bureau scores weigh it most): hard
# times last, so most of strain is a personal level, not a passing drift.
BASE_STRAIN_SD = 0.85
# Who rides with a transit account (a card or a phone's ride code) at 18 in a fully rural
# district; more in urban ones (+0.4 · urban), fewer with age. Hangzhou's buses and metro have
# taken Alipay ride codes since 2017 and most adults ride with one: about 95% of the city's
# adults hold an account (issue 11; at 0.45, 31% held none, and their empty transit file was
# worth the same as a spotless one, which hid the spotless riders' evidence: clean transit
# records said nothing until most people had transit records).
TRANSIT_CARD_BASE = 0.75
# The early-payment habit (issue 11: what separates one spotless file from another). Studies of
# utility and telecom payment data (the "alternative data" of thin-file scoring) find that
# customers who pay before the due date or by automatic debit default markedly less than those
# who pay on the day or after a reminder, and conscientiousness (reliability) and willingness
# to pay (integrity) both lean that way; the rest is routine (whether one set up an auto-debit).
# Per standard deviation of the habit: this much of each trait (the habit has SD 1). At 0.4
# and 0.2 the two early-payment shares stood in for reliability as well, and the transit
# share alone spanned 95–112 points, more than a court listing's smallest cost; at 0.2 and
# 0.12 each share spans about 55 (README, Decisions).
EARLY_RELIABILITY, EARLY_INTEGRITY = 0.2, 0.12


@dataclass
class Population:
    """One value per resident, in city order; the hidden traits are evaluation-only."""

    district: np.ndarray  # index into DISTRICTS
    male: np.ndarray  # bool
    birth: np.ndarray  # datetime64[D]
    resident_id: pl.Series  # String, 18-character valid IDs
    reliability: np.ndarray  # hidden: conscientiousness, N(0, 1), fixed for life
    base_strain: np.ndarray  # hidden: long-run level of financial strain
    luck: np.ndarray  # hidden: unobserved risk that shows in nothing but defaults
    integrity: np.ndarray  # hidden: willingness to honour a debt or rule when it costs, N(0, 1)
    coverage: np.ndarray  # NONE, FORMAL or FLEXIBLE
    study_until: np.ndarray  # month index (year*12+month-1) before which a student has no job
    contribution_base: np.ndarray  # CNY
    transit_card: np.ndarray  # bool
    ride_rate: np.ndarray  # expected transit rides a month
    bike_rate: np.ndarray  # expected public-bike rides a month (0 for non-users)
    early_habit: np.ndarray  # hidden: paying bills before they are due, N(0, 1) (issue 11)

    def __len__(self) -> int:
        return len(self.district)

    def slice(self, lo: int, hi: int) -> Population:
        return Population(**{name: value[lo:hi] for name, value in vars(self).items()})

    @property
    def birth_month(self) -> np.ndarray:
        """Month index (year*12 + month-1) of birth."""
        return self.birth.astype("datetime64[M]").astype(np.int64) + 1970 * 12


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    ages = np.arange(MIN_AGE, MAX_AGE + 1)
    weights = np.interp(ages, AGE_KNOTS, AGE_WEIGHTS)
    return rng.choice(ages, size=n, p=weights / weights.sum())


def resident_ids(region: np.ndarray, birth: np.ndarray, male: np.ndarray) -> pl.Series:
    """Valid, unique GB 11643 IDs: region, birth date, a sequence whose parity is the sex, and
    the check digit (vectorised `identity.make_resident_id`)."""
    ymd = pl.Series(birth).dt.strftime("%Y%m%d").cast(pl.Int64).to_numpy()
    group = region * 10**9 + ymd * 10 + male
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    sizes = np.diff(np.r_[starts, len(group)])
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(starts, sizes)
    if len(rank) and rank.max() >= 500:
        raise ValueError("too many residents share a district, birth date and sex")
    offset = (ymd % 97 + region % 89) % 500
    sequence = 2 * ((rank + offset) % 500) + male.astype(np.int64)
    first17 = region * 10**11 + ymd * 10**3 + sequence
    total = np.zeros(len(group), dtype=np.int64)
    rest = first17.copy()
    for weight in reversed(WEIGHTS):
        total += (rest % 10) * weight
        rest //= 10
    check = np.array(list(CHECK_CHARS))[total % 11]
    return pl.Series("resident_id", first17).cast(pl.String) + pl.Series(check)


def draw_population(rng: np.random.Generator, n: int, first_snapshot: dt.date) -> Population:
    """Every resident's fixed attributes; ages are 18–80 on the first snapshot date."""
    district = rng.choice(len(DISTRICTS), size=n, p=[d[2] for d in DISTRICTS])
    male = rng.random(n) < 0.51
    age = _ages(rng, n)
    days_old = np.floor((age + rng.uniform(0.003, 0.997, n)) * 365.2425).astype(np.int64)
    birth = np.datetime64(first_snapshot, "D") - days_old.astype("timedelta64[D]")
    ids = resident_ids(REGION_CODES[district], birth, male)

    reliability = rng.standard_normal(n)
    # True risk does not depend on age, sex or district: in this city any gap between groups'
    # approval rates is the model's doing (a proxy), which the fairness gate must catch.
    base_strain = BASE_STRAIN_SD * rng.standard_normal(n) - 0.2 * reliability
    luck = rng.standard_normal(n)

    u = rng.random(n) + 0.05 * np.tanh(reliability)
    coverage = np.where(u > 0.30, FORMAL, np.where(u > 0.17, FLEXIBLE, NONE))
    student = (age < 23) & (rng.random(n) < 0.5)
    birth_month = birth.astype("datetime64[M]").astype(np.int64) + 1970 * 12
    study_until = np.where(student, birth_month + 12 * 22 + rng.integers(0, 9, n), 0)

    log_base = (np.log(8500) - 0.3 * base_strain + 0.12 * reliability
                + 0.35 * rng.standard_normal(n))
    contribution_base = np.round(np.clip(np.exp(log_base), BASE_MIN, BASE_MAX), -1)

    urban = URBAN[district]
    transit_card = rng.random(n) < TRANSIT_CARD_BASE + 0.4 * urban - 0.002 * (age - 18)
    ride_rate = np.exp(np.log(14) + 0.8 * urban - 0.008 * (age - 40)
                       + 0.5 * rng.standard_normal(n))
    bike_user = rng.random(n) < 0.15 + 0.35 * urban - 0.006 * (age - 18)
    bike_rate = np.where(bike_user, np.exp(np.log(5) + 0.4 * urban - 0.02 * (age - 30)
                                           + 0.6 * rng.standard_normal(n)), 0.0)
    # Willingness to pay (the "character" of credit analysis), apart from everyday
    # conscientiousness: it shows in courts, serious penalties and defaults, hardly in bus fares.
    integrity = rng.standard_normal(n)
    # The habit of settling bills before they are due (auto-debit, paying ahead): part of
    # conscientiousness and of willingness to pay, part a person's own routine. Drawn last, from
    # traits alone, so it is group-neutral like every other trait (features.city_events, city_records).
    own = math.sqrt(1 - EARLY_RELIABILITY**2 - EARLY_INTEGRITY**2)
    early_habit = (EARLY_RELIABILITY * reliability + EARLY_INTEGRITY * integrity
                   + own * rng.standard_normal(n))
    return Population(district, male, birth, ids, reliability, base_strain, luck, integrity,
                      coverage, study_until, contribution_base, transit_card, ride_rate,
                      bike_rate, early_habit)
