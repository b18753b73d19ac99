"""The outcome and the rare events of a life: defaults on deposit-free services and court
listings (which feed each other month by month), administrative penalties (whose fines add
strain), and positive records. Each dial below says which fact it follows; the monthly
social-security and transit feeds are `features.city_records`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.city_calendar import Calendar, event_days, from_list, iso_days, sigmoid
from features.city_people import Population
from features.records import PENALTY_CATEGORIES, POSITIVE_KINDS, SEVERITIES

# --- The dials of the story, each with the fact it follows ------------------------------------
# Deposit-free default: a fee or bill unpaid 30+ days. The monthly hazard's intercept (logit)
# gives about 2% of adults a year, the order of the overdue rates reported for deposit-free
# (credit-based) rental and pay-later services and of the "90+ days past due" share of
# consumer-credit panels (a few percent a year).
DEFAULT_INTERCEPT = -7.7
# Default odds per unit of each hidden trait (logit): strain is ability to pay, reliability
# everyday conscientiousness, integrity willingness to pay; luck shows in nothing else.
DEFAULT_STRAIN, DEFAULT_RELIABILITY, DEFAULT_INTEGRITY, DEFAULT_LUCK = 1.1, -0.5, -0.5, 0.35
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
CATEGORY_SHARES = (0.45, 0.10, 0.07, 0.10, 0.18, 0.10)  # in PENALTY_CATEGORIES order


def _events(pop: Population, cal: Calendar, rng: np.random.Generator,
            mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    person, t = np.nonzero(mask)
    return person, t, event_days(rng, cal, t)

@dataclass
class Listings:
    """Court listings: the person, the month filed, and the month closed (-1: still active)."""

    person: np.ndarray
    filed: np.ndarray
    closed: np.ndarray


def defaults_and_listings(rng: np.random.Generator, adult: np.ndarray, strain: np.ndarray,
                           risk: np.ndarray, rel: np.ndarray, integrity: np.ndarray,
                           luck: np.ndarray) -> tuple[np.ndarray, np.ndarray, Listings]:
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
    stock = adult[:, 0] & (rng.random(n) < LISTING_STOCK_MONTHS * sigmoid(
        LISTING_INTERCEPT + tilt[:, 0]))
    listed = stock.copy()
    open_at = np.where(stock, np.cumsum(stock) - 1, -1)  # index of the person's open listing
    last_default = np.full(n, -100)
    person: list[np.ndarray] = [np.flatnonzero(stock)]
    filed: list[np.ndarray] = [-rng.geometric(LISTING_CLOSE, int(stock.sum()))]
    closed = np.full(int(stock.sum()), -1)
    for t in range(months):
        hazard[:, t] = sigmoid(base[:, t] + LISTED_EFFECT * listed) * adult[:, t]
        default[:, t] = draws[0, :, t] < hazard[:, t]
        paying = np.flatnonzero(listed & (draws[1, :, t] < LISTING_CLOSE))
        closed[open_at[paying]] = t
        listed[paying] = False
        recent = (t - last_default <= 12).astype(np.float64)
        p_list = sigmoid(LISTING_INTERCEPT + tilt[:, t] + LISTING_AFTER_DEFAULT * recent)
        new = np.flatnonzero(adult[:, t] & ~listed & (draws[2, :, t] < p_list))
        open_at[new] = len(closed) + np.arange(len(new))
        closed = np.r_[closed, np.full(len(new), -1)]
        person.append(new)
        filed.append(np.full(len(new), t))
        listed[new] = True
        last_default = np.where(default[:, t], t, last_default)
    return hazard, default, Listings(np.concatenate(person), np.concatenate(filed), closed)


def court_feed(pop: Population, cal: Calendar, rng: np.random.Generator,
           listings: Listings) -> pl.DataFrame:
    """Listings with their amounts; a closed one was fulfilled (mostly) or removed."""
    order = np.lexsort((listings.filed, listings.person))
    person, t, close = (listings.person[order], listings.filed[order], listings.closed[order])
    k = len(person)
    filed = event_days(rng, cal, t)
    # Judgement debts of individuals: a log-normal around ¥25,000 (most are consumer loans,
    # private lending and wages owed: thousands to a few hundred thousand yuan).
    amount = np.round(np.exp(np.log(25000) + rng.standard_normal(k)), -1)
    is_closed = close >= 0
    closed = np.maximum(event_days(rng, cal, np.where(is_closed, close, t)), filed)
    status = from_list(("active", "fulfilled", "removed"),
                   np.where(~is_closed, 0, np.where(rng.random(k) < 0.8, 1, 2)))
    year = (cal.start + t) // 12
    region = (pop.resident_id.gather(person).str.slice(2, 4))
    return pl.DataFrame({
        "resident_id": pop.resident_id.gather(person),
        "filed_on": iso_days(filed),
        "amount": amount,
        "status": status,
        "closed_on": iso_days(closed),
        "_year": year,
        "_region": region,
    }).with_columns(
        _prefix=pl.format("({})浙{}执", "_year", "_region"),
        closed_on=pl.when(pl.col("status") == "active").then(None).otherwise("closed_on"),
    )


def penalty_draws(rng: np.random.Generator, adult: np.ndarray, rel: np.ndarray,
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


def fine_shocks(levels: np.ndarray) -> np.ndarray:
    """Extra strain in the months a fine weighs on: `FINE_SHOCK` by severity, from the month
    of the decision for its number of months (a moving sum over the decisions)."""
    out = np.zeros(levels.shape)
    for severity, (size, length) in FINE_SHOCK.items():
        hits = np.cumsum(levels == SEVERITIES.index(severity), axis=1)
        before = np.zeros_like(hits)
        before[:, length:] = hits[:, :-length]
        out += size * (hits - before)
    return out


def penalty_feed(pop: Population, cal: Calendar, rng: np.random.Generator,
             levels: np.ndarray) -> pl.DataFrame:
    """Administrative penalties: mostly minor traffic and public-order matters."""
    person, t, decided = _events(pop, cal, rng, levels >= 0)
    k = len(person)
    level = levels[person, t]
    severity = np.array(SEVERITIES)[level]
    category = from_list(PENALTY_CATEGORIES, rng.choice(len(PENALTY_CATEGORIES), k, p=CATEGORY_SHARES))
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
    repair = ((severity != "minor") & (rng.random(k) < 0.25 * sigmoid(pop.reliability[person]))
              & (repaired <= np.datetime64(cal.last_day)))
    year = cal.index[t] // 12
    return pl.DataFrame({
        "resident_id": pop.resident_id.gather(person),
        "decided_on": iso_days(decided),
        "category": category,
        "severity": from_list(SEVERITIES, level),
        "fine": np.round(fine, -1),
        "window_months": pl.Series(window, dtype=pl.Int64),
        "repaired_on": iso_days(repaired),
        "_year": year,
        "_stated": stated & (severity != "minor"),
        "_repair": repair,
    }).with_columns(
        _prefix=pl.format("杭罚决〔{}〕", "_year"),
        window_months=pl.when("_stated").then("window_months"),
        repaired_on=pl.when("_repair").then("repaired_on"),
    )


def positive_feed(pop: Population, cal: Calendar, rng: np.random.Generator, adult: np.ndarray,
              age: np.ndarray) -> pl.DataFrame:
    """Volunteering (by the minority who volunteer, a few more among the reliable), blood
    donation (18–60), honours. Weakly tied to reliability and integrity: a modest signal."""
    rel, honest = pop.reliability[:, None], pop.integrity[:, None]
    shape = adult.shape
    volunteer = rng.random(len(pop)) < sigmoid(VOLUNTEER_LOGIT + VOLUNTEER_RELIABILITY * pop.reliability
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
        "event_on": iso_days(event_days(rng, cal, t)),
        "kind": from_list(POSITIVE_KINDS, kind),
        "hours": hours,
        "_year": year,
    }).with_columns(_prefix=pl.format("HZXY-{}-", "_year"))
