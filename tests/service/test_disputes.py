"""Disputes (异议): opening one labels the record, which keeps counting until its due date;
answering, withdrawing and letting it go overdue."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import select, update

from features.records import Source
from features.rules import DISPUTE_OVERDUE, FULFILLED
from service.base.errors import ApiError
from service.rights.disputes import resolve_dispute
from service.rights.pages import REASON_TEXT, UNDER_DISPUTE
from service.scoring.score import latest, rescore
from service.store.tables import RECORD_TABLES, audit_entries, disputes
from tests.service.conftest import DEMO_TODAY

LISTING = "c0" * 16  # record ids are 32 hexadecimal digits
MINOR_PENALTY = "d0" * 16


def add_record(app, person_key: str, source: Source, record_id: str, **values) -> None:
    """Store one record for a person and re-score them (as an ingest would)."""
    with app.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(RECORD_TABLES[source].insert().values(
            record_id=record_id, person_key=person_key, **values))
    rescore(app, person_key)


def add_court_listing(app, person_key: str, record_id: str = LISTING) -> None:
    """An active court listing: it counts, costs points and fails 'no active court listing'."""
    add_record(app, person_key, Source.COURT, record_id, case_no=f"(2025)浙0102执{record_id[-4:]}",
               filed_on=dt.date(2025, 6, 1), amount=48_000.0, status="active")


def add_minor_penalty(app, person_key: str, record_id: str = MINOR_PENALTY) -> None:
    """A minor penalty: stored, shown, never counts."""
    add_record(app, person_key, Source.PENALTY, record_id, decision_no="杭交罚2025-1",
               decided_on=dt.date(2025, 9, 1), category="traffic", severity="minor", fine=50.0)


def spoil_latest_transit_month(app, person_key: str) -> str:
    """Make the person's latest transit month a costly one (large unpaid fees, overdue
    returns) and re-score them; returns its record id."""
    table = RECORD_TABLES[Source.TRANSIT]
    with app.extensions["osmanthus.engine"].begin() as connection:
        record_id = connection.execute(
            select(table.c.record_id).where(table.c.person_key == person_key)
            .order_by(table.c.month.desc()).limit(1)).scalar_one()
        connection.execute(update(table).where(table.c.record_id == record_id).values(
            unpaid_fees=4_000.0, overdue_returns=9))
    rescore(app, person_key)
    return record_id


def record_of(client, headers, record_id: str) -> dict | None:
    page = client.get("/v1/me/records", headers=headers).get_json()
    return next((r for r in page["records"] if r["record_id"] == record_id), None)


def open_listing_dispute(client, headers, record_id: str = LISTING, source: str = "court"):
    return client.post("/v1/me/disputes", headers=headers, json={
        "source": source, "record_id": record_id, "statement": "这不是我的记录 — not mine"})


def lowering(client, headers) -> set[str]:
    """The features among the citizen's reasons that cost points."""
    body = client.get("/v1/me/explanation", headers=headers).get_json()
    return {r["feature"] for r in body["reasons"] if r["points"] < 0}


