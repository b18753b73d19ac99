"""Dispute, repair and human review end to end, through the HTTP API only.

Each story is told by the citizen's, the partner's and the operator's requests alone, and every
page that should change is read before and after: the score, the reasons, the records page,
the perks page, the partner's answer and the citizen's access log; the audit log is sealed
and verified at the end.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from dataclasses import dataclass

import polars as pl
import pytest

from features.identity import person_key
from features.records import Source
from features.rules import REPAIRED
from service.base import clock
from service.rights.pages import REASON_TEXT
from tests.service.conftest import Auth, audit_log_verifies

BIKES = "bike-deposit-free"
ANSWER_KEYS = {"eligible", "decision_id", "expires_at"}


@dataclass
class Partner:
    """A partner holding one citizen's consent for one perk."""

    client: object
    headers: dict[str, str]
    token: str
    perk_id: str

    def ask(self) -> dict:
        response = self.client.post("/v1/partner/eligibility", headers=self.headers,
                                    json={"consent_token": self.token, "perk_id": self.perk_id})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert set(body) == ANSWER_KEYS
        return body


def consent_for(client, auth: Auth, key: str, perk_id: str = BIKES) -> Partner:
    """The citizen grants the perk's partner a consent and hands it the token."""
    perk = next(p for p in client.get("/v1/me/perks", headers=auth.citizen(key)).get_json()[
        "perks"] if p["perk_id"] == perk_id)
    headers = auth.partner(perk["partner_id"])
    granted = client.post("/v1/me/consents", headers=auth.citizen(key), json={
        "partner_id": perk["partner_id"], "perks": [perk_id],
        "until": (clock.today(client.application) + dt.timedelta(days=30)).isoformat()})
    assert granted.status_code == 201, granted.get_json()
    return Partner(client, headers, granted.get_json()["token"], perk_id)


def page(client, headers, name: str) -> dict | list:
    response = client.get(f"/v1/me/{name}", headers=headers)
    assert response.status_code == 200, (name, response.get_json())
    return response.get_json()


def record_on_page(client, headers, source: str, record_id: str) -> dict:
    return next(r for r in page(client, headers, "records")["records"]
                if (r["source"], r["record_id"]) == (source, record_id))


def perk_on_page(client, headers, perk_id: str = BIKES) -> dict:
    return next(p for p in page(client, headers, "perks")["perks"] if p["perk_id"] == perk_id)


def reason_points(client, headers) -> dict[str, float]:
    """The citizen's reasons, feature → points, checked to add up to the score."""
    body = page(client, headers, "explanation")
    total = (body["base_points"] + sum(r["points"] for r in body["reasons"])
             + body["other_points"] + body["clip_points"])
    assert total == body["score"]  # whole points, exactly
    return {r["feature"]: r["points_exact"] for r in body["reasons"]}


def partner_asks(log: list[dict], perk_id: str = BIKES) -> list[tuple[str, str]]:
    """The partner's questions in the access log, oldest first: (actor, answer)."""
    return [(e["actor"], e["answer"]) for e in reversed(log)
            if e["action"] == "eligibility" and e["perk_id"] == perk_id]


def minimum_of(client, auth: Auth, perk_id: str = BIKES) -> float:
    """The perk's minimum score in the policy in force."""
    perks = client.get("/v1/admin/perks", headers=auth.admin()).get_json()["perks"]
    return next(p["min_score"] for p in perks if p["perk_id"] == perk_id)


def find_flip(client, auth: Auth, people_keys: list[str], perk_id: str = BIKES):
    """A resident refused the perk by the score whom one counting record keeps from it: the
    perks page says clearing that record alone would unlock it."""
    minimum = minimum_of(client, auth, perk_id)
    for key in people_keys:
        headers = auth.citizen(key)
        if page(client, headers, "score")["score"] >= minimum:
            continue
        perk = perk_on_page(client, headers, perk_id)
        if perk["status"] == "no" and perk["unlocked_by"]:
            return key, perk, perk["unlocked_by"][0]
    pytest.fail(f"none of the {len(people_keys)} residents has a record that locks {perk_id}")


