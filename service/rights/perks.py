"""Perks are configuration, not code: a threshold, extra conditions, a policy version.

A condition is a named test on the person's features (from the catalog), so that a perk can
say "no active court listing" without any code that knows what a court listing is. A decision
is `yes`, `no`, or `pending` while the person's request for human review is open (PIPL Art. 24).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from features.catalog import BY_NAME

DEFAULT_PERKS_FILE = Path(__file__).with_name("perks.json")

# condition name → (feature, the most it may be, what it means in both languages)
CONDITIONS: dict[str, tuple[str, float, str, str]] = {
    "no_active_court_listing": ("ct_active_listings", 0.0, "无在列失信被执行记录",
                                "no active court-enforcement listing"),
    "no_serious_penalty_counting": ("pn_serious_counting", 0.0, "无公示期内严重行政处罚",
                                    "no serious administrative penalty on record"),
}
for _feature, *_ in CONDITIONS.values():
    assert _feature in BY_NAME, f"perk condition refers to unknown feature {_feature}"

# The thin-file rule (README, "Decisions"): a person with no social-security month, no transit
# month and no positive record that counts has no history of meeting an obligation. Their
# score is an empty file's (every feature at its no-record default), which on the demo scale
# sits in "good" beside the clean files, yet it rests on no evidence: no perk is granted on it,
# as bureaus leave such files unscored (minimum scoring criteria) rather than guess.
THIN_FILE_FEATURE = "sources_reporting"
assert THIN_FILE_FEATURE in BY_NAME


def thin_file(features: dict[str, float]) -> bool:
    """True when no source of payment or civic history reports on the person (a feature dict
    without the column is taken as a file: older callers pass only what they test)."""
    value = features.get(THIN_FILE_FEATURE)
    return value is not None and value < 1


# How the perks page names the rule when it is what keeps a perk locked: the score alone may
# pass the minimum (an empty file scores in "good"), so "0 points to go" with every condition
# met would leave the person guessing. The text says why, and what would lift it.
THIN_FILE_CONDITION = "record_on_file"
THIN_FILE_ZH = ("有社保缴费、公共交通出行或守信激励记录（暂无任何记录时，权益不按分数开放；"
                "任一此类记录入档后即按分数与条件判断）")
THIN_FILE_EN = ("a record on file of social security, transit use or a positive record (with "
                "none, no perk is granted on the score alone; any one such record lifts this)")


def thin_file_condition(features: dict[str, float]) -> dict | None:
    """The thin-file rule as an unmet condition of every perk, for a person it applies to
    (None for everyone else): the perks page lists it beside the perk's own conditions."""
    if not thin_file(features):
        return None
    return {"condition": THIN_FILE_CONDITION, "text_zh": THIN_FILE_ZH, "text_en": THIN_FILE_EN,
            "met": False}


@dataclass(frozen=True)
class Perk:
    perk_id: str
    policy_version: int
    partner_id: str
    name_zh: str
    name_en: str
    min_score: float
    conditions: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise ValueError(f"perk {self.perk_id}: unknown conditions {unknown}")

    def failed_conditions(self, features: dict[str, float]) -> list[str]:
        return [name for name in self.conditions
                if features.get(CONDITIONS[name][0], 0.0) > CONDITIONS[name][1]]

    def decide(self, score: float, features: dict[str, float], review_state: str = "none",
               review_outcome: str | None = None) -> str:
        """yes / no from the score and conditions — unless a human review is pending (then
        `pending`) or has decided (PIPL Art. 24: the reviewer's outcome replaces the score's)."""
        if review_state == "pending":
            return "pending"
        if review_state == "decided" and review_outcome in ("eligible", "not_eligible"):
            return "yes" if review_outcome == "eligible" else "no"
        qualifies = (score >= self.min_score and not self.failed_conditions(features)
                     and not thin_file(features))
        return "yes" if qualifies else "no"

    def points_needed(self, score: float) -> float:
        return max(0.0, self.min_score - score)


@dataclass(frozen=True)
class PerkConfig:
    partners: tuple[dict, ...]
    perks: tuple[Perk, ...]

    def thresholds(self) -> dict[str, float]:
        """Perk → minimum score: what evaluation and promotion gates check fairness at."""
        return {perk.perk_id: perk.min_score for perk in self.perks}

    def perk(self, perk_id: str) -> Perk:
        for perk in self.perks:
            if perk.perk_id == perk_id:
                return perk
        raise KeyError(perk_id)


def load_perks(path: str | Path | None = None) -> PerkConfig:
    data = json.loads(Path(path or DEFAULT_PERKS_FILE).read_text(encoding="utf-8"))
    perks = tuple(
        Perk(**{**item, "conditions": tuple(item.get("conditions", ()))}) for item in data["perks"]
    )
    partner_ids = {p["partner_id"] for p in data["partners"]}
    for perk in perks:
        if perk.partner_id not in partner_ids:
            raise ValueError(f"perk {perk.perk_id}: unknown partner {perk.partner_id}")
    return PerkConfig(tuple(data["partners"]), perks)
