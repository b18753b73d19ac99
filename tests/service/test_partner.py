"""Partners' eligibility: exactly yes / no / pending under a live consent, 403 otherwise, and
every decision in the audit log."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import event, insert, select, update

from service.base import clock
from service.rights import audit
from service.rights import auth as auth_module
from service.rights.auth import issue_token
from service.scoring.score import latest
from service.store.tables import audit_entries, consents, partners, people, reviews, scores
from tests.service.conftest import Auth, audit_log_verifies

ANSWER_KEYS = {"eligible", "decision_id", "expires_at"}
ENVELOPE_KEYS = {"code", "status", "message", "errors"}
BIKES, LIBRARY = "bike-deposit-free", "library-deposit-free"
EXTRA_BIKE_PERK = "bike-long-rental"  # a second city-bikes perk, to consent to one and not both


@pytest.fixture
def bureau(served_app, tmp_path):
    """The served app's database and model, with one more city-bikes perk configured."""
    from service.app import create_app
    from service.rights.perks import DEFAULT_PERKS_FILE

    data = json.loads(DEFAULT_PERKS_FILE.read_text(encoding="utf-8"))
    data["perks"].append({"perk_id": EXTRA_BIKE_PERK, "policy_version": 3,
                          "partner_id": "city-bikes", "name_zh": "长租", "name_en": "Long rental",
                          "min_score": 500, "conditions": []})
    perks_file = tmp_path / "perks.json"
    perks_file.write_text(json.dumps(data), encoding="utf-8")
    app = create_app(served_app.extensions["osmanthus.config"].with_(perks_file=perks_file))
    yield app
    app.extensions["osmanthus.engine"].dispose()


@pytest.fixture
def client(bureau):
    return bureau.test_client()


@pytest.fixture
def bikes(bureau) -> dict[str, str]:
    return Auth(bureau).partner("city-bikes")


def grant(app, person_key: str, partner: str = "city-bikes", perks=(BIKES,), *,
          days: float = 30, revoked: bool = False, token_minutes: int = 60) -> str:
    """A consents row as /v1/me would store it, and its token in the shared format."""
    consent_id = uuid.uuid4().hex
    now = clock.now(app)  # the service's clock (frozen at the world's today)
    with app.extensions["osmanthus.engine"].begin() as connection:
        if connection.execute(select(partners.c.partner_id)
                              .where(partners.c.partner_id == partner)).first() is None:
            connection.execute(insert(partners).values(
                partner_id=partner, name=partner, api_key_hash=uuid.uuid4().hex, created_at=now))
        connection.execute(insert(consents).values(
            consent_id=consent_id, person_key=person_key, partner_id=partner, perks=list(perks),
            granted_at=now - dt.timedelta(days=1), expires_at=now + dt.timedelta(days=days),
            revoked_at=now if revoked else None))
    return issue_token(app.extensions["osmanthus.config"], "consent", consent_id,
                       minutes=token_minutes, claims={"partner": partner, "perks": list(perks)})


def set_latest(app, person_key: str, score: float, **features: float) -> None:
    """Pin a person's latest stored score and feature values, to test the rule exactly."""
    engine = app.extensions["osmanthus.engine"]
    row = latest(engine, person_key)
    reasons = dict(row["reasons"])
    reasons["features"] = {**reasons["features"], "ct_active_listings": 0.0, **features}
    with engine.begin() as connection:
        connection.execute(update(scores).where(scores.c.id == row["id"])
                           .values(score=score, reasons=reasons))


def set_review(app, person_key: str, state: str, perk_id: str = BIKES,
               outcome: str | None = None) -> None:
    """A human-review request of one perk in `state` (`none`: no request)."""
    if state == "none":
        return
    now = clock.now(app)
    with app.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(insert(reviews).values(
            review_id=uuid.uuid4().hex, person_key=person_key, perk_id=perk_id, reason="r",
            requested_at=now, state=state, outcome=outcome,
            decided_at=now if state == "decided" else None))


def audit_rows(app) -> list[dict]:
    with app.extensions["osmanthus.engine"].connect() as connection:
        return [dict(r._mapping) for r in
                connection.execute(select(audit_entries).order_by(audit_entries.c.id))]


