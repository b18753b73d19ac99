"""Who may call what: a role × operation matrix over every operation in /openapi.json.

The operations are read from the served spec, so a new endpoint without a row here fails
`test_every_operation_in_the_spec_has_a_row`. Each role's column runs against a fresh served
app holding one scene: a citizen (the owner) with a consent for city-bikes' perk, an open
dispute and a second counting record; another citizen who asked for human review; a feed with
a quarantined row. Every error is the one envelope; a partner's answer is exactly
`{eligible, decision_id, expires_at}`.

A citizen token on admin routes is the `citizen` column of the admin rows; an admin token on a
citizen's routes is the `admin` column of the /v1/me rows.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from features.records import Source
from service.rights.auth import issue_token
from tests.service.conftest import DEMO_TODAY, Auth
from tests.service.test_disputes import add_record

ROLES = ("anonymous", "citizen", "other_citizen", "partner", "partner_no_consent",
         "partner_other_perk", "admin", "expired")
BIKES, LIBRARY = "bike-deposit-free", "library-deposit-free"
ANSWER_KEYS = {"eligible", "decision_id", "expires_at"}
ENVELOPE_KEYS = {"code", "status", "message", "errors"}
METHODS = ("get", "post", "put", "patch", "delete")
RUN_ID = "20260101T000000Z-0123abcd"  # a run id of the right shape (no such run)

# The expected status of every operation for every role, in ROLES order:
#   anonymous, citizen (own data), another citizen, partner with consent for the perk,
#   partner without consent, partner asking for another partner's perk, admin, expired token.
# Promote and rollback answer an admin 409: this server has no validation snapshot and the
# registry no previous champion — past authentication, and nothing changes.
EXPECTED: dict[tuple[str, str], tuple[int, ...]] = {
    #                                                    anon cit  oth  p_ok p_no p_oth adm exp
    ("get", "/healthz"):                                 (200, 200, 200, 200, 200, 200, 200, 200),
    ("get", "/.well-known/jwks.json"):                   (200, 200, 200, 200, 200, 200, 200, 200),
    ("get", "/readyz"):                                  (200, 200, 200, 200, 200, 200, 200, 200),
    ("get", "/.well-known/osmanthus-audit-keys.json"):   (200, 200, 200, 200, 200, 200, 200, 200),
    ("get", "/v1/transparency/tree-head"):               (200, 200, 200, 200, 200, 200, 200, 200),
    ("get", "/v1/transparency/consistency"):             (200, 200, 200, 200, 200, 200, 200, 200),
    ("get", "/v1/me/score"):                             (401, 200, 200, 401, 401, 401, 403, 401),
    ("get", "/v1/me/explanation"):                       (401, 200, 200, 401, 401, 401, 403, 401),
    ("get", "/v1/me/records"):                           (401, 200, 200, 401, 401, 401, 403, 401),
    ("get", "/v1/me/perks"):                             (401, 200, 200, 401, 401, 401, 403, 401),
    ("get", "/v1/me/disputes"):                          (401, 200, 200, 401, 401, 401, 403, 401),
    ("post", "/v1/me/disputes"):                         (401, 201, 404, 401, 401, 401, 403, 401),
    ("get", "/v1/me/disputes/{dispute_id}"):             (401, 200, 404, 401, 401, 401, 403, 401),
    ("delete", "/v1/me/disputes/{dispute_id}"):          (401, 200, 404, 401, 401, 401, 403, 401),
    ("get", "/v1/me/advice"):                            (401, 200, 200, 401, 401, 401, 403, 401),
    ("get", "/v1/me/review"):                            (401, 200, 200, 401, 401, 401, 403, 401),
    ("post", "/v1/me/review"):                           (401, 201, 201, 401, 401, 401, 403, 401),
    ("get", "/v1/me/review/{review_id}"):                (401, 200, 404, 401, 401, 401, 403, 401),
    ("delete", "/v1/me/review/{review_id}"):             (401, 200, 404, 401, 401, 401, 403, 401),
    ("get", "/v1/me/repairs"):                           (401, 200, 200, 401, 401, 401, 403, 401),
    ("post", "/v1/me/repairs"):                          (401, 201, 404, 401, 401, 401, 403, 401),
    ("get", "/v1/me/repairs/{repair_id}"):               (401, 200, 404, 401, 401, 401, 403, 401),
    ("get", "/v1/me/consents"):                          (401, 200, 200, 401, 401, 401, 403, 401),
    ("post", "/v1/me/consents"):                         (401, 201, 201, 401, 401, 401, 403, 401),
    ("delete", "/v1/me/consents/{consent_id}"):          (401, 200, 404, 401, 401, 401, 403, 401),
    ("get", "/v1/me/access-log"):                        (401, 200, 200, 401, 401, 401, 403, 401),
    ("post", "/v1/partner/eligibility"):                 (401, 401, 401, 200, 403, 403, 401, 403),
    ("post", "/v1/partner/eligibility/batch"):           (401, 401, 401, 200, 200, 200, 401, 200),
    ("post", "/v1/admin/feeds"):                         (401, 403, 403, 401, 401, 401, 201, 401),
    ("get", "/v1/admin/feeds"):                          (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/feeds/{feed_id}/quarantine"):     (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/disputes"):                       (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/disputes/{dispute_id}"):          (401, 403, 403, 401, 401, 401, 200, 401),
    ("post", "/v1/admin/disputes/{dispute_id}/resolution"):
                                                         (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/reviews"):                        (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/reviews/{review_id}"):            (401, 403, 403, 401, 401, 401, 200, 401),
    ("post", "/v1/admin/reviews/{review_id}/decision"):  (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/repairs"):                        (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/repairs/{repair_id}"):            (401, 403, 403, 401, 401, 401, 200, 401),
    ("post", "/v1/admin/repairs/{repair_id}/decision"):  (401, 403, 403, 401, 401, 401, 200, 401),
    ("post", "/v1/admin/rescore"):                       (401, 403, 403, 401, 401, 401, 200, 401),
    ("post", "/v1/admin/rescore-all"):                   (401, 403, 403, 401, 401, 401, 202, 401),
    ("get", "/v1/admin/rescore-all/{run_id}"):           (401, 403, 403, 401, 401, 401, 200, 401),
    ("get", "/v1/admin/models"):                         (401, 403, 403, 401, 401, 401, 200, 401),
    ("post", "/v1/admin/models/{version}/promote"):      (401, 403, 403, 401, 401, 401, 409, 401),
    ("post", "/v1/admin/models/rollback"):               (401, 403, 403, 401, 401, 401, 409, 401),
    ("get", "/v1/admin/perks"):                          (401, 403, 403, 401, 401, 401, 200, 401),
    ("put", "/v1/admin/perks/{perk_id}"):                (401, 403, 403, 401, 401, 401, 200, 401),
}

# The error code a partner is refused with, by role (single form; the batch item's `error`).
PARTNER_REFUSALS = {"partner_no_consent": "consent_other_partner",
                    "partner_other_perk": "not_your_perk", "expired": "consent_invalid"}
ERROR_CODES = {401: {"unauthenticated"}, 404: {"not_found"}, 403: {"forbidden"},
               409: {"no_validation_snapshot", "no_previous_champion"}}


def spec_operations(client) -> list[tuple[str, str]]:
    """Every (method, path) the served /openapi.json documents, in its order."""
    spec = client.get("/openapi.json").get_json()
    return [(method, path) for path, item in spec["paths"].items()
            for method in item if method in METHODS]


def test_every_operation_in_the_spec_has_a_row(client):
    """A new endpoint cannot escape the matrix, and a removed one cannot linger in it."""
    operations = spec_operations(client)
    assert len(operations) == len(set(operations))
    assert sorted(set(operations) - set(EXPECTED)) == [], "operations with no expected row"
    assert sorted(set(EXPECTED) - set(operations)) == [], "rows for operations not in the spec"
    assert all(len(row) == len(ROLES) for row in EXPECTED.values())


# --- the scene --------------------------------------------------------------------------------
@dataclass
class Scene:
    app: Any
    client: Any
    owner: str  # the citizen whose data the ids below belong to
    other: str  # another citizen
    reviewed: str  # a third citizen, who asked for human review
    consent_id: str
    consent_token: str
    expired_consent_token: str
    dispute_id: str
    review_id: str  # the owner's request for human review of the library perk
    repair_id: str  # the owner's application for repair of one general penalty
    repairable: dict  # another general penalty of the owner's, repairable now
    disputed: dict  # the disputed record: {source, record_id}
    undisputed: dict  # another counting record of the owner's
    feed_id: str
    version: str
    headers: dict[str, dict[str, str]]


def _until() -> str:
    return (DEMO_TODAY + dt.timedelta(days=30)).isoformat()  # the served apps' today


def _feed_csv() -> bytes:
    """A penalty feed whose only row is quarantined (no valid resident ID)."""
    return (b"decision_no,resident_id,decided_on,category,severity,fine,window_months,"
            b"repaired_on\nMATRIX-1,not-an-id,2025-06-01,traffic,general,100,,\n")


@pytest.fixture
def scene(served_app, people_keys) -> Scene:
    """One served app, its people and ids, and every role's headers."""
    auth, client = Auth(served_app), served_app.test_client()
    config = served_app.extensions["osmanthus.config"]
    owner, other, reviewed = people_keys[0], people_keys[1], people_keys[2]
    bikes, library = auth.partner("city-bikes"), auth.partner("city-library")
    admin = auth.admin()

    granted = client.post("/v1/me/consents", headers=auth.citizen(owner), json={
        "partner_id": "city-bikes", "perks": [BIKES], "until": _until()})
    assert granted.status_code == 201, granted.get_json()
    consent = granted.get_json()
    counting = [{"source": r["source"], "record_id": r["record_id"]} for r in
                client.get("/v1/me/records", headers=auth.citizen(owner)).get_json()["records"]
                if r["can_dispute"]]
    assert len(counting) >= 2, "the owner needs two counting records"
    opened = client.post("/v1/me/disputes", headers=auth.citizen(owner),
                         json={**counting[0], "statement": "not mine"})
    assert opened.status_code == 201, opened.get_json()
    asked = client.post("/v1/me/review", headers=auth.citizen(reviewed),
                        json={"perk_id": BIKES, "reason": "please look at my file"})
    assert asked.status_code == 201, asked.get_json()
    own_review = client.post("/v1/me/review", headers=auth.citizen(owner),
                             json={"perk_id": LIBRARY, "reason": "please look at my file"})
    assert own_review.status_code == 201, own_review.get_json()
    penalties = []
    for n in (1, 2):  # two general penalties, repairable now (3 months after the decision)
        record_id = f"{n:02d}" * 16
        add_record(served_app, owner, Source.PENALTY, record_id, decision_no=f"MX-{n}",
                   decided_on=dt.date(2025, 6, 1), category="tax", severity="general",
                   fine=300.0, window_months=12)
        penalties.append({"source": "penalty", "record_id": record_id})
    applied = client.post("/v1/me/repairs", headers=auth.citizen(owner),
                          json={**penalties[0], "statement": "paid in July"})
    assert applied.status_code == 201, applied.get_json()
    uploaded = client.post("/v1/admin/feeds", headers=admin, content_type="multipart/form-data",
                           data={"source": "penalty", "file": (io.BytesIO(_feed_csv()), "p.csv")})
    assert uploaded.status_code == 201 and uploaded.get_json()["rows_quarantined"] == 1
    from service.base.keys import audit_keys_of
    from service.rights import sequencer

    sealed = sequencer.seal(served_app.extensions["osmanthus.engine"], audit_keys_of(config))
    assert sealed.tree_size >= 2  # the audit log has a signed head (the public routes)

    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired = issue_token(config, "citizen", owner, minutes=1, now=past)
    expired_admin = issue_token(config, "admin", "ops", minutes=1, now=past)
    expired_consent = issue_token(config, "consent", consent["consent"]["consent_id"], minutes=1,
                                  now=past, claims={"partner": "city-bikes", "perks": [BIKES]})
    headers = {
        "anonymous": {}, "citizen": auth.citizen(owner), "other_citizen": auth.citizen(other),
        "partner": bikes, "partner_no_consent": library, "partner_other_perk": bikes,
        "admin": admin, "expired": {"Authorization": f"Bearer {expired}"},
        "expired_admin": {"Authorization": f"Bearer {expired_admin}"},
    }
    return Scene(served_app, client, owner, other, reviewed, consent["consent"]["consent_id"],
                 consent["token"], expired_consent, opened.get_json()["dispute"]["dispute_id"],
                 own_review.get_json()["review_id"], applied.get_json()["repair_id"],
                 penalties[1], counting[0], counting[1], uploaded.get_json()["feed_id"],
                 served_app.extensions["osmanthus.model"].version, headers)


