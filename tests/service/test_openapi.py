"""`/openapi.json` is complete and accurate, and the served app keeps to it.

schemathesis generates valid and invalid requests for every operation of a served app (a real
model, 40 scored residents), each with the credential its blueprint needs, and checks that no
answer is a 5xx, every answer's status, content type and body are the documented ones, invalid
input is refused with a 4xx, and every 4xx is the one error envelope. Alongside, the document
itself: every operation names its success schema, its errors (in the envelope) and its
security; no schema mentions a raw ID number; every schema carries its docstring as its text.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import io
import json

import polars as pl
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from marshmallow import Schema
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from service.base import clock
from service.base.config import Config

ENVELOPE = {"code", "status", "message", "errors"}
ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
SCHEMA_MODULES = ("service.api.schemas", "service.api.health", "service.api.me_schemas",
                  "service.api.partner_schemas", "service.api.admin_schemas")
NOT_ENVELOPED = {("/readyz", "503")}  # "unavailable" is a readiness report, not an error
EXPECTED_SECURITY = {"/v1/me/": [{"citizenToken": []}], "/v1/admin/": [{"adminToken": []}],
                     "/v1/partner/": [{"partnerKey": []}], "/healthz": [], "/readyz": [],
                     "/.well-known/": [], "/v1/transparency/": []}


# --- schemathesis over every operation ------------------------------------------------------
# Each operation, valid and invalid input: enough to reach each error path and its schema, yet
# the whole run stays well under a minute per backend on two cores. Derandomized, so that CI
# sees the same requests every time and a failure is reproducible. Operations are driven one
# by one through `as_strategy` in a single test per backend (one served app, ~20 s), rather than
# `schemathesis.pytest.from_fixture`, whose subtests set `Function._nodeid`, which pytest 9.2
# no longer has (AttributeError before any request is made).
EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def error_envelope(ctx: CheckContext, response, case) -> bool | None:
    """Every 4xx is the one error envelope, its `status` the response's own."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == ENVELOPE, f"not the envelope: {body!r}"
    assert body["status"] == response.status_code, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["message"], str) and isinstance(body["errors"], dict), body
    return True


def credential(path: str, auth, person_key: str, partner: dict[str, str]) -> dict[str, str]:
    """The credential an operation's blueprint needs (none for /healthz and /readyz)."""
    if path.startswith("/v1/me/"):
        return auth.citizen(person_key)
    if path.startswith("/v1/admin/"):
        return auth.admin()
    if path.startswith("/v1/partner/"):
        return partner
    return {}


def exercise(operation, mode: GenerationMode, headers: dict[str, str]) -> None:
    """Generated requests for one operation and mode, each response checked."""
    checks = [*CHECKS, error_envelope]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case) -> None:
        case.call_and_validate(checks=checks)

    run()


def test_every_operation_keeps_to_its_documented_contract(served_app, auth, people_keys):
    """schemathesis over every operation of /openapi.json; every failing operation is named."""
    api = schemathesis.openapi.from_wsgi("/openapi.json", served_app)
    partner = auth.partner()
    failures, seen = [], 0
    for result in api.get_all_operations():
        operation = result.ok()
        headers = credential(operation.path, auth, people_keys[0], partner)
        for mode in MODES:
            seen += 1
            try:
                exercise(operation, mode, headers)
            except Unsatisfiable:  # no input the credential leaves free can be made invalid
                continue
            except Exception as error:  # noqa: BLE001 - gather every operation's failure
                failures.append(f"{operation.label} [{mode.value}]: {error}")
    assert seen >= 60
    assert not failures, "\n\n".join(failures)