def ask(client, headers, token: str, perk: str = BIKES):
    return client.post("/v1/partner/eligibility", headers=headers,
                       json={"consent_token": token, "perk_id": perk})


# --- answers ------------------------------------------------------------------------------
def test_the_answer_has_exactly_three_fields_and_is_audited(bureau, client, bikes, people_keys):
    person = people_keys[0]
    before = clock.now(bureau)
    response = ask(client, bikes, grant(bureau, person))
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == ANSWER_KEYS and body["eligible"] in ("yes", "no")
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert before + dt.timedelta(hours=23, minutes=59) < expires
    assert expires < clock.now(bureau) + dt.timedelta(hours=24, minutes=1)
    assert person not in response.get_data(as_text=True)

    row = audit_rows(bureau)[-1]
    assert row["actor"] == "partner:city-bikes" and row["person_key"] == person
    assert row["action"] == "eligibility"
    assert {k: row["detail"][k] for k in ("perk", "policy_version", "answer", "decision_id")} == {
        "perk": BIKES, "policy_version": 1, "answer": body["eligible"],
        "decision_id": body["decision_id"]}
    assert audit_log_verifies(bureau.extensions["osmanthus.engine"])


@pytest.mark.parametrize(("score", "features", "review", "expected"), [
    (700.0, {}, "none", "yes"),
    (600.0, {}, "none", "yes"),  # the minimum itself qualifies
    (599.9, {}, "none", "no"),
    (700.0, {"ct_active_listings": 1.0}, "none", "no"),  # the perk's extra condition
    (700.0, {}, "pending", "pending"),  # PIPL Art. 24: under human review
    (300.0, {}, "pending", "pending"),
    (700.0, {}, "decided", "yes"),
    (300.0, {}, "decided:eligible", "yes"),  # the reviewer's outcome replaces the score's
    (700.0, {}, "decided:not_eligible", "no"),
    (700.0, {}, "pending@library", "yes"),  # a review of another perk changes nothing here
    (300.0, {}, "pending@library", "no"),
], ids=["above", "at-minimum", "below", "court-listing", "review-high", "review-low", "reviewed",
        "reviewed-yes", "reviewed-no", "other-perk-high", "other-perk-low"])
def test_yes_no_pending(bureau, client, bikes, people_keys, score, features, review, expected):
    person = people_keys[1]
    set_latest(bureau, person, score, **features)
    review, _, perk = review.partition("@")
    state, _, outcome = review.partition(":")
    set_review(bureau, person, state, LIBRARY if perk == "library" else BIKES, outcome or None)
    response = ask(client, bikes, grant(bureau, person))
    assert response.status_code == 200 and response.json["eligible"] == expected
    assert audit_rows(bureau)[-1]["detail"]["answer"] == expected


def test_a_decision_never_outlives_its_consent(bureau, client, bikes, people_keys):
    response = ask(client, bikes, grant(bureau, people_keys[2], days=0.25))
    expires = dt.datetime.fromisoformat(response.json["expires_at"])
    assert expires < clock.now(bureau) + dt.timedelta(hours=6, minutes=1)


def test_someone_not_yet_scored_is_scored_first(bureau, client, bikes):
    newcomer = "n" * 64
    with bureau.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(insert(people).values(person_key=newcomer,
                                                 first_seen=dt.datetime.now(dt.UTC)))
    response = ask(client, bikes, grant(bureau, newcomer, perks=(EXTRA_BIKE_PERK,)),
                   EXTRA_BIKE_PERK)
    assert response.status_code == 200, response.json
    stored = latest(bureau.extensions["osmanthus.engine"], newcomer)
    assert stored is not None  # scored as a bureau would, then decided
    # an empty file: whatever its score, the thin-file rule grants no perk (README, Decisions)
    assert stored["reasons"]["features"]["sources_reporting"] == 0
    assert response.json["eligible"] == "no"