def test_a_dispute_labels_the_record_and_it_keeps_counting(served_app, served_client, auth,
                                                           people_keys):
    key = people_keys[0]
    headers = auth.citizen(key)
    engine = served_app.extensions["osmanthus.engine"]
    costly = spoil_latest_transit_month(served_app, key)
    before = served_client.get("/v1/me/score", headers=headers).get_json()
    assert record_of(served_client, headers, costly)["under_dispute"] is False

    response = open_listing_dispute(served_client, headers, costly, "transit")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    dispute = body["dispute"]
    assert dispute["state"] == "open" and dispute["overdue"] is False
    assert dispute["received_on"] == DEMO_TODAY.isoformat()
    assert dispute["due_on"] == (DEMO_TODAY + dt.timedelta(days=20)).isoformat()
    # a dispute alone changes nothing of the score: the record still counts
    assert body["score"]["score"] == pytest.approx(before["score"])
    assert served_client.get("/v1/me/score", headers=headers).get_json()["score"] == \
        pytest.approx(before["score"])
    assert "tr_unpaid_fees_latest" in lowering(served_client, headers)
    record = record_of(served_client, headers, costly)
    assert record["counts"] is True and record["reason"] is None
    assert record["under_dispute"] is True
    assert (record["label_zh"], record["label_en"]) == UNDER_DISPUTE
    assert record["dispute_state"] == "open" and record["dispute"]["dispute_id"] == \
        dispute["dispute_id"]
    assert record["can_dispute"] is False
    # ... and labelled on the explanation too, in the page's language
    english = served_client.get("/v1/me/explanation", headers={**headers,
                                                               "Accept-Language": "en"})
    shown = english.get_json()
    assert [(d["record_id"], d["label"], d["counts"]) for d in shown["under_dispute"]] == \
        [(costly, "under dispute", True)]
    fees = next(r for r in shown["reasons"] if r["feature"] == "tr_unpaid_fees_latest")
    assert fees["under_dispute"] is True
    table = RECORD_TABLES[Source.TRANSIT]
    with engine.connect() as connection:
        stored = connection.execute(select(table.c.dispute_opened_on, table.c.dispute_due_on)
                                    .where(table.c.record_id == costly)).one()
        assert tuple(stored) == (DEMO_TODAY, DEMO_TODAY + dt.timedelta(days=20))
        logged = connection.execute(select(audit_entries.c.actor, audit_entries.c.detail).where(
            audit_entries.c.person_key == key, audit_entries.c.action == "dispute_opened")).one()
    assert logged.actor == "citizen" and logged.detail["dispute_id"] == dispute["dispute_id"]
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert log[0]["action"] == "dispute_opened" and log[0]["actor"] == "citizen"

    listed = served_client.get("/v1/me/disputes", headers=headers).get_json()
    assert [d["dispute_id"] for d in listed] == [dispute["dispute_id"]]
    one = served_client.get(f"/v1/me/disputes/{dispute['dispute_id']}", headers=headers)
    assert one.status_code == 200 and one.get_json() == dispute


def test_the_due_date_is_configurable(served_apps, auth, people_keys):
    served_apps()
    app = served_apps(dispute_due_days=7)
    client = app.test_client()
    headers = auth.citizen(people_keys[0])
    add_court_listing(app, people_keys[0])
    dispute = open_listing_dispute(client, headers).get_json()["dispute"]
    assert dispute["due_on"] == (DEMO_TODAY + dt.timedelta(days=7)).isoformat()


def test_a_one_line_dispute_does_not_unlock_a_perk(served_app, served_client, auth,
                                                   people_keys):
    headers = auth.citizen(people_keys[0])
    add_court_listing(served_app, people_keys[0])

    def bike() -> dict:
        page = served_client.get("/v1/me/perks", headers=headers).get_json()
        return next(p for p in page["perks"] if p["perk_id"] == "bike-deposit-free")

    assert bike()["conditions"][0]["met"] is False and bike()["status"] == "no"
    assert open_listing_dispute(served_client, headers).status_code == 201
    assert bike()["conditions"][0]["met"] is False and bike()["status"] == "no"


def _make_overdue(app, key: str, record_id: str, source: Source) -> None:
    """Move a dispute's due date (the dispute's and the record's) to before today and
    re-score, as the daily re-score would after the due date passed."""
    table = RECORD_TABLES[source]
    past = DEMO_TODAY - dt.timedelta(days=1)
    with app.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(update(disputes).where(disputes.c.record_id == record_id)
                           .values(due_on=past))
        connection.execute(update(table).where(table.c.record_id == record_id).values(
            dispute_opened_on=past - dt.timedelta(days=20), dispute_due_on=past))
    rescore(app, key)


