"""The synthetic city's lives, month by month, and the five feeds they leave behind.

One call simulates one chunk of residents over the whole span (arrays of people × months),
then turns the months into feed rows with exactly the columns of `features.records.SCHEMAS`.
See `features.city` for the generative story; the constants below are its dials.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.city_people import FLEXIBLE, NONE, RETIREMENT_AGE, Population, month_index
from features.records import PENALTY_CATEGORIES, POSITIVE_KINDS, SCHEMAS, SEVERITIES, Source

# --- The dials of the story, each with the fact it follows ------------------------------------
# Deposit-free default: a fee or bill unpaid 30+ days. The monthly hazard's intercept (logit)
# gives about 2% of adults a year, the order of the overdue rates reported for deposit-free
# (credit-based) rental and pay-later services and of the "90+ days past due" share of
# consumer-credit panels (a few percent a year).
DEFAULT_INTERCEPT = -7.7
# Default odds per unit of each hidden trait (logit): strain is ability to pay, reliability
# everyday conscientiousness, integrity willingness to pay; luck shows in nothing else.
DEFAULT_STRAIN, DEFAULT_RELIABILITY, DEFAULT_INTEGRITY, DEFAULT_LUCK = 1.1, -0.5, -0.5, 0.35
STRAIN_RHO, STRAIN_SD = 0.95, 0.7  # strain: monthly AR(1), a slow drift of household finances
# A court listing (失信被执行人) means a court found a judgement debt the person could pay and did
# not: accounts frozen, spending restricted (限制高消费). Payment-history literature (public
# records, judgements and collections are among the strongest derogatories in bureau scores,
# which give them the largest point losses) says such a person defaults elsewhere several times
# as often; while a listing is active the monthly default odds are multiplied by e^2 ≈ 7 (at
# e^1.6 ≈ 5, once transit fees told more of a listed debtor's strain, the listing's own points
# fell below 60 for some holders in one trained model, issue 11 part 2: at e^2 they stay above).
LISTED_EFFECT = 2.0
# Listings per adult-month (logit intercept), on top of strain and unreliability and far
# likelier within a year of a default (most enforcement follows an unpaid debt). Chosen so that
# about 0.5–0.8% of adults are listed at a time: the SPC's published list held around 8 million
# names at a time in the early 2020s (entities included) among about 1.1 billion adults.
LISTING_INTERCEPT, LISTING_RISK, LISTING_INTEGRITY, LISTING_AFTER_DEFAULT = -10.6, 1.0, -1.0, 2.5
# The list the city's feed starts with: listings filed before the span and still open, as a
# share of the monthly filing chance (about 1/LISTING_CLOSE months of filings, in steady state).
LISTING_STOCK_MONTHS = 30
# Most listings end when the debt is paid (履行) after months; enforcement reports give median
# durations around a year; each month a listed person pays with this probability.
LISTING_CLOSE = 0.045
# Administrative penalties on individuals (行政处罚) that reach the credit platform: city credit
# reports list a few per 100 adults a year (here about five), mostly minor (60%, which never
# count), a third general, about 7% serious (large fines, licence revocations).
PENALTY_RATE = 0.003  # decisions per adult-month at average reliability and strain
PENALTY_RELIABILITY, PENALTY_INTEGRITY, PENALTY_STRAIN = -0.4, -0.6, 0.3
GENERAL_SHARE = 0.33
SERIOUS_SHARE, SERIOUS_INTEGRITY, SERIOUS_STRAIN = 0.02, -0.9, 0.4
# A fine is a bill: a serious one (¥5,000–500,000 against a median monthly wage near ¥8,500)
# raises strain for a year; a general one (around ¥1,000) a little, for half a year.
FINE_SHOCK = {"general": (0.35, 6), "serious": (1.3, 12)}
# Positive records (守信激励): about a third of adults log volunteer hours on the city's
# platform (China reports over 200 million registered volunteers, far fewer active), a
# volunteer about one activity every four months; about 1.5% of adults give blood in a year
# (national donation counts near 1.1–1.2% of the population); honours are rare. Studies of
# prosocial behaviour and repayment find a real but small link: volunteering leans on integrity
# (about a 0.3 standard-deviation shift between volunteers and others). Donors pass a health
# screen and come back when they are dependable; honours (model workers, outstanding volunteers,
# civilised families) go to people their neighbours vouch for: both lean on reliability and
# integrity (BLOOD_LINK, HONOUR_LINK per unit of each), so that a donor or an honoured resident
# is a modest real signal (issue 11: enough of them, several % of adults over their windows,
# for the evidence rule of model/params.py to let them speak; at links of 0.4 and 0.5, with
# honours at 0.0005 a month, they got no points at all).
VOLUNTEER_LOGIT, VOLUNTEER_RATE = -0.3, 0.25
BLOOD_RATE = 0.0012
HONOUR_RATE = 0.0012
VOLUNTEER_RELIABILITY, VOLUNTEER_INTEGRITY, BLOOD_LINK = 0.4, 0.6, 0.7
# Honours at 0.0012 a month and a link of 0.9 (about 10% of adults hold one over five years,
# civilised families and outstanding volunteers included): at 0.0008 and 0.6 (about 6%), once
# the early-payment shares carried reliability and integrity, honours got no points at all.
HONOUR_LINK = 0.9
# Fees and contributions left unpaid follow risk (payment-history studies: a missed payment is
# the best single predictor of the next); per unit of risk, the logit of leaving a small fee
# unpaid in a month, and of missing a month's contribution (formal and flexible workers' own
# intercepts). Small lapses are common, as in a bureau file where most people have a late
# payment somewhere: a ride code's failed auto-debit or a bike fee stays on the account until
# paid, so about 60% of card holders end some month of a year with a small fee unpaid, and
# about 30% of contributors miss a month in a year (flexible workers, who pay themselves, far
# more often). Issue 11: with lapses rare and steep (logit -5.4, 3.5 per unit of risk) a clean
# file was 40% of the city at one score; common lapses graded by risk give a clean file real
# evidence (scores spread over "good" and "fair" by how often one lapses), and the model's
# out-of-time AUC rose from 0.785 to 0.827.
SMALL_FEE_LOGIT, SMALL_FEE_RISK, MISSED_RISK = -2.0, 2.5, 2.5
MISSED_FORMAL, MISSED_FLEXIBLE = -4.0, -2.6
# Paying before the due date (issue 11). Each transit month that ends with nothing unpaid was
# settled early with probability σ(EARLY_LOGIT + EARLY_HABIT · habit − EARLY_STRAIN · strain):
# about half of such months city-wide (auto-debit is common but far from universal), the habit
# spreading people from almost never to almost always, and hard months pushing payment to the
# due date. The habit also lowers the default odds a little on its own (DEFAULT_EARLY per SD):
# the studies of early and automatic payment find lower default after the payment history is
# known, a real but modest signal, smaller than strain, reliability or integrity.
EARLY_LOGIT, EARLY_HABIT, EARLY_STRAIN = 0.2, 1.3, 0.5
DEFAULT_EARLY = -0.3
CATEGORY_SHARES = (0.45, 0.10, 0.07, 0.10, 0.18, 0.10)  # in PENALTY_CATEGORIES order
SEASON = np.array([1.0, 0.75, 0.95, 1.0, 1.0, 1.0, 0.9, 0.9, 1.0, 0.95, 1.0, 1.0])  # Jan..Dec


@dataclass(frozen=True)
class Calendar:
    """The span of months the city covers, as month indices (year*12 + month-1)."""

    start: int
    months: int

    @classmethod
    def between(cls, start: str, end: str) -> Calendar:
        first = month_index(dt.date.fromisoformat(f"{start}-01"))
        last = month_index(dt.date.fromisoformat(f"{end}-01"))
        if last < first:
            raise ValueError("the span ends before it starts")
        return cls(first, last - first + 1)

    @property
    def index(self) -> np.ndarray:
        return self.start + np.arange(self.months)

    @property
    def labels(self) -> pl.Series:
        return pl.Series([f"{i // 12:04d}-{i % 12 + 1:02d}" for i in self.index], dtype=pl.String)

    @property
    def first_day(self) -> np.ndarray:
        return (self.index - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]")

    @property
    def days(self) -> np.ndarray:
        return ((self.index + 1 - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]")
                - self.first_day).astype(np.int64)

    @property
    def last_day(self) -> dt.date:
        return (self.first_day[-1] + np.timedelta64(int(self.days[-1]) - 1, "D")).item()


@dataclass
class Chunk:
    """What one chunk of residents produced: feed frames and per-snapshot outcomes."""

    feeds: dict[Source, pl.DataFrame]
    defaulted: list[np.ndarray]  # per snapshot, bool per person
    true_pd: list[np.ndarray]
    strain_at: list[np.ndarray]  # per snapshot: strain in the last month before it


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _iso(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype("datetime64[D]")).dt.strftime("%Y-%m-%d")


def _event_days(rng: np.random.Generator, cal: Calendar, t: np.ndarray) -> np.ndarray:
    """A random day within each event's month (t may be before the span: negative)."""
    month = cal.start + np.asarray(t) - 1970 * 12
    first = month.astype("datetime64[M]").astype("datetime64[D]")
    days = ((month + 1).astype("datetime64[M]").astype("datetime64[D]") - first).astype(np.int64)
    offset = np.floor(rng.random(len(month)) * days).astype(np.int64)
    return first + offset.astype("timedelta64[D]")