def test_without_a_model_an_unscored_person_gets_503_not_a_guess(bureau, client, bikes,
                                                                   monkeypatch):
    newcomer = "m" * 64
    with bureau.extensions["osmanthus.engine"].begin() as connection:
        connection.execute(insert(people).values(person_key=newcomer,
                                                 first_seen=dt.datetime.now(dt.UTC)))
    monkeypatch.setattr(bureau.extensions["osmanthus.model"], "scorecard", None)
    response = ask(client, bikes, grant(bureau, newcomer))
    assert response.status_code == 503 and response.json["code"] == "not_scored"


def test_no_answer_without_its_audit_row(bureau, client, bikes, people_keys, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("audit storage failed")

    monkeypatch.setattr(audit, "append_committed", broken)
    response = ask(client, bikes, grant(bureau, people_keys[3]))
    assert response.status_code == 500 and "eligible" not in response.json
    assert set(response.json) == ENVELOPE_KEYS


# --- refusals -----------------------------------------------------------------------------
def _token(app, person, case: str) -> tuple[str, str]:
    """(token, perk) for each way of asking without a valid consent for that perk."""
    config = app.extensions["osmanthus.config"]
    if case == "garbage":
        return "not-a-token", BIKES
    if case == "wrong-signature":
        from service.base.config import new_consent_key

        return issue_token(config.with_(consent_key=new_consent_key()), "consent", uuid.uuid4().hex,
                           claims={"partner": "city-bikes", "perks": [BIKES]}), BIKES
    if case == "expired-token":
        token = issue_token(config, "consent", uuid.uuid4().hex, minutes=5,
                            now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                            claims={"partner": "city-bikes", "perks": [BIKES]})
        return token, BIKES
    if case == "citizen-token":
        return issue_token(config, "citizen", person), BIKES
    if case == "no-such-consent":
        return issue_token(config, "consent", uuid.uuid4().hex,
                           claims={"partner": "city-bikes", "perks": [BIKES]}), BIKES
    if case == "revoked":
        return grant(app, person, revoked=True), BIKES
    if case == "expired-consent":
        return grant(app, person, days=-1), BIKES
    if case == "another-partners-consent":
        return grant(app, person, "city-library", (LIBRARY,)), LIBRARY
    if case == "another-partners-consent-for-my-perk":
        return grant(app, person, "city-library", (BIKES,)), BIKES
    if case == "perk-not-in-consent":
        return grant(app, person, perks=(BIKES,)), EXTRA_BIKE_PERK
    if case == "another-partners-perk":
        return grant(app, person, perks=(BIKES, LIBRARY)), LIBRARY
    if case == "unknown-perk":
        return grant(app, person), "free-lunch"
    raise AssertionError(case)


REFUSALS = {
    "garbage": "consent_invalid", "wrong-signature": "consent_invalid",
    "expired-token": "consent_invalid", "citizen-token": "consent_invalid",
    "no-such-consent": "consent_not_found", "revoked": "consent_revoked",
    "expired-consent": "consent_expired",
    "another-partners-consent": "not_your_perk",
    "another-partners-consent-for-my-perk": "consent_other_partner",
    "perk-not-in-consent": "perk_not_consented", "another-partners-perk": "not_your_perk",
    "unknown-perk": "not_your_perk",
}
PERSON_KNOWN = {"revoked", "expired-consent", "another-partners-consent",
                "another-partners-consent-for-my-perk", "perk-not-in-consent",
                "another-partners-perk", "unknown-perk"}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_without_a_valid_consent_for_the_perk_the_answer_is_403(bureau, client, bikes,
                                                                  people_keys, case):
    person = people_keys[4]
    token, perk = _token(bureau, person, case)
    before = len(audit_rows(bureau))
    response = ask(client, bikes, token, perk)
    assert response.status_code == 403, response.json
    assert set(response.json) == ENVELOPE_KEYS
    assert response.json["code"] == REFUSALS[case] and response.json["status"] == 403
    assert person not in response.get_data(as_text=True)
    new = audit_rows(bureau)[before:]
    assert all(row["action"] == "eligibility_refused" for row in new)  # never a decision
    assert len(new) == (1 if case in PERSON_KNOWN else 0)  # the citizen sees the attempt
    if new:
        assert new[0]["person_key"] == person and new[0]["detail"]["refused"] == REFUSALS[case]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "osk_not-a-key"}], ids=["none", "wrong"])