def test_an_unanswered_dispute_stops_counting_after_its_due_date_until_answered(
        served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    add_court_listing(served_app, key)
    counted = latest(engine, key)["score"]
    dispute_id = open_listing_dispute(served_client, headers).get_json()["dispute"]["dispute_id"]
    _make_overdue(served_app, key, LISTING, Source.COURT)

    record = record_of(served_client, headers, LISTING)
    assert record["counts"] is False and record["reason_en"] == REASON_TEXT[DISPUTE_OVERDUE][1]
    assert record["under_dispute"] is True
    overdue = latest(engine, key)
    assert overdue["reasons"]["features"]["ct_active_listings"] == 0
    assert overdue["score"] >= counted  # monotone: a listing never raises a score
    shown = served_client.get(f"/v1/me/disputes/{dispute_id}", headers=headers).get_json()
    assert shown["overdue"] is True
    # answered late (rejected): it counts again, with the reason shown
    result = resolve_dispute(engine, served_app, dispute_id, "rejected", "法院确认属实",
                             by="admin:ops")
    assert result["score"]["score"] == pytest.approx(counted)
    record = record_of(served_client, headers, LISTING)
    assert record["counts"] is True and record["under_dispute"] is False
    assert record["dispute"]["resolution"] == "法院确认属实"


def test_a_citizen_can_withdraw_a_dispute(served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    add_court_listing(served_app, key)
    counted = latest(engine, key)["score"]
    dispute_id = open_listing_dispute(served_client, headers).get_json()["dispute"]["dispute_id"]
    _make_overdue(served_app, key, LISTING, Source.COURT)  # it had stopped counting
    other = auth.citizen(people_keys[1])
    assert served_client.delete(f"/v1/me/disputes/{dispute_id}", headers=other).status_code == 404

    withdrawn = served_client.delete(f"/v1/me/disputes/{dispute_id}", headers=headers)

    assert withdrawn.status_code == 200 and withdrawn.get_json()["state"] == "withdrawn"
    record = record_of(served_client, headers, LISTING)
    assert record["counts"] is True and record["under_dispute"] is False
    assert record["dispute_state"] == "withdrawn" and record["can_dispute"] is True
    assert latest(engine, key)["score"] == pytest.approx(counted)
    again = served_client.delete(f"/v1/me/disputes/{dispute_id}", headers=headers)
    assert again.status_code == 409
    with pytest.raises(ApiError) as error:
        resolve_dispute(engine, served_app, dispute_id, "upheld", "", by="admin:ops")
    assert error.value.status == 409
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert log[0]["action"] == "dispute_withdrawn"


VOLUNTEERING = "e0" * 16


def test_disputing_a_record_that_raises_the_score_needs_a_confirmation(served_app,
                                                                      served_client, auth,
                                                                      people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    add_record(served_app, key, Source.POSITIVE, VOLUNTEERING, event_no="V-2025-8",
               event_on=dt.date(2025, 11, 1), kind="volunteering", hours=8.0)
    body = {"source": "positive", "record_id": VOLUNTEERING, "statement": "not sure"}

    warned = served_client.post("/v1/me/disputes", headers=headers, json=body)

    assert warned.status_code == 422, warned.get_json()
    assert "points" in warned.get_json()["errors"]["confirm"][0]
    assert served_client.get("/v1/me/disputes", headers=headers).get_json() == []
    confirmed = served_client.post("/v1/me/disputes", headers=headers,
                                   json={**body, "confirm": True})
    assert confirmed.status_code == 201
    # a record that lowers the score needs no confirmation (tested above): only this one


def test_a_second_open_dispute_on_the_same_record_is_a_conflict(served_app, served_client, auth,
                                                                 people_keys):
    headers = auth.citizen(people_keys[0])
    add_court_listing(served_app, people_keys[0])
    assert open_listing_dispute(served_client, headers).status_code == 201
    again = open_listing_dispute(served_client, headers)
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"
    assert len(served_client.get("/v1/me/disputes", headers=headers).get_json()) == 1


def test_someone_elses_record_or_dispute_is_not_found(served_app, served_client, auth,
                                                       people_keys):
    owner, other = auth.citizen(people_keys[0]), auth.citizen(people_keys[1])
    add_court_listing(served_app, people_keys[0])
    # another citizen cannot dispute the record ...
    stolen = open_listing_dispute(served_client, other)
    assert stolen.status_code == 404 and "court" not in stolen.get_json()["message"]
    assert record_of(served_client, owner, LISTING)["counts"] is True
    # ... nor read the owner's dispute: 404, as for an id that does not exist
    dispute_id = open_listing_dispute(served_client, owner).get_json()["dispute"]["dispute_id"]
    theirs = served_client.get(f"/v1/me/disputes/{dispute_id}", headers=other)
    missing = served_client.get(f"/v1/me/disputes/{'0' * 32}", headers=other)
    malformed = served_client.get("/v1/me/disputes/x%00y", headers=other)
    assert theirs.status_code == missing.status_code == malformed.status_code == 404
    assert theirs.get_json() == missing.get_json()
    assert served_client.get("/v1/me/disputes", headers=other).get_json() == []
    assert record_of(served_client, other, LISTING) is None


def test_a_record_that_does_not_count_cannot_be_disputed(served_app, served_client, auth,
                                                          people_keys):
    headers = auth.citizen(people_keys[0])
    add_minor_penalty(served_app, people_keys[0])
    response = served_client.post("/v1/me/disputes", headers=headers, json={
        "source": "penalty", "record_id": MINOR_PENALTY, "statement": "wrong"})
    assert response.status_code == 422
    assert "record_id" in response.get_json()["errors"]


@pytest.mark.parametrize(("body", "field"), [
    ({"record_id": LISTING, "statement": "x"}, "source"),
    ({"source": "tax", "record_id": LISTING, "statement": "x"}, "source"),
    ({"source": "court", "statement": "x"}, "record_id"),
    ({"source": "court", "record_id": "", "statement": "x"}, "record_id"),
    ({"source": "court", "record_id": "r" * 33, "statement": "x"}, "record_id"),
    ({"source": "court", "record_id": LISTING}, "statement"),
    ({"source": "court", "record_id": LISTING, "statement": ""}, "statement"),
    ({"source": "court", "record_id": LISTING, "statement": "   "}, "statement"),
    ({"source": "court", "record_id": LISTING, "statement": "x" * 2001}, "statement"),
    ({"source": "court", "record_id": LISTING, "statement": "a\x00b"}, "statement"),
    ({"source": "court", "record_id": "a b", "statement": "x"}, "record_id"),
    ({"source": "court", "record_id": "a\x00", "statement": "x"}, "record_id"),
    ({"source": "court", "record_id": LISTING, "statement": "x", "person_key": "k"},
     "person_key"),
])
def test_bad_dispute_input_names_the_field(served_app, served_client, auth, people_keys, body,
                                           field):
    headers = auth.citizen(people_keys[0])
    add_court_listing(served_app, people_keys[0])
    response = served_client.post("/v1/me/disputes", headers=headers, json=body)
    envelope = response.get_json()
    assert response.status_code == 422
    assert set(envelope) == {"code", "status", "message", "errors"}
    assert envelope["code"] == "invalid_input" and envelope["status"] == 422
    assert field in envelope["errors"]
    assert served_client.get("/v1/me/disputes", headers=headers).get_json() == []


def test_an_anonymous_bad_request_is_unauthenticated_not_invalid(served_client):
    response = served_client.post("/v1/me/disputes", json={"source": "nope"})
    assert response.status_code == 401 and response.get_json()["code"] == "unauthenticated"


def _dispute_costly_month(app, client, headers, key):
    """Dispute a costly month; returns its id, the dispute's, the score with the month and the
    score without it (what an upheld dispute gives)."""
    record_id = spoil_latest_transit_month(app, key)
    engine = app.extensions["osmanthus.engine"]
    counted = latest(engine, key)["score"]
    table = RECORD_TABLES[Source.TRANSIT]
    with engine.begin() as connection:
        row = connection.execute(select(table).where(table.c.record_id == record_id)).one()
        connection.execute(table.delete().where(table.c.record_id == record_id))
    without = rescore(app, key)["score"]
    with engine.begin() as connection:
        connection.execute(table.insert().values(**row._mapping))
    rescore(app, key)
    body = open_listing_dispute(client, headers, record_id, "transit").get_json()
    return record_id, body["dispute"]["dispute_id"], counted, without


def _dispute_court_listing(app, client, headers, key):
    add_court_listing(app, key)
    body = open_listing_dispute(client, headers).get_json()
    frozen = latest(app.extensions["osmanthus.engine"], key)["score"]  # exact
    assert body["score"]["score"] == math.floor(frozen)
    return body["dispute"]["dispute_id"], frozen


def test_a_rejected_dispute_counts_again_and_shows_the_reason(served_app, served_client, auth,
                                                              people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    record_id, dispute_id, counted, without = _dispute_costly_month(served_app,
                                                                     served_client, headers, key)
    served_client.get("/v1/me/score", headers=headers)  # cache the page

    result = resolve_dispute(engine, served_app, dispute_id, "rejected",
                             "法院确认该案件属实 / the court confirmed the case", by="admin:ops")

    assert result["dispute"]["state"] == "rejected"
    assert result["score"]["score"] == pytest.approx(counted) != pytest.approx(without)
    assert served_client.get("/v1/me/score", headers=headers).get_json()["score"] == \
        math.floor(counted)
    record = record_of(served_client, headers, record_id)
    assert record["counts"] is True and record["dispute_state"] == "rejected"
    assert "court confirmed" in record["dispute"]["resolution"]
    shown = served_client.get(f"/v1/me/disputes/{dispute_id}", headers=headers).get_json()
    assert shown["state"] == "rejected" and "court confirmed" in shown["resolution"]
    assert shown["resolved_at"] is not None
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert log[0]["action"] == "dispute_resolved" and log[0]["actor"] == "admin:ops"
    # rejected, it may be disputed again (with new evidence)
    assert open_listing_dispute(served_client, headers, record_id, "transit").status_code == 201


def test_an_upheld_dispute_removes_the_record(served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    record_id, dispute_id, counted, without = _dispute_costly_month(served_app, served_client,
                                                                    headers, key)
    result = resolve_dispute(engine, served_app, dispute_id, "upheld", "", by="admin:ops")
    assert result["dispute"]["state"] == "upheld"
    assert result["score"]["score"] == pytest.approx(without) != pytest.approx(counted)
    assert record_of(served_client, headers, record_id) is None
    with pytest.raises(ApiError) as error:
        resolve_dispute(engine, served_app, dispute_id, "rejected", "late", by="admin:ops")
    assert error.value.status == 409


def test_an_upheld_dispute_can_correct_the_record(served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    dispute_id, _ = _dispute_court_listing(served_app, served_client, headers, key)
    resolve_dispute(engine, served_app, dispute_id, "upheld", "paid in full in 2025",
                    by="admin:ops", correction={"status": "fulfilled", "closed_on": "2025-07-01"})
    record = record_of(served_client, headers, LISTING)
    assert record["details"]["status"] == "fulfilled" and record["counts"] is False
    assert record["reason_en"] == REASON_TEXT[FULFILLED][1]
    assert record["dispute_state"] == "upheld"
    assert latest(engine, key)["reasons"]["features"]["ct_active_listings"] == 0


@pytest.mark.parametrize(("outcome", "note", "correction", "field"), [
    ("maybe", "x", None, "outcome"),
    ("rejected", "  ", None, "note"),
    ("rejected", "no", {"status": "fulfilled"}, "correction"),
    ("upheld", "", {"status": "gone"}, "correction.status"),
    ("upheld", "", {"closed_on": "not a date"}, "correction.closed_on"),
    ("upheld", "", {"person_key": "someone-else"}, "correction.person_key"),
    ("upheld", "", {"amount": None}, "correction.amount"),
    # values that would be committed and then fail every later re-score of the city
    ("upheld", "", {"amount": "nan"}, "correction.amount"),
    ("upheld", "", {"amount": "inf"}, "correction.amount"),
    ("upheld", "", {"amount": 1e308}, "correction.amount"),
    ("upheld", "", {"amount": "110101199003077777x"}, "correction.amount"),  # never echoed
    ("upheld", "", {"filed_on": "0001-01-01"}, "correction.filed_on"),
])
def test_a_bad_resolution_changes_nothing(served_app, served_client, auth, people_keys, outcome,
                                          note, correction, field):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    dispute_id, scored = _dispute_court_listing(served_app, served_client, headers, key)
    with pytest.raises(ApiError) as error:
        resolve_dispute(engine, served_app, dispute_id, outcome, note, by="admin:ops",
                        correction=correction)
    assert error.value.status == 422 and field in error.value.errors
    assert "110101199003077777" not in str(error.value.errors)
    with engine.connect() as connection:
        assert connection.execute(select(disputes.c.state)).scalar_one() == "open"
    assert latest(engine, key)["score"] == pytest.approx(scored)
    assert record_of(served_client, headers, LISTING)["details"]["status"] == "active"


def test_an_unknown_dispute_cannot_be_resolved(served_app):
    engine = served_app.extensions["osmanthus.engine"]
    with pytest.raises(ApiError) as error:
        resolve_dispute(engine, served_app, "0" * 32, "upheld", "", by="admin:ops")
    assert error.value.status == 404


def test_an_open_dispute_past_its_due_date_is_overdue(served_app, served_client, auth,
                                                      people_keys):
    headers = auth.citizen(people_keys[0])
    add_court_listing(served_app, people_keys[0])
    dispute_id = open_listing_dispute(served_client, headers).get_json()["dispute"]["dispute_id"]
    with served_app.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(update(disputes).values(due_on=DEMO_TODAY - dt.timedelta(days=1)))
    shown = served_client.get(f"/v1/me/disputes/{dispute_id}", headers=headers).get_json()
    assert shown["overdue"] is True
