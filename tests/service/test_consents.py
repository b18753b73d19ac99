"""Consents: grant a partner named perks until a date, list them, revoke them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from features.rules import add_months
from service.base import clock
from service.rights.auth import decode_token
from service.rights.consents import expiry_of
from service.store.tables import audit_entries, consents
from tests.service.conftest import DEMO_TODAY

BIKE = {"partner_id": "city-bikes", "perks": ["bike-deposit-free"]}


def until(days: int) -> str:
    """A date `days` after the served apps' today (their clock is frozen at DEMO_TODAY)."""
    return (DEMO_TODAY + dt.timedelta(days=days)).isoformat()


@pytest.fixture
def bikes(auth):
    """The bicycle company, registered (as an admin would) so that it can be granted consent."""
    return auth.partner("city-bikes")


def grant(client, headers, **changes):
    return client.post("/v1/me/consents", headers=headers,
                       json={**BIKE, "until": until(30), **changes})


def test_a_consent_yields_a_token_the_partner_side_can_check(served_app, served_client, auth,
                                                             people_keys, bikes):
    key = people_keys[0]
    response = grant(served_client, auth.citizen(key), until=until(90))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    consent = body["consent"]
    assert consent["state"] == "active" and consent["perks"] == ["bike-deposit-free"]
    assert consent["revoked_at"] is None
    expires = dt.datetime.fromisoformat(consent["expires_at"])
    assert expires == expiry_of(DEMO_TODAY + dt.timedelta(days=90))
    claims = decode_token(served_app.extensions["osmanthus.config"], body["token"], "consent")
    assert claims["sub"] == consent["consent_id"] and claims["partner"] == "city-bikes"
    assert claims["perks"] == ["bike-deposit-free"]
    # the token lasts as long as the consent: its lifetime (token times are the wall clock's,
    # never the service clock's, so that a frozen clock never makes a token immortal)
    granted = dt.datetime.fromisoformat(consent["granted_at"])
    assert abs((claims["exp"] - claims["iat"]) - (expires - granted).total_seconds()) < 120
    engine = served_app.extensions["osmanthus.engine"]
    with engine.connect() as connection:
        row = connection.execute(select(consents)).one()
        logged = connection.execute(select(audit_entries.c.actor, audit_entries.c.detail).where(
            audit_entries.c.action == "consent_granted")).one()
    assert row.person_key == key and row.partner_id == "city-bikes"
    assert logged.actor == "citizen" and logged.detail["consent_id"] == consent["consent_id"]
    assert key not in response.get_data(as_text=True)


def test_consents_are_listed_active_expired_and_revoked(served_app, served_client, auth,
                                                        people_keys, bikes):
    headers = auth.citizen(people_keys[0])
    ids = [grant(served_client, headers).get_json()["consent"]["consent_id"] for _ in range(3)]
    with served_app.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(update(consents).where(consents.c.consent_id == ids[1]).values(
            expires_at=clock.now(served_app) - dt.timedelta(minutes=1)))
    assert served_client.delete(f"/v1/me/consents/{ids[2]}", headers=headers).status_code == 200
    listed = {c["consent_id"]: c["state"]
              for c in served_client.get("/v1/me/consents", headers=headers).get_json()}
    assert listed == {ids[0]: "active", ids[1]: "expired", ids[2]: "revoked"}


def test_revoking_is_at_once_and_only_once(served_app, served_client, auth, people_keys, bikes):
    headers = auth.citizen(people_keys[0])
    consent_id = grant(served_client, headers).get_json()["consent"]["consent_id"]
    first = served_client.delete(f"/v1/me/consents/{consent_id}", headers=headers)
    assert first.status_code == 200 and first.get_json()["state"] == "revoked"
    second = served_client.delete(f"/v1/me/consents/{consent_id}", headers=headers)
    assert second.status_code == 200 and second.get_json() == first.get_json()
    with served_app.extensions["osmanthus.engine"].connect() as connection:
        row = connection.execute(select(consents.c.revoked_at)).one()
        revocations = connection.execute(select(audit_entries.c.actor).where(
            audit_entries.c.action == "consent_revoked")).scalars().all()
    assert row.revoked_at is not None and revocations == ["citizen"]
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert [e["action"] for e in log] == ["consent_revoked", "consent_granted"]


def test_another_citizen_can_neither_see_nor_revoke_a_consent(served_client, auth, people_keys,
                                                              bikes):
    owner, other = auth.citizen(people_keys[0]), auth.citizen(people_keys[1])
    consent_id = grant(served_client, owner).get_json()["consent"]["consent_id"]
    theirs = served_client.delete(f"/v1/me/consents/{consent_id}", headers=other)
    missing = served_client.delete(f"/v1/me/consents/{'0' * 32}", headers=other)
    malformed = served_client.delete("/v1/me/consents/%00", headers=other)
    assert theirs.status_code == missing.status_code == malformed.status_code == 404
    assert theirs.get_json() == missing.get_json()
    assert served_client.get("/v1/me/consents", headers=other).get_json() == []
    assert served_client.get("/v1/me/consents", headers=owner).get_json()[0]["state"] == "active"