def test_a_missing_or_wrong_api_key_is_401_before_the_body_is_read(client, bikes, headers):
    response = client.post("/v1/partner/eligibility", headers=headers, json={"bad": 1})
    assert response.status_code == 401 and response.json["code"] == "unauthenticated"


def test_a_known_key_is_trusted_for_its_seconds_then_asked_for_again(bureau, client, bikes,
                                                                   people_keys, monkeypatch):
    """A worker remembers a key it found for `api_key_cache_seconds`: a rotated key keeps
    working that long, and not a moment longer."""
    token = grant(bureau, people_keys[0])
    assert ask(client, bikes, token).status_code == 200
    Auth(bureau).partner("city-bikes")  # rotated: the old key's hash is gone from the store
    assert ask(client, bikes, token).status_code == 200
    later = auth_module._clock() + bureau.extensions["osmanthus.config"].api_key_cache_seconds
    monkeypatch.setattr(auth_module, "_clock", lambda: later + 0.001)
    assert ask(client, bikes, token).status_code == 401


def test_a_decision_checks_the_key_once_and_takes_one_connection(bureau, client, bikes,
                                                                 people_keys, monkeypatch):
    """The app-wide hook checks the key before the body; the blueprint's own hook must not do
    it again (it used to, with a second pooled connection on PostgreSQL). The same holds for a
    decision answered in front of Flask (`api.partner_front`): both check it with
    `auth.partner_of`."""
    token = grant(bureau, people_keys[0])
    assert ask(client, bikes, token).status_code == 200  # scored, key remembered
    calls, checkouts = [], []
    real = auth_module.partner_of
    monkeypatch.setattr(auth_module, "partner_of",
                        lambda *args: calls.append(args) or real(*args))
    engine = bureau.extensions["osmanthus.engine"]

    def count(*_args) -> None:
        checkouts.append(1)

    event.listen(engine, "checkout", count)
    try:
        for path in ("/v1/partner/eligibility", "/v1/partner/eligibility/"):  # front, Flask
            calls.clear(), checkouts.clear()
            assert client.post(path, headers=bikes, json={"consent_token": token,
                                                          "perk_id": BIKES}).status_code == 200
            assert len(calls) == 1, path
            if engine.dialect.name == "postgresql":  # SQLite takes a connection per step
                assert len(checkouts) == 1, path
    finally:
        event.remove(engine, "checkout", count)


def test_with_no_key_memory_a_rotated_key_is_refused_at_once(bureau, people_keys):
    from service.app import create_app

    app = create_app(bureau.extensions["osmanthus.config"].with_(api_key_cache_seconds=0))
    client, old = app.test_client(), Auth(app).partner("city-bikes")
    token = grant(app, people_keys[0])
    assert ask(client, old, token).status_code == 200
    new = Auth(app).partner("city-bikes")
    assert ask(client, old, token).status_code == 401
    assert ask(client, new, token).status_code == 200
    app.extensions["osmanthus.engine"].dispose()


def test_bad_input_is_a_422_with_field_messages(client, bikes):
    response = client.post("/v1/partner/eligibility", headers=bikes, json={"perk_id": BIKES,
                                                                           "score": 1})
    assert response.status_code == 422
    assert {"consent_token", "score"} <= set(response.json["errors"])