# --- (a) a dispute: labelled, still counting; upheld, the perk unlocks ------------------------
def test_a_dispute_is_labelled_and_only_its_upholding_unlocks_the_perk(
        served_app, served_client, auth, people_keys):
    client, admin = served_client, auth.admin("ana")
    key, perk, record = find_flip(client, auth, people_keys)
    citizen = auth.citizen(key)
    partner = consent_for(client, auth, key)
    before_score = page(client, citizen, "score")["score"]
    before_reasons = reason_points(client, citizen)
    assert record_on_page(client, citizen, record["source"], record["record_id"])["counts"]
    first = partner.ask()
    assert first["eligible"] == "no" and before_score < perk["min_score"]

    opened = client.post("/v1/me/disputes", headers=citizen, json={
        "source": record["source"], "record_id": record["record_id"],
        "statement": "这个月我没有骑车 — I did not ride that month"})
    assert opened.status_code == 201, opened.get_json()
    dispute = opened.get_json()["dispute"]
    # labelled, not frozen: the score, the reasons and the perk are as before
    assert opened.get_json()["score"]["score"] == pytest.approx(before_score)
    assert page(client, citizen, "score")["score"] == pytest.approx(before_score)
    assert reason_points(client, citizen) == pytest.approx(before_reasons)
    labelled = record_on_page(client, citizen, record["source"], record["record_id"])
    assert (labelled["counts"], labelled["under_dispute"], labelled["label_en"],
            labelled["dispute_state"]) == (True, True, "under dispute", "open")
    assert perk_on_page(client, citizen)["status"] == "no"
    second = partner.ask()
    assert second["eligible"] == "no"

    queue = client.get("/v1/admin/disputes", headers=admin).get_json()["disputes"]
    assert [d["dispute_id"] for d in queue] == [dispute["dispute_id"]]
    note = "公交公司核实该月记录有误，已删除 — the operator found the month wrong"
    upheld = client.post(f"/v1/admin/disputes/{dispute['dispute_id']}/resolution",
                         headers=admin, json={"outcome": "upheld", "note": note})
    assert upheld.status_code == 200, upheld.get_json()
    new_score = upheld.get_json()["score"]["score"]
    assert math.floor(new_score) == record["score_without"]  # the page: whole points
    assert new_score >= perk["min_score"] > before_score
    assert page(client, citizen, "score")["score"] == math.floor(new_score)
    assert (record["source"], record["record_id"]) not in {
        (r["source"], r["record_id"]) for r in page(client, citizen, "records")["records"]}
    mine = page(client, citizen, f"disputes/{dispute['dispute_id']}")
    assert (mine["state"], mine["resolution"]) == ("upheld", note)
    assert perk_on_page(client, citizen)["status"] == "yes"
    third = partner.ask()
    assert third["eligible"] == "yes"

    log = page(client, citizen, "access-log")["entries"]
    partner_actor = f"partner:{perk['partner_id']}"
    assert partner_asks(log) == [(partner_actor, "no"), (partner_actor, "no"),
                                 (partner_actor, "yes")]
    decisions = [e["detail"]["decision_id"] for e in reversed(log) if e["action"] == "eligibility"]
    assert decisions == [first["decision_id"], second["decision_id"], third["decision_id"]]
    events = [(e["actor"], e["action"]) for e in reversed(log)
              if e["action"].startswith("dispute")]
    assert events == [("citizen", "dispute_opened"), ("admin:ana", "dispute_resolved")]
    resolved = next(e for e in log if e["action"] == "dispute_resolved")
    assert resolved["detail"]["outcome"] == "upheld"
    assert audit_log_verifies(served_app.extensions["osmanthus.engine"])


# --- (b) repair ----------------------------------------------------------------------------------
def resident_id_of(world, key: str) -> str:
    """The raw resident ID behind a person key, from the world's own feeds."""
    for source in Source:
        for value in pl.read_parquet(world.feed(source))["resident_id"].unique().to_list():
            try:
                if person_key(value) == key:
                    return value
            except ValueError:
                continue
    raise LookupError("no resident ID for this person key")


def penalty_feed(resident_id: str, repaired_on: str = "") -> bytes:
    """A penalty feed with one serious traffic penalty (it counts for a year)."""
    return pl.DataFrame([{
        "decision_no": "杭交罚2025-E2E-1", "resident_id": resident_id, "decided_on": "2025-06-01",
        "category": "traffic", "severity": "serious", "fine": "5000", "window_months": "",
        "repaired_on": repaired_on}]).write_csv().encode()


def upload(client, headers, content: bytes, name: str) -> dict:
    response = client.post("/v1/admin/feeds", headers=headers, content_type="multipart/form-data",
                           data={"source": "penalty", "file": (io.BytesIO(content), name)})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def serious_penalty_condition(client, headers) -> bool:
    """Whether the perks page says "no serious penalty counting" is met (from the features of
    the person's latest score, so it moves only when they are re-scored)."""
    perk = perk_on_page(client, headers, "permit-fast-track")
    return next(c["met"] for c in perk["conditions"]
                if c["condition"] == "no_serious_penalty_counting")