def test_a_consent_may_last_a_year_but_not_a_day_more(served_client, auth, people_keys, bikes):
    headers = auth.citizen(people_keys[0])
    year = add_months(DEMO_TODAY, 12)
    assert grant(served_client, headers, until=year.isoformat()).status_code == 201
    longer = grant(served_client, headers, until=(year + dt.timedelta(days=1)).isoformat())
    assert longer.status_code == 422 and "until" in longer.get_json()["errors"]


@pytest.mark.parametrize(("changes", "field"), [
    ({"partner_id": "nobody"}, "partner_id"),
    # a partner of the city that has not been registered yet
    ({"partner_id": "city-library", "perks": ["library-deposit-free"]}, "partner_id"),
    ({"partner_id": ""}, "partner_id"),
    ({"partner_id": None}, "partner_id"),
    ({"partner_id": "city\x00bikes"}, "partner_id"),
    ({"perks": ["bike\x00"]}, "perks"),
    ({"perks": ["no-such-perk"]}, "perks"),
    ({"perks": ["library-deposit-free"]}, "perks"),  # another partner's perk
    ({"perks": ["bike-deposit-free", "hospital-pay-later"]}, "perks"),
    ({"perks": []}, "perks"),
    ({"perks": "bike-deposit-free"}, "perks"),
    ({"until": until(0)}, "until"),
    ({"until": until(-3)}, "until"),
    ({"until": until(400)}, "until"),
    ({"until": "next week"}, "until"),
    ({"until": None}, "until"),
    ({"person_key": "someone"}, "person_key"),
])
def test_bad_consent_input_names_the_field(served_app, served_client, auth, people_keys, bikes,
                                           changes, field):
    headers = auth.citizen(people_keys[0])
    response = grant(served_client, headers, **changes)
    envelope = response.get_json()
    assert response.status_code == 422, envelope
    assert set(envelope) == {"code", "status", "message", "errors"}
    assert envelope["code"] == "invalid_input" and field in envelope["errors"]
    assert served_client.get("/v1/me/consents", headers=headers).get_json() == []


@pytest.mark.parametrize("missing", ["partner_id", "perks", "until"])
def test_a_missing_consent_field_is_named(served_client, auth, people_keys, bikes, missing):
    body = {**BIKE, "until": until(30)}
    del body[missing]
    response = served_client.post("/v1/me/consents", headers=auth.citizen(people_keys[0]),
                                  json=body)
    assert response.status_code == 422 and missing in response.get_json()["errors"]


def test_the_token_comes_with_its_qr_code_drawn_by_the_server(served_client, auth, people_keys,
                                                              bikes):
    """The page shows the server's SVG (no QR encoder in the page): a QR symbol of a valid
    size plus the 4-module quiet zone on a light background, and the code of this token."""
    import xml.etree.ElementTree as ET

    import segno

    first = grant(served_client, auth.citizen(people_keys[0])).get_json()
    second = grant(served_client, auth.citizen(people_keys[1])).get_json()
    svg = ET.fromstring(first["qr_svg"])
    assert svg.tag.endswith("svg")
    width = int(svg.get("viewBox").split()[2])
    assert (width - 8 - 17) % 4 == 0 and 21 <= width - 8 <= 177  # QR versions 1 to 40
    assert width - 8 == segno.make(first["token"], error="m", boost_error=False).symbol_size(border=0)[0]
    assert "#fff" in first["qr_svg"]  # a light quiet zone, whatever the page's colours
    assert first["qr_svg"] != second["qr_svg"]  # each token its own code


def test_a_grant_sent_twice_with_its_key_is_one_consent(served_app, served_client, auth,
                                                        people_keys, bikes):
    headers = auth.citizen(people_keys[0])
    first = grant(served_client, headers, idempotency_key="grant-0001-abc")
    twice = grant(served_client, headers, idempotency_key="grant-0001-abc")
    assert first.status_code == twice.status_code == 201
    assert first.get_json()["consent"]["consent_id"] == twice.get_json()["consent"]["consent_id"]
    claims = decode_token(served_app.extensions["osmanthus.config"], twice.get_json()["token"],
                          "consent")
    assert claims["sub"] == first.get_json()["consent"]["consent_id"]
    listed = served_client.get("/v1/me/consents", headers=headers).get_json()
    assert len(listed) == 1
    with served_app.extensions["osmanthus.engine"].connect() as connection:
        granted = connection.execute(select(audit_entries.c.id).where(
            audit_entries.c.action == "consent_granted")).all()
    assert len(granted) == 1
    # another grant (a new key, or none) is another consent; the key is the citizen's own
    assert grant(served_client, headers, idempotency_key="grant-0002-abc").status_code == 201
    other = auth.citizen(people_keys[1])
    assert grant(served_client, other, idempotency_key="grant-0001-abc").get_json()[
        "consent"]["consent_id"] != first.get_json()["consent"]["consent_id"]
    # the same key for a different grant is a conflict, not a silent answer
    changed = grant(served_client, headers, idempotency_key="grant-0001-abc",
                    perks=["bike-deposit-free", "bike-long-rental"])
    assert changed.status_code in (409, 422)
    short = grant(served_client, headers, idempotency_key="k")
    assert short.status_code == 422 and "idempotency_key" in short.get_json()["errors"]