# --- batch --------------------------------------------------------------------------------
def test_a_batch_answers_good_items_and_reports_bad_ones_in_order(bureau, client, bikes,
                                                                  people_keys):
    high, low, pending = people_keys[5], people_keys[6], people_keys[7]
    set_latest(bureau, high, 720.0)
    set_latest(bureau, low, 420.0)
    set_review(bureau, pending, "pending")
    items = [
        {"consent_token": grant(bureau, high), "perk_id": BIKES},
        {"consent_token": "garbage", "perk_id": BIKES},
        {"consent_token": grant(bureau, low), "perk_id": BIKES},
        {"consent_token": grant(bureau, low, revoked=True), "perk_id": BIKES},
        {"consent_token": grant(bureau, pending), "perk_id": BIKES},
        {"consent_token": grant(bureau, high), "perk_id": LIBRARY},
    ]
    before = len(audit_rows(bureau))
    response = client.post("/v1/partner/eligibility/batch", headers=bikes,
                           json={"requests": items})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r.get("eligible") for r in results] == ["yes", None, "no", None, "pending", None]
    assert [r["error"]["code"] for r in results if "error" in r] == [
        "consent_invalid", "consent_revoked", "not_your_perk"]
    for result in results:
        assert set(result) in (ANSWER_KEYS, {"error"})
    new = audit_rows(bureau)[before:]
    decisions = [row for row in new if row["action"] == "eligibility"]
    assert [(row["person_key"], row["detail"]["answer"]) for row in decisions] == [
        (high, "yes"), (low, "no"), (pending, "pending")]
    assert {row["detail"]["decision_id"] for row in decisions} == {
        r["decision_id"] for r in results if "decision_id" in r}
    assert [row["detail"]["refused"] for row in new if row["action"] != "eligibility"] == [
        "consent_revoked", "not_your_perk"]
    assert audit_log_verifies(bureau.extensions["osmanthus.engine"])


def test_a_batch_over_real_scores_follows_the_perk_minimum(bureau, people_keys):
    library = Auth(bureau).partner("city-library")
    engine = bureau.extensions["osmanthus.engine"]
    items = [{"consent_token": grant(bureau, key, "city-library", (LIBRARY,)),
              "perk_id": LIBRARY} for key in people_keys]
    response = bureau.test_client().post("/v1/partner/eligibility/batch", headers=library,
                                         json={"requests": items})
    answers = [r["eligible"] for r in response.json["results"]]
    expected = ["yes" if latest(engine, key)["score"] >= 550 else "no" for key in people_keys]
    assert answers == expected and {"yes", "no"} == set(expected)
    assert audit_log_verifies(engine)


def test_a_batch_costs_the_same_round_trips_for_1_or_60_items(bureau, client, bikes,
                                                              people_keys):
    def statements(n: int) -> int:
        items = [{"consent_token": grant(bureau, people_keys[i % 40]), "perk_id": BIKES}
                 for i in range(n)]
        seen: list[str] = []
        engine = bureau.extensions["osmanthus.engine"]
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            response = client.post("/v1/partner/eligibility/batch", headers=bikes,
                                   json={"requests": items})
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert response.status_code == 200
        assert all("eligible" in r for r in response.json["results"])
        return len(seen)

    statements(1)  # the first request also looks the key up; later ones remember it
    assert statements(60) == statements(1) <= 8


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_must_hold_1_to_1000_items(client, bikes, count):
    items = [{"consent_token": "t", "perk_id": BIKES}] * count
    response = client.post("/v1/partner/eligibility/batch", headers=bikes,
                           json={"requests": items})
    assert response.status_code == 422 and "requests" in response.json["errors"]


# --- rate limit on the real endpoints -------------------------------------------------------
def test_partner_endpoints_share_one_limit_per_key_and_a_batch_counts_its_items(bureau,
                                                                                 people_keys):
    from service.app import create_app

    app = create_app(bureau.extensions["osmanthus.config"].with_(partner_rate_limit="4/minute"))
    try:
        client, auth = app.test_client(), Auth(app)
        bikes = auth.partner("city-bikes")
        token = grant(app, people_keys[8])
        assert ask(client, bikes, token).status_code == 200
        batch = {"requests": [{"consent_token": token, "perk_id": BIKES}] * 3}
        assert client.post("/v1/partner/eligibility/batch", headers=bikes,
                           json=batch).status_code == 200  # 1 + 3 = the whole allowance
        refused = ask(client, bikes, token)
        assert refused.status_code == 429 and set(refused.json) == ENVELOPE_KEYS
        assert refused.json["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        other = auth.partner("city-library")  # another key has its own allowance
        assert ask(client, other, grant(app, people_keys[8], "city-library", (LIBRARY,)),
                   LIBRARY).status_code == 200
    finally:
        app.extensions["osmanthus.engine"].dispose()