# --- one request per operation and role -------------------------------------------------------
def _question(scene: Scene, role: str) -> dict[str, str]:
    """What each partner role asks: the consented partner its own perk; the library (never
    consented to) its own perk; the consented partner the library's perk; an expired token."""
    if role in ("partner_no_consent", "partner_other_perk"):
        return {"consent_token": scene.consent_token, "perk_id": LIBRARY}
    if role == "expired":
        return {"consent_token": scene.expired_consent_token, "perk_id": BIKES}
    return {"consent_token": scene.consent_token, "perk_id": BIKES}


BODIES: dict[tuple[str, str], Callable[[Scene, str], dict]] = {
    ("post", "/v1/me/disputes"): lambda s, r: {"json": {**s.undisputed, "statement": "not me"}},
    ("post", "/v1/me/review"): lambda s, r: {"json": {"perk_id": "hospital-pay-later",
                                                      "reason": "a person should decide"}},
    ("post", "/v1/me/repairs"): lambda s, r: {"json": {**s.repairable, "statement": "paid"}},
    ("post", "/v1/admin/repairs/{repair_id}/decision"): lambda s, r: {
        "json": {"outcome": "approved", "reason": "the fine was paid"}},
    ("post", "/v1/me/consents"): lambda s, r: {"json": {
        "partner_id": "city-library", "perks": [LIBRARY], "until": _until()}},
    ("post", "/v1/partner/eligibility"): lambda s, r: {"json": _question(s, r)},
    ("post", "/v1/partner/eligibility/batch"): lambda s, r: {
        "json": {"requests": [_question(s, r)]}},
    ("post", "/v1/admin/feeds"): lambda s, r: {
        "content_type": "multipart/form-data",
        "data": {"source": "penalty", "file": (io.BytesIO(_feed_csv()), "again.csv")}},
    ("post", "/v1/admin/disputes/{dispute_id}/resolution"): lambda s, r: {
        "json": {"outcome": "rejected", "note": "the record was checked"}},
    ("post", "/v1/admin/reviews/{review_id}/decision"): lambda s, r: {
        "json": {"outcome": "eligible", "reason": "checked by a person"}},
    ("post", "/v1/admin/rescore"): lambda s, r: {"json": {"person_key": s.owner}},
    ("post", "/v1/admin/rescore-all"): lambda s, r: {"json": {}},
    ("post", "/v1/admin/models/{version}/promote"): lambda s, r: {"json": {}},
    ("post", "/v1/admin/models/rollback"): lambda s, r: {"json": {"why": "matrix"}},
    ("put", "/v1/admin/perks/{perk_id}"): lambda s, r: {"json": {
        "min_score": 600, "conditions": ["no_active_court_listing"]}},
    ("get", "/v1/transparency/consistency"): lambda s, r: {
        "query_string": {"first": 1, "second": 2}},
}


