"""Every field of every request schema, given values no schema should have to survive (NaN,
infinities, numbers too large for any column or for `int()`, nesting 100,000 deep, a lone
surrogate, NUL): a 4xx in the envelope, never a 500, and the store exactly as it was.

The fields are read from the API's own OpenAPI document, so a new schema or field is covered
the day it is added (service/api/guard.py is the floor under all of them)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from service.store.tables import metadata

BAD = {  # raw JSON text of each value
    "nan": "NaN",
    "infinity": "-Infinity",
    "overflowing float": "1e999",
    "beyond bigint": "1" + "0" * 30,
    "4,300+ digits": "9" * 5000,
    "deep": "[" * 100_000 + "]" * 100_000,
    "lone surrogate": '"\\ud800"',
    "nul": '"a\\u0000b"',
}
MARK = "__BAD__"
PATH_VALUES = {"dispute_id": "0" * 32, "version": "v0001", "perk_id": "bike-deposit-free"}
NESTED = {  # where a bad value can also hide one level down
    "perks": lambda: [MARK],
    "requests": lambda: [{"consent_token": MARK, "perk_id": "bike-deposit-free"}],
    "correction": lambda: {"unpaid_fees": MARK},
    "conditions": lambda: [MARK],
}


def _json_operations(spec: dict) -> list[tuple[str, str, list[str]]]:
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            content = (body or {}).get("content", {}).get("application/json")
            if content:
                name = content["schema"]["$ref"].rsplit("/", 1)[-1]
                fields = list(spec["components"]["schemas"][name]["properties"])
                found.append((method, path, fields))
    return found


def _store(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {table.name: connection.execute(select(func.count()).select_from(table)).scalar()
                for table in metadata.sorted_tables}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_every_field_refuses_values_no_schema_should_see(served_app, auth, people_keys, kind):
    client = served_app.test_client()
    engine = served_app.extensions["osmanthus.engine"]
    headers = {"/v1/me": auth.citizen(people_keys[0]), "/v1/partner": auth.partner(),
               "/v1/admin": auth.admin()}
    operations = _json_operations(client.get("/openapi.json").get_json())
    assert len(operations) >= 10  # the document lists the API's JSON bodies
    before, failures, cases = _store(engine), [], 0
    for method, template, fields in operations:
        path = template.replace("{person_key}", people_keys[0])
        for name, value in PATH_VALUES.items():
            path = path.replace("{" + name + "}", value)
        who = next(h for prefix, h in headers.items() if path.startswith(prefix))
        for field in fields:
            shapes = [MARK] + ([NESTED[field]()] if field in NESTED else [])
            for shape in shapes:
                body = json.dumps({field: shape}).replace(json.dumps(MARK), BAD[kind])
                response = client.open(path, method=method.upper(), data=body,
                                       headers={**who, "Content-Type": "application/json"})
                cases += 1
                envelope = response.get_json(silent=True) or {}
                if not (400 <= response.status_code < 500 and envelope.get("status")
                        == response.status_code):
                    failures.append((method, path, field, response.status_code))
    assert cases >= 24  # 20 fields, 4 of them also one level down
    assert failures == []
    assert _store(engine) == before


def test_a_partners_refusal_for_an_unknown_perk_audits_no_caller_text(served_app, auth,
                                                                      people_keys):
    """The audit log is append-only and shown to the citizen: a perk id the partner typed is
    never stored, only a configured one or "unknown perk"."""
    from sqlalchemy import select

    from service.store.tables import audit_entries
    from tests.service.test_partner import grant

    client = served_app.test_client()
    key = people_keys[0]
    token = grant(served_app, key)
    typed = "110101199003077777"
    response = client.post("/v1/partner/eligibility", headers=auth.partner(),
                           json={"consent_token": token, "perk_id": typed})
    assert response.status_code == 403 and typed not in response.get_data(as_text=True)
    with served_app.extensions["osmanthus.engine"].connect() as connection:
        details = [row.detail for row in connection.execute(
            select(audit_entries.c.detail).where(audit_entries.c.action == "eligibility_refused"))]
    assert details and all(typed not in json.dumps(d) for d in details)
    assert details[-1]["perk"] == "unknown perk"


@pytest.mark.parametrize("headers,status", [
    ({"Content-Length": str(50 << 20)}, 413),
])
def test_a_huge_anonymous_partner_batch_is_refused_before_anything_reads_it(served_app,
                                                                            headers, status):
    """413 on the declared length, before the key is even looked at, and nothing read."""
    client = served_app.test_client()
    body = b'{"requests": [' + b'{"consent_token": "x", "perk_id": "y"},' * 40_000 + b'{}]}'
    response = client.post("/v1/partner/eligibility/batch", data=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["code"] == "too_large"
    small = client.post("/v1/partner/eligibility/batch", data=b"[" * 50_000,
                        headers={"Content-Type": "application/json"})
    assert small.status_code == 401  # the key first: an anonymous caller learns nothing else


def test_routing_answers_are_the_envelope(served_app):
    client = served_app.test_client()
    not_allowed = client.delete("/v1/me/score")
    assert not_allowed.status_code == 405 and not_allowed.get_json()["status"] == 405
    assert set(not_allowed.headers["Allow"].replace(" ", "").split(",")) >= {"GET"}
    doubled = client.get("//v1/me/score")
    assert doubled.status_code in (401, 404) and doubled.get_json()["status"] == doubled.status_code
    assert "Location" not in doubled.headers
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"


def test_personal_answers_are_not_stored_or_sniffed(served_app, auth, people_keys):
    client = served_app.test_client()
    for path, headers in (("/v1/me/score", auth.citizen(people_keys[0])),
                          ("/v1/me/score", auth.citizen(people_keys[0])),  # from the cache
                          ("/v1/me/records", auth.citizen(people_keys[0])),
                          ("/v1/me/score", {})):
        response = client.get(path, headers=headers)
        assert response.headers["Cache-Control"] == "no-store", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
