"""Credit repair (信用修复): who may apply and from when, the admin's decision, and what it does."""

from __future__ import annotations

import datetime as dt

from features.records import Source
from features.rules import REPAIRED
from service.rights.pages import REASON_TEXT
from service.scoring.score import latest
from tests.service.conftest import DEMO_TODAY
from tests.service.test_disputes import LISTING, add_court_listing, add_record, record_of

GENERAL = "a1" * 16  # decided 2025-06-01, window 12 months: counts to 2026-06-01
SERIOUS = "a2" * 16  # decided 2025-06-01: repairable only from 2026-06-01
VOLUNTEERING = "a3" * 16


def add_penalty(app, key: str, record_id: str, severity: str) -> None:
    add_record(app, key, Source.PENALTY, record_id, decision_no=f"杭罚{record_id[:4]}",
               decided_on=dt.date(2025, 6, 1), category="tax", severity=severity, fine=800.0,
               window_months=12 if severity == "general" else 24)


def apply(client, headers, record_id: str, source: str = "penalty"):
    return client.post("/v1/me/repairs", headers=headers, json={
        "source": source, "record_id": record_id,
        "statement": "罚款已于2025年7月缴清 — the fine was paid in July 2025"})


def test_each_adverse_record_shows_when_it_becomes_repairable_and_when_it_expires(
        served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    add_penalty(served_app, key, GENERAL, "general")
    add_penalty(served_app, key, SERIOUS, "serious")
    add_court_listing(served_app, key)
    general = record_of(served_client, headers, GENERAL)["repair"]
    assert (general["adverse"], general["repairable"], general["repairable_from"],
            general["expires_on"], general["can_apply"]) == (
        True, True, "2025-09-01", "2026-06-01", True)
    assert general["obligation_en"] and general["obligation_zh"]
    serious = record_of(served_client, headers, SERIOUS)["repair"]
    assert (serious["repairable_from"], serious["expires_on"], serious["can_apply"]) == (
        "2026-06-01", "2027-06-01", False)
    court = record_of(served_client, headers, LISTING)["repair"]
    assert (court["adverse"], court["repairable"], court["can_apply"], court["expires_on"]) == (
        True, False, False, None)


def test_an_approved_repair_stops_the_record_counting_and_rescores(served_app, served_client,
                                                                   auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    add_penalty(served_app, key, GENERAL, "general")
    before = latest(engine, key)
    assert before["reasons"]["features"]["pn_general_counting"] >= 1

    applied = apply(served_client, headers, GENERAL)

    assert applied.status_code == 201, applied.get_json()
    repair = applied.get_json()
    assert (repair["state"], repair["received_on"]) == ("open", DEMO_TODAY.isoformat())
    shown = record_of(served_client, headers, GENERAL)
    assert shown["counts"] is True and shown["repair"]["can_apply"] is False
    assert shown["repair"]["application"]["state"] == "open"
    assert apply(served_client, headers, GENERAL).status_code == 409
    other = auth.citizen(people_keys[1])
    path = f"/v1/me/repairs/{repair['repair_id']}"
    assert served_client.get(path, headers=other).status_code == 404
    assert served_client.get(path, headers=headers).get_json()["state"] == "open"

    admin = auth.admin("src")
    queue = served_client.get("/v1/admin/repairs", headers=admin).get_json()["repairs"]
    assert [r["repair_id"] for r in queue] == [repair["repair_id"]]
    detail = served_client.get(f"/v1/admin/repairs/{repair['repair_id']}", headers=admin)
    assert detail.status_code == 200 and "July 2025" in detail.get_json()["statement"]
    decision = f"/v1/admin/repairs/{repair['repair_id']}/decision"
    no_reason = served_client.post(decision, headers=admin, json={"outcome": "approved"})
    assert no_reason.status_code == 422 and "reason" in no_reason.get_json()["errors"]
    approved = served_client.post(decision, headers=admin, json={
        "outcome": "approved", "reason": "税务局确认已缴清"})
    assert approved.status_code == 200, approved.get_json()

    after = latest(engine, key)
    assert after["reasons"]["features"]["pn_general_counting"] == \
        before["reasons"]["features"]["pn_general_counting"] - 1
    assert approved.get_json()["score"]["score"] == after["score"] >= before["score"]
    record = record_of(served_client, headers, GENERAL)
    assert (record["counts"], record["reason_en"], record["repaired_on"]) == (
        False, REASON_TEXT[REPAIRED][1], DEMO_TODAY.isoformat())
    assert record["repair"]["application"]["resolution"] == "税务局确认已缴清"
    again = served_client.post(decision, headers=admin, json={
        "outcome": "refused", "reason": "x"})
    assert again.status_code == 409
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert [(e["actor"], e["action"]) for e in log[:3]] == [
        ("admin:src", "repair_decided"), ("admin:src", "admin_read_repair"),
        ("citizen", "repair_requested")]


def test_a_refused_repair_keeps_the_record_counting_with_the_reason(served_app, served_client,
                                                                    auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    add_penalty(served_app, key, GENERAL, "general")
    before = latest(engine, key)["score"]
    repair_id = apply(served_client, headers, GENERAL).get_json()["repair_id"]
    refused = served_client.post(f"/v1/admin/repairs/{repair_id}/decision",
                                 headers=auth.admin(), json={
                                     "outcome": "refused", "reason": "fine still unpaid"})
    assert refused.status_code == 200 and refused.get_json()["score"] is None
    record = record_of(served_client, headers, GENERAL)
    assert record["counts"] is True
    assert (record["repair"]["application"]["state"],
            record["repair"]["application"]["resolution"]) == ("refused", "fine still unpaid")
    assert record["repair"]["can_apply"] is True  # once the fine is paid, apply again
    assert latest(engine, key)["score"] == before


def test_what_cannot_be_repaired_is_refused_with_the_reason(served_app, served_client, auth,
                                                            people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    add_penalty(served_app, key, SERIOUS, "serious")
    add_court_listing(served_app, key)
    add_record(served_app, key, Source.POSITIVE, VOLUNTEERING, event_no="V-1",
               event_on=dt.date(2025, 11, 1), kind="volunteering", hours=8.0)
    early = apply(served_client, headers, SERIOUS)
    assert early.status_code == 422 and "2026-06-01" in early.get_json()["errors"]["record_id"][0]
    court = apply(served_client, headers, LISTING, "court")
    assert court.status_code == 422 and "fulfil" in court.get_json()["errors"]["record_id"][0]
    positive = apply(served_client, headers, VOLUNTEERING, "positive")
    assert positive.status_code == 422 and "adverse" in \
        positive.get_json()["errors"]["record_id"][0]
    theirs = apply(served_client, auth.citizen(people_keys[1]), SERIOUS)
    assert theirs.status_code == 404
    assert served_client.get("/v1/me/repairs", headers=headers).get_json() == []