def _headers(scene: Scene, path: str, role: str) -> dict[str, str]:
    if role == "expired" and path.startswith("/v1/admin"):
        return scene.headers["expired_admin"]
    if role == "expired" and path.startswith("/v1/partner"):
        return scene.headers["partner"]  # a valid key with an expired consent token
    return scene.headers[role]


def call(scene: Scene, method: str, template: str, role: str):
    path = template.format(dispute_id=scene.dispute_id, consent_id=scene.consent_id,
                           feed_id=scene.feed_id, person_key=scene.reviewed,
                           review_id=scene.review_id, repair_id=scene.repair_id,
                           version=scene.version, perk_id=BIKES, run_id=RUN_ID)
    extra = BODIES.get((method, template), lambda s, r: {})(scene, role)
    return getattr(scene.client, method)(path, headers=_headers(scene, template, role), **extra)


def _check_body(template: str, role: str, status: int, body: Any) -> list[str]:
    """What is wrong with one answer's body (beyond its status)."""
    problems = []
    if status >= 400:
        if not isinstance(body, dict) or set(body) != ENVELOPE_KEYS:
            return [f"not the error envelope: {body!r}"]
        if body["status"] != status or not body["message"] or not isinstance(body["errors"], dict):
            problems.append(f"bad envelope {body!r}")
        allowed = ({PARTNER_REFUSALS[role]} if template.startswith("/v1/partner") and status == 403
                   else ERROR_CODES.get(status, set()))
        if body["code"] not in allowed:
            problems.append(f"code {body['code']!r}, expected one of {sorted(allowed)}")
    elif template == "/v1/partner/eligibility":
        if set(body) != ANSWER_KEYS or body["eligible"] not in ("yes", "no", "pending"):
            problems.append(f"a partner's answer must be exactly {sorted(ANSWER_KEYS)}: {body}")
    elif template == "/v1/partner/eligibility/batch":
        items = body.get("results") if set(body) == {"results"} else None
        item = items[0] if isinstance(items, list) and len(items) == 1 else {}
        if role == "partner":
            good = set(item) == ANSWER_KEYS
        else:
            good = set(item) == {"error"} and item["error"]["code"] == PARTNER_REFUSALS[role]
        if not good:
            problems.append(f"one answer or one {PARTNER_REFUSALS.get(role)} error: {body}")
    return problems