def test_every_success_answer_matches_its_documented_schema(served_app, auth, people_keys):
    """Random input seldom gets past validation and the data's own rules (a known record, a
    consent's partner), so the success answers of the writing operations are reached here, on
    purpose, with the same checks: a whole citizen/partner/admin journey through the schema."""
    api = schemathesis.openapi.from_wsgi("/openapi.json", served_app)
    checks = [*CHECKS, error_envelope]
    key = people_keys[0]
    citizen, admin, partner = auth.citizen(key), auth.admin(), auth.partner("city-bikes")

    def call(method: str, path: str, headers: dict[str, str], status: int, **data) -> dict:
        case = api[path][method].Case(headers=headers, **data)
        response = case.call_and_validate(checks=checks)
        assert response.status_code == status, (method, path, response.text)
        return response.json()

    until = (clock.today(served_app) + dt.timedelta(days=30)).isoformat()
    granted = call("POST", "/v1/me/consents", citizen, 201, body={
        "partner_id": "city-bikes", "perks": ["bike-deposit-free"], "until": until})
    question = {"consent_token": granted["token"], "perk_id": "bike-deposit-free"}
    call("POST", "/v1/partner/eligibility", partner, 200, body=question)
    call("POST", "/v1/partner/eligibility/batch", partner, 200,
         body={"requests": [question, {**question, "perk_id": "library-deposit-free"}]})

    records = call("GET", "/v1/me/records", citizen, 200)["records"]
    record = next(r for r in records if r["can_dispute"])
    opened = call("POST", "/v1/me/disputes", citizen, 201, body={
        "source": record["source"], "record_id": record["record_id"], "statement": "Not mine.",
        "confirm": True})
    dispute = {"dispute_id": opened["dispute"]["dispute_id"]}
    call("GET", "/v1/me/disputes/{dispute_id}", citizen, 200, path_parameters=dispute)
    call("GET", "/v1/admin/disputes/{dispute_id}", admin, 200, path_parameters=dispute)
    call("POST", "/v1/admin/disputes/{dispute_id}/resolution", admin, 200,
         path_parameters=dispute, body={"outcome": "rejected", "note": "The record is right."})

    asked = call("POST", "/v1/me/review", citizen, 201, body={
        "perk_id": "bike-deposit-free", "reason": "Please look at my file."})
    review = {"review_id": asked["review_id"]}
    call("GET", "/v1/me/review/{review_id}", citizen, 200, path_parameters=review)
    call("GET", "/v1/admin/reviews/{review_id}", admin, 200, path_parameters=review)
    call("POST", "/v1/admin/reviews/{review_id}/decision", admin, 200,
         path_parameters=review, body={"outcome": "eligible", "reason": "Checked."})
    person = {"person_key": key}
    call("POST", "/v1/admin/rescore", admin, 200, body=person)
    call("PUT", "/v1/admin/perks/{perk_id}", admin, 200,
         path_parameters={"perk_id": "bike-deposit-free"},
         body={"min_score": 610, "conditions": []})

    feed = pl.DataFrame([{"decision_no": "OA-1", "resident_id": "not-an-id",
                          "decided_on": "2025-06-01", "category": "traffic",
                          "severity": "general", "fine": "5000", "window_months": "",
                          "repaired_on": ""}]).write_csv().encode()
    upload = api["/v1/admin/feeds"]["POST"].Case(headers=admin, media_type="multipart/form-data")
    response = served_app.test_client().post(  # a file part with a name: schemathesis sends none
        "/v1/admin/feeds", headers=admin, content_type="multipart/form-data",
        data={"source": "penalty", "file": (io.BytesIO(feed), "penalties.csv")})
    upload.validate_response(response, checks=checks)
    assert response.status_code == 201, response.json
    ingested = response.json
    assert ingested["rows_quarantined"] == 1
    quarantined = call("GET", "/v1/admin/feeds/{feed_id}/quarantine", admin, 200,
                       path_parameters={"feed_id": ingested["feed_id"]})
    assert quarantined["rows"][0]["field"] == "resident_id"
    for path in ("/v1/me/consents", "/v1/me/disputes", "/v1/me/access-log", "/v1/me/perks",
                 "/v1/admin/disputes", "/v1/admin/reviews"):
        call("GET", path, admin if path.startswith("/v1/admin/") else citizen, 200,
             query={"state": "all"} if path.startswith("/v1/admin/") else None)
    call("DELETE", "/v1/me/consents/{consent_id}", citizen, 200,
         path_parameters={"consent_id": granted["consent"]["consent_id"]})