def _balance(rows: np.ndarray, added: np.ndarray, cleared: np.ndarray) -> np.ndarray:
    """A running amount owed: grows by `added`, paid off in full when `cleared`. Only people
    who ever owe anything are stepped through the months."""
    out = np.zeros(added.shape)
    owing = np.flatnonzero(added.any(axis=1))
    add, clear = added[owing], cleared[owing]
    owed = np.zeros(len(owing))
    steps = np.zeros(add.shape)
    for t in range(add.shape[1]):
        owed = np.where(clear[:, t] & (add[:, t] == 0), 0.0, owed) + add[:, t]
        steps[:, t] = owed
    out[owing] = steps
    return np.where(rows, out, 0.0)


def simulate(pop: Population, cal: Calendar, snapshots: list[int],
             rng: np.random.Generator) -> Chunk:
    """Live every resident of the chunk through the span; `snapshots` are column indices."""
    n, months = len(pop), cal.months
    month = cal.index[None, :]
    born = pop.birth_month[:, None]
    rel = pop.reliability[:, None]
    age = (month - born) / 12
    adult = month > born + 12 * 18
    retire = np.where(pop.male, RETIREMENT_AGE[True], RETIREMENT_AGE[False])[:, None]
    working = adult & (month < born + 12 * retire) & (month >= pop.study_until[:, None])

    # Employment: a two-state Markov chain; losing a job is likelier under strain.
    p_loss = _sigmoid(-4.7 + 0.5 * pop.base_strain - 0.4 * pop.reliability)
    p_find = 0.12 + 0.04 * np.tanh(pop.reliability)
    draws = rng.random((n, months))
    employed = np.empty((n, months), dtype=bool)
    state = rng.random(n) > 0.05
    for t in range(months):
        state = np.where(state, draws[:, t] >= p_loss, draws[:, t] < p_find)
        employed[:, t] = state
    unemployed = working & ~employed

    # Financial strain: a personal level, a slow AR(1) drift, rare shocks, and job loss.
    eps = rng.standard_normal((n, months))
    shocks = rng.random((n, months)) < 0.006
    drift = np.empty((n, months))
    x = STRAIN_SD * rng.standard_normal(n)
    scale = np.sqrt(1 - STRAIN_RHO**2) * STRAIN_SD
    for t in range(months):
        x = STRAIN_RHO * x + scale * eps[:, t] + 1.2 * shocks[:, t]
        drift[:, t] = x
    strain = pop.base_strain[:, None] + drift + 0.6 * unemployed
    # Penalties come first: their fines are bills that raise strain for months after.
    integrity = pop.integrity[:, None]
    penalties = _penalty_draws(rng, adult, rel, integrity, strain)
    strain = strain + _fine_shocks(penalties)
    risk = strain - 0.8 * rel  # the propensity to leave an obligation unmet this month

    # Defaults on deposit-free services (the outcome) and court listings, month by month: a
    # default makes a listing likelier, and an active listing makes the next default likelier.
    hazard, default, listings = _defaults_and_listings(
        rng, adult, strain, risk, rel, integrity,
        pop.luck[:, None] + (DEFAULT_EARLY / DEFAULT_LUCK) * pop.early_habit[:, None])

    feeds = {
        Source.SOCIAL_SECURITY: _social_security(pop, cal, rng, working & employed,
                                                   adult & ~working & (age >= 50), risk,
                                                   strain),
        Source.TRANSIT: _transit(pop, cal, rng, adult, strain, risk, default),
        Source.COURT: _court(pop, cal, rng, listings),
        Source.PENALTY: _penalty(pop, cal, rng, penalties),
        Source.POSITIVE: _positive(pop, cal, rng, adult, age),
    }
    return Chunk(
        feeds,
        [default[:, t:t + 12].any(axis=1) for t in snapshots],
        [1 - np.prod(1 - hazard[:, t:t + 12], axis=1) for t in snapshots],
        [strain[:, t - 1] if t > 0 else pop.base_strain for t in snapshots],
    )