def _leaks(scene: Scene, role: str, template: str, text: str) -> list[str]:
    """The owner's ids seen by someone who must not see them."""
    secrets = {"person key": scene.owner}
    if role not in ("citizen", "admin"):
        secrets |= {"dispute id": scene.dispute_id, "consent id": scene.consent_id,
                    "disputed record": scene.disputed["record_id"]}
    if role == "admin" and template.startswith("/v1/admin"):
        return []  # the operators' queues name people and disputes by design
    return [f"shows the owner's {what}" for what, value in secrets.items() if value in text]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_expected_status_on_every_operation(scene, role):
    """One column of the matrix: every operation of the spec, its status, its body."""
    column = ROLES.index(role)
    spec = scene.client.get("/openapi.json").get_json()
    observed, expected, problems = {}, {}, {}
    for method, template in spec_operations(scene.client):
        assert (method, template) in EXPECTED, f"no expected row for {method.upper()} {template}"
        response = call(scene, method, template, role)
        name = f"{method.upper()} {template}"
        observed[name] = response.status_code
        expected[name] = EXPECTED[(method, template)][column]
        text = response.get_data(as_text=True)
        found = _check_body(template, role, response.status_code, json.loads(text))
        found += _leaks(scene, role, template, text)
        if str(response.status_code) not in spec["paths"][template][method]["responses"]:
            found.append(f"{response.status_code} is not documented in /openapi.json")
        if found:
            problems[name] = found
    assert observed == expected
    assert problems == {}