# --- the document itself --------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    """/openapi.json of a bare app (the document does not depend on data or backend)."""
    from service.app import create_app

    root = tmp_path_factory.mktemp("openapi")
    app = create_app(Config(env="test", database_url=f"sqlite:///{root / 'o.db'}",
                            registry_dir=root / "registry"))
    try:
        response = app.test_client().get("/openapi.json")
        assert response.status_code == 200
        return response.get_json()
    finally:
        app.extensions["osmanthus.engine"].dispose()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                yield path, method, operation


def resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = spec["components"][kind][name]
    return node


def test_every_operation_documents_success_errors_and_security(spec):
    seen = 0
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        seen += 1
        assert operation.get("summary"), f"{where}: no docstring"
        success = [s for s in operation["responses"] if s.startswith("2")]
        assert len(success) == 1, f"{where}: success responses {success}"
        content = resolve(spec, operation["responses"][success[0]]).get("content", {})
        assert "schema" in content.get("application/json", {}), f"{where}: no success schema"
        errors = {s: resolve(spec, r) for s, r in operation["responses"].items()
                  if s == "default" or s[0] in "45"}
        assert "default" in errors, f"{where}: no default error"
        for status, response in errors.items():
            if (path, status) in NOT_ENVELOPED:
                continue
            documented = response["content"]["application/json"]["schema"]
            assert documented == {"$ref": ENVELOPE_REF}, f"{where} {status}: {documented}"
        expected = next(v for k, v in EXPECTED_SECURITY.items() if path.startswith(k))
        assert operation.get("security") == expected, f"{where}: security"
        if expected:  # a credential: its absence (401), and a token of another role (403)
            # citizens and admins may be signed in by the city's provider, which can be down
            needed = {"401"} if path.startswith("/v1/partner/") else {"401", "403", "503"}
            assert needed <= set(errors), f"{where}: {needed - set(errors)} undocumented"
        if "requestBody" in operation or any(p["in"] in ("query", "header")
                                             for p in operation.get("parameters", [])):
            assert "422" in errors, f"{where}: input, but 422 undocumented"
    assert seen >= 30


def test_the_envelope_and_security_schemes_are_declared_once(spec):
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == ENVELOPE
    assert envelope["properties"]["code"]["type"] == "string"
    assert envelope["properties"]["status"]["type"] == "integer"
    assert "Error" not in spec["components"]["schemas"]  # flask-smorest's, with an int `code`
    schemes = spec["components"]["securitySchemes"]
    assert schemes["citizenToken"] == schemes["citizenToken"] | {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["adminToken"]["scheme"] == "bearer"
    assert schemes["partnerKey"] | {} == schemes["partnerKey"] | {
        "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert "security" not in spec  # per blueprint, not global: /healthz needs nothing


def test_no_schema_mentions_a_raw_id_number(spec):
    text = json.dumps(spec, ensure_ascii=False).lower()
    assert "resident_id" not in text and "resident id" not in text


def schema_classes() -> list[type[Schema]]:
    found = []
    for name in SCHEMA_MODULES:
        module = importlib.import_module(name)
        found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, Schema) and cls.__module__ == name]
    return found


@pytest.mark.parametrize("cls", schema_classes(), ids=lambda cls: cls.__name__)
def test_every_schema_has_a_docstring_and_it_is_the_openapi_text(cls, spec):
    doc = cls.__dict__.get("__doc__")
    assert doc and doc.strip(), f"{cls.__name__} has no docstring"
    name = cls.__name__.removesuffix("Schema")
    component = spec["components"]["schemas"].get(name)
    if component is not None:  # header and query schemas become parameters, not components
        assert component.get("description") == inspect.cleandoc(doc)


def test_every_component_schema_is_described(spec):
    undescribed = [name for name, schema in spec["components"]["schemas"].items()
                   if not schema.get("description")]
    assert undescribed == []