def _text(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    """Strings from a closed list by position: far cheaper than numpy string arrays."""
    return pl.Series(values, dtype=pl.String).gather(index.astype(np.int64))


def _monthly_frame(pop: Population, cal: Calendar, person: np.ndarray, t: np.ndarray,
                   columns: dict[str, np.ndarray | pl.Series]) -> pl.DataFrame:
    return pl.DataFrame({
        "resident_id": pop.resident_id.gather(person),
        "month": cal.labels.gather(t),
        **columns,
    })


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A people × months matrix holding `values` at the cells of `mask` (row-major order)."""
    out = np.zeros(mask.shape, dtype=values.dtype)
    out[mask] = values
    return out


def _social_security(pop: Population, cal: Calendar, rng: np.random.Generator,
                     on_payroll: np.ndarray, retired: np.ndarray,
                     risk: np.ndarray, strain: np.ndarray) -> pl.DataFrame:
    """A row for every covered month in work, and an `exempt` row for every month of a
    covered resident's pension: retirement is not a gap. Missed months build up arrears."""
    covered = (pop.coverage != NONE)[:, None]
    pension = retired & covered
    rows = (on_payroll & covered) | pension
    person, t = np.nonzero(rows)
    k = len(person)
    exempt = pension[rows]
    flexible = pop.coverage[person] == FLEXIBLE
    q = risk[rows]
    missed = ~exempt & (rng.random(k) < _sigmoid(np.where(flexible, MISSED_FLEXIBLE, MISSED_FORMAL)
                                                      + MISSED_RISK * q))
    base = np.where(exempt, 0.0, pop.contribution_base[person])
    due = np.where(missed, np.where(flexible, 0.2, 0.3) * base, 0.0)
    cleared = rng.random(k) < 0.6 * _sigmoid(0.5 - q)
    arrears = _balance(rows, _scatter(rows, due), _scatter(rows, cleared))[rows]
    status = np.where(exempt, 2, missed.astype(np.int64))
    # A month in good standing settled before its due date: the same habit as transit's (one
    # habit per resident, two sources of evidence), hard months pushing payment to the due
    # date. Pension months carry it too (the pensioner's own dues on the account, such as the
    # resident medical-insurance premium, paid ahead or not): without it, 93% of the 60+ had no
    # evidence, the gate refused the score (60+ at the 700 permit: 0.68) and 750 went to the
    # working (60+ at 0.07 of the best group's rate).
    early = (status != 1) & (rng.random(k) < _sigmoid(
        EARLY_LOGIT + EARLY_HABIT * pop.early_habit[person] - EARLY_STRAIN * strain[rows]))
    return _monthly_frame(pop, cal, person, t, {
        "status": _text(("paid", "missed", "exempt"), status), "contribution_base": base,
        "arrears": np.round(arrears, 2), "paid_early": early.astype(np.int64),
    })


def _transit(pop: Population, cal: Calendar, rng: np.random.Generator, adult: np.ndarray,
             strain: np.ndarray, risk: np.ndarray, default: np.ndarray) -> pl.DataFrame:
    """Card holders' monthly rides; fees left unpaid, including defaults, stay on the card."""
    card = adult & pop.transit_card[:, None]
    person, t = np.nonzero(card)
    k = len(person)
    rel, s, q = pop.reliability[person], strain[card], risk[card]
    scale = SEASON[cal.index[t] % 12] * (rng.random(k) < 0.9)  # 10% of months unused
    lam = pop.ride_rate[person] * scale  # transit rides: Poisson, drawn as its normal limit
    rides = np.maximum(np.rint(lam + np.sqrt(lam) * rng.standard_normal(k)), 0).astype(np.int64)
    bikes = rng.poisson(pop.bike_rate[person] * scale)
    used = rides + bikes > 0
    biked = bikes > 0
    overdue, damage = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    overdue[biked] = rng.poisson(bikes[biked] * 0.02 * np.exp(-1.2 * rel[biked] + 0.5 * s[biked]))
    damage[biked] = rng.poisson(bikes[biked] * 0.001 * np.exp(-0.5 * rel[biked]))
    evasions = rng.poisson(rides * 0.0006 * np.exp(-1.0 * rel + 0.4 * s))
    small = used & (rng.random(k) < _sigmoid(SMALL_FEE_LOGIT + SMALL_FEE_RISK * q))
    small_fee = np.zeros(k)
    small_fee[small] = np.round(rng.uniform(2, 40, small.sum()), 1)
    visible = default[card] & (rng.random(k) < 0.75)  # defaults on transit-linked services
    big_fee = np.zeros(k)
    big_fee[visible] = np.round(rng.uniform(80, 600, visible.sum()), 1)
    unpaid = (
        _balance(card, _scatter(card, small_fee), _scatter(card, rng.random(k) < 0.65))
        + _balance(card, _scatter(card, big_fee),
                   _scatter(card, rng.random(k) < 0.3 * _sigmoid(-q) + 0.1))
    )[card]
    rows = used | (unpaid > 0)
    early = (unpaid == 0) & (rng.random(k) < _sigmoid(
        EARLY_LOGIT + EARLY_HABIT * pop.early_habit[person] - EARLY_STRAIN * s))
    return _monthly_frame(pop, cal, person[rows], t[rows], {
        "rides": rides[rows], "bike_rides": bikes[rows], "overdue_returns": overdue[rows],
        "unpaid_fees": np.round(unpaid[rows], 2), "fare_evasions": evasions[rows],
        "damage_incidents": damage[rows], "paid_early": early[rows].astype(np.int64),
    })


def _events(pop: Population, cal: Calendar, rng: np.random.Generator,
            mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    person, t = np.nonzero(mask)
    return person, t, _event_days(rng, cal, t)


NUMBERS = {Source.COURT: ("case_no", "号"), Source.PENALTY: ("decision_no", "号"),
           Source.POSITIVE: ("event_no", "")}


def numbered(source: Source, frame: pl.DataFrame, first: int) -> pl.DataFrame:
    """The feed's own columns, in order; events get reference numbers that run on from
    `first` (the rows already written), so that they are unique city-wide."""
    if source in NUMBERS:
        name, suffix = NUMBERS[source]
        sequence = pl.int_range(first + 1, first + 1 + pl.len(), dtype=pl.Int64)
        frame = frame.with_columns(pl.format("{}{}" + suffix, "_prefix", sequence).alias(name))
    return frame.select(SCHEMAS[source].column_names)


@dataclass
class _Listings:
    """Court listings: the person, the month filed, and the month closed (-1: still active)."""

    person: np.ndarray
    filed: np.ndarray
    closed: np.ndarray


def _defaults_and_listings(rng: np.random.Generator, adult: np.ndarray, strain: np.ndarray,
                           risk: np.ndarray, rel: np.ndarray, integrity: np.ndarray,
                           luck: np.ndarray) -> tuple[np.ndarray, np.ndarray, _Listings]:
    """(monthly default hazard, defaults, listings). The list starts with a stock of open
    listings filed before the span (their ages geometric, as in a steady state). Each month:
    the default hazard (higher while listed), then listings paid off (`LISTING_CLOSE`), then
    new listings, likelier in the 12 months after a default. One listing at a time per person."""
    n, months = adult.shape
    base = (DEFAULT_INTERCEPT + DEFAULT_STRAIN * strain + DEFAULT_RELIABILITY * rel
            + DEFAULT_INTEGRITY * integrity + DEFAULT_LUCK * luck)
    draws = rng.random((3, n, months))
    hazard = np.empty((n, months))
    default = np.zeros((n, months), dtype=bool)
    tilt = LISTING_RISK * risk + LISTING_INTEGRITY * integrity
    stock = adult[:, 0] & (rng.random(n) < LISTING_STOCK_MONTHS * _sigmoid(
        LISTING_INTERCEPT + tilt[:, 0]))
    listed = stock.copy()
    open_at = np.where(stock, np.cumsum(stock) - 1, -1)  # index of the person's open listing
    last_default = np.full(n, -100)
    person: list[np.ndarray] = [np.flatnonzero(stock)]
    filed: list[np.ndarray] = [-rng.geometric(LISTING_CLOSE, int(stock.sum()))]
    closed = np.full(int(stock.sum()), -1)
    for t in range(months):
        hazard[:, t] = _sigmoid(base[:, t] + LISTED_EFFECT * listed) * adult[:, t]
        default[:, t] = draws[0, :, t] < hazard[:, t]
        paying = np.flatnonzero(listed & (draws[1, :, t] < LISTING_CLOSE))
        closed[open_at[paying]] = t
        listed[paying] = False
        recent = (t - last_default <= 12).astype(np.float64)
        p_list = _sigmoid(LISTING_INTERCEPT + tilt[:, t] + LISTING_AFTER_DEFAULT * recent)
        new = np.flatnonzero(adult[:, t] & ~listed & (draws[2, :, t] < p_list))
        open_at[new] = len(closed) + np.arange(len(new))
        closed = np.r_[closed, np.full(len(new), -1)]
        person.append(new)
        filed.append(np.full(len(new), t))
        listed[new] = True
        last_default = np.where(default[:, t], t, last_default)
    return hazard, default, _Listings(np.concatenate(person), np.concatenate(filed), closed)


def _court(pop: Population, cal: Calendar, rng: np.random.Generator,
           listings: _Listings) -> pl.DataFrame:
    """Listings with their amounts; a closed one was fulfilled (mostly) or removed."""
    order = np.lexsort((listings.filed, listings.person))
    person, t, close = (listings.person[order], listings.filed[order], listings.closed[order])
    k = len(person)
    filed = _event_days(rng, cal, t)
    # Judgement debts of individuals: a log-normal around ¥25,000 (most are consumer loans,
    # private lending and wages owed: thousands to a few hundred thousand yuan).
    amount = np.round(np.exp(np.log(25000) + rng.standard_normal(k)), -1)
    is_closed = close >= 0
    closed = np.maximum(_event_days(rng, cal, np.where(is_closed, close, t)), filed)
    status = _text(("active", "fulfilled", "removed"),
                   np.where(~is_closed, 0, np.where(rng.random(k) < 0.8, 1, 2)))
    year = (cal.start + t) // 12
    region = (pop.resident_id.gather(person).str.slice(2, 4))
    return pl.DataFrame({
        "resident_id": pop.resident_id.gather(person),
        "filed_on": _iso(filed),
        "amount": amount,
        "status": status,
        "closed_on": _iso(closed),
        "_year": year,
        "_region": region,
    }).with_columns(
        _prefix=pl.format("({})浙{}执", "_year", "_region"),
        closed_on=pl.when(pl.col("status") == "active").then(None).otherwise("closed_on"),
    )


def _penalty_draws(rng: np.random.Generator, adult: np.ndarray, rel: np.ndarray,
                   integrity: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """Severity of each adult-month's penalty decision: -1 none, else an index of SEVERITIES.
    Rarer among the reliable; serious ones concentrate further among the unreliable and the
    strained (fraud, unlicensed business, tax), so they say more about default."""
    hazard = PENALTY_RATE * np.exp(PENALTY_RELIABILITY * rel + PENALTY_INTEGRITY * integrity
                                   + PENALTY_STRAIN * strain)
    decided = adult & (rng.random(adult.shape) < hazard)
    u = rng.random(adult.shape)
    serious = SERIOUS_SHARE * np.exp(SERIOUS_INTEGRITY * integrity + SERIOUS_STRAIN * strain)
    level = np.where(u < serious, 2, np.where(u < serious + GENERAL_SHARE, 1, 0))
    return np.where(decided, level, -1)


def _fine_shocks(levels: np.ndarray) -> np.ndarray:
    """Extra strain in the months a fine weighs on: `FINE_SHOCK` by severity, from the month
    of the decision for its number of months (a moving sum over the decisions)."""
    out = np.zeros(levels.shape)
    for severity, (size, length) in FINE_SHOCK.items():
        hits = np.cumsum(levels == SEVERITIES.index(severity), axis=1)
        before = np.zeros_like(hits)
        before[:, length:] = hits[:, :-length]
        out += size * (hits - before)
    return out


def _penalty(pop: Population, cal: Calendar, rng: np.random.Generator,
             levels: np.ndarray) -> pl.DataFrame:
    """Administrative penalties: mostly minor traffic and public-order matters."""
    person, t, decided = _events(pop, cal, rng, levels >= 0)
    k = len(person)
    level = levels[person, t]
    severity = np.array(SEVERITIES)[level]
    category = _text(PENALTY_CATEGORIES, rng.choice(len(PENALTY_CATEGORIES), k, p=CATEGORY_SHARES))
    noise = rng.standard_normal(k)
    fine = np.select(
        [severity == "minor", severity == "general"],
        [rng.uniform(50, 200, k), np.clip(np.exp(np.log(1000) + 0.8 * noise), 200, 20000)],
        np.clip(np.exp(np.log(20000) + 0.9 * noise), 5000, 500000),
    )
    stated = rng.random(k) < 0.4
    window = np.select([severity == "general", severity == "serious"],
                       [rng.integers(3, 13, k), rng.integers(12, 37, k)], 0)
    repaired = decided + rng.integers(90, 400, k).astype("timedelta64[D]")
    repair = ((severity != "minor") & (rng.random(k) < 0.25 * _sigmoid(pop.reliability[person]))
              & (repaired <= np.datetime64(cal.last_day)))
    year = cal.index[t] // 12
    return pl.DataFrame({
        "resident_id": pop.resident_id.gather(person),
        "decided_on": _iso(decided),
        "category": category,
        "severity": _text(SEVERITIES, level),
        "fine": np.round(fine, -1),
        "window_months": pl.Series(window, dtype=pl.Int64),
        "repaired_on": _iso(repaired),
        "_year": year,
        "_stated": stated & (severity != "minor"),
        "_repair": repair,
    }).with_columns(
        _prefix=pl.format("杭罚决〔{}〕", "_year"),
        window_months=pl.when("_stated").then("window_months"),
        repaired_on=pl.when("_repair").then("repaired_on"),
    )


def _positive(pop: Population, cal: Calendar, rng: np.random.Generator, adult: np.ndarray,
              age: np.ndarray) -> pl.DataFrame:
    """Volunteering (by the minority who volunteer, a few more among the reliable), blood
    donation (18–60), honours. Weakly tied to reliability and integrity: a modest signal."""
    rel, honest = pop.reliability[:, None], pop.integrity[:, None]
    shape = adult.shape
    volunteer = rng.random(len(pop)) < _sigmoid(VOLUNTEER_LOGIT + VOLUNTEER_RELIABILITY * pop.reliability
                                                + VOLUNTEER_INTEGRITY * pop.integrity)
    volunteering = rng.poisson(VOLUNTEER_RATE * volunteer[:, None] * adult)
    blood = adult & (age <= 60) & (rng.random(shape) < BLOOD_RATE * np.exp(BLOOD_LINK * (rel + honest)))
    honour = adult & (rng.random(shape) < HONOUR_RATE * np.exp(HONOUR_LINK * (rel + honest)))
    person, t = np.nonzero(volunteering)
    reps = volunteering[person, t]
    person, t = np.repeat(person, reps), np.repeat(t, reps)
    kinds = [np.zeros(len(person), dtype=np.int64)]
    for code, mask in ((1, blood), (2, honour)):  # POSITIVE_KINDS order
        p, q = np.nonzero(mask)
        person, t = np.r_[person, p], np.r_[t, q]
        kinds.append(np.full(len(p), code))
    kind = np.concatenate(kinds)
    order = np.lexsort((t, person))
    person, t, kind = person[order], t[order], kind[order]
    k = len(person)
    hours = np.where(kind == 0, rng.integers(2, 17, k) / 2, 0.0)
    year = cal.index[t] // 12
    return pl.DataFrame({
        "resident_id": pop.resident_id.gather(person),
        "event_on": _iso(_event_days(rng, cal, t)),
        "kind": _text(POSITIVE_KINDS, kind),
        "hours": hours,
        "_year": year,
    }).with_columns(_prefix=pl.format("HZXY-{}-", "_year"))