def test_partners_never_see_a_score_band_reason_or_record(scene):
    """Every answer form a partner can get — yes, no, pending, batch — has only the three keys."""
    bikes = scene.headers["partner"]
    question = {"consent_token": scene.consent_token, "perk_id": BIKES}
    asked = scene.client.post("/v1/me/review", headers=scene.headers["citizen"],
                              json={"perk_id": BIKES, "reason": "pending for the partner"})
    assert asked.status_code == 201
    pending = scene.client.post("/v1/partner/eligibility", headers=bikes, json=question)
    decided = scene.client.post(f"/v1/admin/reviews/{asked.get_json()['review_id']}/decision",
                                headers=scene.headers["admin"],
                                json={"outcome": "not_eligible", "reason": "checked"})
    assert decided.status_code == 200
    after = scene.client.post("/v1/partner/eligibility/batch", headers=bikes,
                              json={"requests": [question, question]})
    assert pending.status_code == after.status_code == 200
    answers = [pending.get_json(), *after.get_json()["results"]]
    assert [set(a) for a in answers] == [ANSWER_KEYS] * 3
    assert [a["eligible"] for a in answers] == ["pending", "no", "no"]
    for text in (pending.get_data(as_text=True), after.get_data(as_text=True)):
        for word in ("score", "band", "reason", "record", "points", scene.owner):
            assert word not in text