def test_a_repaired_penalty_stops_counting_and_the_person_is_rescored(
        served_client, auth, world, people_keys):
    """The test world's scorecard gives penalties no points (too few to learn from), so the
    re-score shows in the perks page's "no serious penalty" condition, which is read from the
    features of the person's latest score; the score itself may only fall, then comes back."""
    client, admin = served_client, auth.admin()
    key = people_keys[0]
    citizen = auth.citizen(key)
    raw = resident_id_of(world, key)
    clean = page(client, citizen, "score")["score"]
    assert serious_penalty_condition(client, citizen) is True

    sent = upload(client, admin, penalty_feed(raw), "penalties-2025-06.csv")
    assert (sent["rows_stored"], sent["people_changed"], sent["people_rescored"]) == (1, 1, 1)
    assert serious_penalty_condition(client, citizen) is False
    assert page(client, citizen, "score")["score"] <= clean  # monotone: never raises a score
    penalty = next(r for r in page(client, citizen, "records")["records"]
                   if r["source"] == "penalty" and r["details"]["decision_no"].endswith("E2E-1"))
    assert penalty["counts"] is True and penalty["repaired_on"] is None

    repaired = upload(client, admin, penalty_feed(raw, repaired_on="2025-12-01"),
                      "penalties-repaired.csv")
    assert (repaired["rows_stored"], repaired["people_changed"],
            repaired["people_rescored"]) == (1, 1, 1)
    after = record_on_page(client, citizen, "penalty", penalty["record_id"])
    assert (after["counts"], after["reason_en"], after["reason_zh"], after["repaired_on"]) == (
        False, REASON_TEXT[REPAIRED][1], REASON_TEXT[REPAIRED][0], "2025-12-01")
    assert serious_penalty_condition(client, citizen) is True
    assert page(client, citizen, "score")["score"] == pytest.approx(clean)


# --- (c) human review ----------------------------------------------------------------------------
@pytest.mark.parametrize(("outcome", "by_score", "final"), [
    ("eligible", "no", "yes"),  # a reviewer can grant what the score refused ...
    ("not_eligible", "yes", "no"),  # ... and refuse what it granted
])
def test_human_review_makes_partners_wait_then_the_reviewer_decides(
        served_app, served_client, auth, people_keys, outcome, by_score, final):
    client, admin = served_client, auth.admin("rev")
    minimum = minimum_of(client, auth)
    key = next(k for k in people_keys
               if (page(client, auth.citizen(k), "score")["score"] >= minimum)
               == (by_score == "yes"))
    citizen = auth.citizen(key)
    partner = consent_for(client, auth, key)
    library = consent_for(client, auth, key, "library-deposit-free")
    assert partner.ask()["eligible"] == by_score
    library_answer = library.ask()["eligible"]

    asked = client.post("/v1/me/review", headers=citizen, json={
        "perk_id": BIKES, "reason": "请人工复核 — please have a person decide"})
    assert asked.status_code == 201, asked.get_json()
    review = asked.get_json()
    assert (review["state"], review["perk_id"]) == ("pending", BIKES)
    assert partner.ask()["eligible"] == "pending"
    assert library.ask()["eligible"] == library_answer  # only the named perk waits
    assert perk_on_page(client, citizen)["status"] == "pending"
    assert perk_on_page(client, citizen, "library-deposit-free")["status"] == library_answer
    queue = client.get("/v1/admin/reviews", headers=admin).get_json()["reviews"]
    assert [(r["person_key"], r["perk_id"]) for r in queue] == [(key, BIKES)]
    path = f"/v1/admin/reviews/{review['review_id']}"
    assert client.get(path, headers=admin).status_code == 200

    no_reason = client.post(f"{path}/decision", headers=admin, json={"outcome": outcome})
    assert no_reason.status_code == 422 and "reason" in no_reason.get_json()["errors"]
    why = "核实了收入证明 — checked the income statement"
    decided = client.post(f"{path}/decision", headers=admin,
                          json={"outcome": outcome, "reason": why})
    assert decided.status_code == 200, decided.get_json()
    assert partner.ask()["eligible"] == final
    assert library.ask()["eligible"] == library_answer
    assert perk_on_page(client, citizen)["status"] == final
    mine = page(client, citizen, "review")
    assert [(r["state"], r["outcome"], r["outcome_reason"]) for r in mine] == [
        ("decided", outcome, why)]
    assert client.get("/v1/admin/reviews", headers=admin).get_json()["reviews"] == []

    log = page(client, citizen, "access-log")["entries"]
    actor = partner_asks(log)[0][0]
    assert partner_asks(log) == [(actor, by_score), (actor, "pending"), (actor, final)]
    events = [(e["actor"], e["action"]) for e in reversed(log) if "review" in e["action"]]
    assert events == [("citizen", "review_requested"), ("admin:rev", "admin_read_review"),
                      ("admin:rev", "review_decided")]
    decided_entry = next(e for e in log if e["action"] == "review_decided")["detail"]
    assert (decided_entry["outcome"], decided_entry["perk_id"], decided_entry["reason"]) == (
        outcome, BIKES, why)
    assert audit_log_verifies(served_app.extensions["osmanthus.engine"])
