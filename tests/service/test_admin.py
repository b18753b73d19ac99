"""/v1/admin/...: feeds, disputes, reviews, re-scoring, models and perks, on both backends."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import time

import polars as pl
import pytest
from sqlalchemy import func, select

from features.build import build_features
from features.identity import make_resident_id, person_key
from features.records import Source
from model.registry import Registry
from service.base import clock
from service.base.cache import page_key
from service.store.tables import RECORD_TABLES, audit_entries, perks, scores
from tests.service.conftest import DEMO_TODAY
from tests.service.world import VALID_AS_OF

OPERATIONS = [
    ("post", "/v1/admin/feeds"), ("get", "/v1/admin/feeds"),
    ("get", "/v1/admin/feeds/abc/quarantine"), ("get", "/v1/admin/disputes"),
    ("get", "/v1/admin/disputes/abc"), ("post", "/v1/admin/disputes/abc/resolution"),
    ("get", "/v1/admin/reviews"), ("get", "/v1/admin/reviews/abc"),
    ("post", "/v1/admin/reviews/abc/decision"), ("post", "/v1/admin/rescore"),
    ("post", "/v1/admin/rescore-all"), ("get", "/v1/admin/rescore-all/abc"),
    ("get", "/v1/admin/models"),
    ("post", "/v1/admin/models/v0001/promote"), ("post", "/v1/admin/models/rollback"),
    ("get", "/v1/admin/perks"), ("put", "/v1/admin/perks/bike-deposit-free"),
]


def _count(engine, table, *where) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _audited(engine, action: str, key: str) -> list:
    with engine.connect() as connection:
        return connection.execute(select(audit_entries.c.actor).where(
            audit_entries.c.action == action, audit_entries.c.person_key == key)).scalars().all()


def test_every_admin_operation_needs_an_admin_token(served_client, auth, people_keys):
    for method, path in OPERATIONS:
        anonymous = getattr(served_client, method)(path, json={})
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json["code"] == "unauthenticated"
        citizen = getattr(served_client, method)(path, json={},
                                                 headers=auth.citizen(people_keys[0]))
        assert citizen.status_code == 403, (method, path)
        assert set(citizen.json) == {"code", "status", "message", "errors"}
    partner = served_client.get("/v1/admin/models", headers=auth.partner())
    assert partner.status_code == 401


# --- feeds ----------------------------------------------------------------------------------
def _resident_id_of(world, key: str) -> str:
    ids = pl.read_parquet(world.feed(Source.SOCIAL_SECURITY))["resident_id"].unique().to_list()
    for value in ids:
        try:
            if person_key(value) == key:
                return value
        except ValueError:
            continue
    raise LookupError(key)


def _upload(client, headers, source: str, content: bytes, name: str):
    return client.post("/v1/admin/feeds", headers=headers, content_type="multipart/form-data",
                       data={"source": source, "file": (io.BytesIO(content), name)})


def _penalty_csv(rows: list[tuple[str, str]]) -> bytes:
    return pl.DataFrame([
        {"decision_no": f"ADM-{i}", "resident_id": rid, "decided_on": "2025-06-01",
         "category": "traffic", "severity": severity, "fine": "5000", "window_months": "",
         "repaired_on": ""}
        for i, (rid, severity) in enumerate(rows)
    ]).write_csv().encode()


def test_a_feed_upload_stores_quarantines_and_rescores_changed_people(
        served_app, served_client, auth, world, people_keys):
    engine, cache = served_app.extensions["osmanthus.engine"], served_app.extensions["osmanthus.cache"]
    version = served_app.extensions["osmanthus.model"].version
    key = people_keys[0]
    raw = _resident_id_of(world, key)
    bad = raw[:17] + ("0" if raw[17] != "0" else "1")  # a wrong check digit
    before = _count(engine, scores, scores.c.person_key == key)
    cache.set(page_key(version, key, DEMO_TODAY), b"stale page")

    response = _upload(served_client, auth.admin(), "penalty",
                       _penalty_csv([(raw, "serious"), (bad, "serious")]), "penalties.csv")

    assert response.status_code == 201, response.json
    body = response.json
    assert (body["rows_read"], body["rows_stored"], body["rows_quarantined"]) == (2, 1, 1)
    assert body["people_changed"] == body["people_rescored"] == 1
    assert _count(engine, scores, scores.c.person_key == key) == before + 1
    assert cache.get(page_key(version, key, DEMO_TODAY)) is None
    assert _count(engine, RECORD_TABLES[Source.PENALTY],
                  RECORD_TABLES[Source.PENALTY].c.person_key == key) >= 1

    listed = served_client.get("/v1/admin/feeds", headers=auth.admin()).json["feeds"]
    assert [f["feed_id"] for f in listed] == [body["feed_id"]]
    assert listed[0]["filename"] == "penalties.csv" and listed[0]["status"] == "complete"
    quarantined = served_client.get(f"/v1/admin/feeds/{body['feed_id']}/quarantine",
                                    headers=auth.admin())
    assert quarantined.status_code == 200 and quarantined.json["total"] == 1
    assert quarantined.json["rows"][0]["row_number"] == 2
    assert quarantined.json["rows"][0]["field"] == "resident_id"
    assert bad not in quarantined.get_data(as_text=True)
    assert raw not in quarantined.get_data(as_text=True)

    again = _upload(served_client, auth.admin(), "penalty",
                    _penalty_csv([(raw, "serious"), (bad, "serious")]), "penalties.csv")
    assert again.json["people_changed"] == again.json["people_rescored"] == 0


def test_a_store_lost_during_an_upload_is_a_503_with_retry_after(served_client, auth,
                                                                   monkeypatch):
    """The ingest gives up on a database that stays away; the admin gets 503, not a 500."""
    from sqlalchemy.exc import OperationalError

    import service.api.admin as admin_module
    import service.store.ingest as ingest_module

    def lost(*_args, **_kwargs):
        raise OperationalError("INSERT …", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(admin_module, "UPLOAD_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(ingest_module, "_upsert_records", lost)
    feed = _penalty_csv([(make_resident_id(110101, dt.date(1980, 1, 1), 100), "general")])
    response = _upload(served_client, auth.admin(), "penalty", feed, "penalties.csv")
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"] == "30"
    assert "INSERT" not in response.get_data(as_text=True)
    assert response.json["message"].startswith("the store is unreachable")


def test_bad_feed_uploads_are_clear_422s(served_client, auth):
    feed = _penalty_csv([(make_resident_id(110101, dt.date(1980, 1, 1), 100), "general")])
    cases = [
        ({"source": "penalty", "file": (io.BytesIO(feed), "feed.txt")}, "file"),
        ({"source": "weather", "file": (io.BytesIO(feed), "feed.csv")}, "source"),
        ({"source": "penalty"}, "file"),
        ({"source": "penalty", "file": "not a file part"}, "file"),
        ({"source": "court", "file": (io.BytesIO(b"a,b\n1,2\n"), "feed.csv")}, "file"),
        ({"source": "court", "file": (io.BytesIO(b"\x00\xffnot parquet"), "feed.parquet")},
         "file"),
    ]
    for data, field in cases:
        response = served_client.post("/v1/admin/feeds", headers=auth.admin(), data=data,
                                      content_type="multipart/form-data")
        assert response.status_code == 422, (data, response.json)
        assert field in response.json["errors"]
    for feed_id in ("nope", "a%00b", "x" * 300):
        unknown = served_client.get(f"/v1/admin/feeds/{feed_id}/quarantine", headers=auth.admin())
        assert unknown.status_code == 404, feed_id


# --- disputes and human review --------------------------------------------------------------
def _open_a_dispute(app, people_keys) -> tuple[str, str]:
    from service.rights.disputes import open_dispute

    table = RECORD_TABLES[Source.SOCIAL_SECURITY]
    with app.extensions["osmanthus.engine"].connect() as connection:
        row = connection.execute(
            select(table.c.person_key, table.c.record_id)
            .where(table.c.person_key.in_(people_keys), table.c.month < DEMO_TODAY)
            .order_by(table.c.month.desc(), table.c.record_id).limit(1)).first()
    opened = open_dispute(app, row.person_key, "social_security", row.record_id,
                          "I paid that month")
    return opened["dispute"]["dispute_id"], row.person_key


def test_the_dispute_queue_detail_and_resolution(served_app, served_client, auth, people_keys):
    engine = served_app.extensions["osmanthus.engine"]
    dispute_id, key = _open_a_dispute(served_app, people_keys)

    queue = served_client.get("/v1/admin/disputes", headers=auth.admin()).json["disputes"]
    assert [d["dispute_id"] for d in queue] == [dispute_id]
    assert queue[0]["person_key"] == key and "statement" not in queue[0]
    assert _audited(engine, "admin_read_dispute", key) == []

    detail = served_client.get(f"/v1/admin/disputes/{dispute_id}", headers=auth.admin("ana"))
    assert detail.status_code == 200
    assert detail.json["statement"] == "I paid that month"
    assert detail.json["record"]["record_id"] == detail.json["record_id"]
    assert _audited(engine, "admin_read_dispute", key) == ["admin:ana"]

    path = f"/v1/admin/disputes/{dispute_id}/resolution"
    no_note = served_client.post(path, headers=auth.admin(), json={"outcome": "rejected"})
    assert no_note.status_code == 422 and "note" in no_note.json["errors"]
    bad = served_client.post(path, headers=auth.admin(), json={"outcome": "maybe"})
    assert bad.status_code == 422 and "outcome" in bad.json["errors"]
    for body, field in [({"outcome": "rejected", "note": "a\x00b"}, "note"),
                        ({"outcome": "upheld", "correction": {"status": "paid\x00"}},
                         "correction")]:
        nul = served_client.post(path, headers=auth.admin(), json=body)
        assert nul.status_code == 422 and field in nul.json["errors"], body
    done = served_client.post(path, headers=auth.admin("ana"),
                              json={"outcome": "rejected", "note": "the fund shows no payment"})
    assert done.status_code == 200, done.json
    assert done.json["dispute"]["state"] == "rejected"
    assert done.json["score"]["as_of"] == DEMO_TODAY.isoformat()
    assert _audited(engine, "dispute_resolved", key) == ["admin:ana"]
    assert served_client.post(path, headers=auth.admin(), json={
        "outcome": "rejected", "note": "again"}).status_code == 409
    assert served_client.get("/v1/admin/disputes", headers=auth.admin()).json["disputes"] == []
    closed = served_client.get("/v1/admin/disputes?state=rejected", headers=auth.admin())
    assert [d["dispute_id"] for d in closed.json["disputes"]] == [dispute_id]
    assert served_client.post("/v1/admin/disputes/nope/resolution", headers=auth.admin(), json={
        "outcome": "upheld"}).status_code == 404


def test_the_review_queue_and_decision(served_app, served_client, auth, people_keys):
    from service.rights.review import request_review

    engine = served_app.extensions["osmanthus.engine"]
    key = people_keys[1]
    assert served_client.get(f"/v1/admin/reviews/{'a' * 32}",
                             headers=auth.admin()).status_code == 404
    review_id = request_review(engine, ["bike-deposit-free"], key, "bike-deposit-free",
                               "I was abroad for a year",
                               now=clock.now(served_app))["review_id"]

    queue = served_client.get("/v1/admin/reviews", headers=auth.admin()).json["reviews"]
    assert [(r["person_key"], r["perk_id"], r["state"]) for r in queue] == [
        (key, "bike-deposit-free", "pending")]
    detail = served_client.get(f"/v1/admin/reviews/{review_id}", headers=auth.admin("rui"))
    assert detail.status_code == 200 and detail.json["score"]["as_of"] == DEMO_TODAY.isoformat()
    assert detail.json["points"] and detail.json["reason"] == "I was abroad for a year"
    assert _audited(engine, "admin_read_review", key) == ["admin:rui"]

    path = f"/v1/admin/reviews/{review_id}/decision"
    assert served_client.post(path, headers=auth.admin(), json={
        "outcome": "yes", "reason": "x"}).status_code == 422
    assert served_client.post(path, headers=auth.admin(), json={
        "outcome": "eligible", "reason": "  "}).status_code == 422
    decided = served_client.post(path, headers=auth.admin("rui"), json={
        "outcome": "eligible", "reason": "income confirmed"})
    assert decided.status_code == 200 and decided.json["state"] == "decided"
    assert (decided.json["outcome"], decided.json["outcome_reason"]) == (
        "eligible", "income confirmed")
    assert _audited(engine, "review_decided", key) == ["admin:rui"]
    assert served_client.post(path, headers=auth.admin(), json={
        "outcome": "eligible", "reason": "again"}).status_code == 409
    assert served_client.get("/v1/admin/reviews", headers=auth.admin()).json["reviews"] == []


# --- re-scoring -----------------------------------------------------------------------------
def test_rescore_one_person_is_audited(served_app, served_client, auth, people_keys):
    engine = served_app.extensions["osmanthus.engine"]
    key = people_keys[2]
    before = _count(engine, scores, scores.c.person_key == key)
    response = served_client.post("/v1/admin/rescore", headers=auth.admin(), json={"person_key": key})
    assert response.status_code == 200 and response.json["person_key"] == key
    assert _count(engine, scores, scores.c.person_key == key) == before + 1
    assert _audited(engine, "admin_rescore", key) == ["admin:ops"]
    assert served_client.post("/v1/admin/rescore", headers=auth.admin(),
                              json={"person_key": "0" * 64}).status_code == 404
    assert served_client.post("/v1/admin/rescore", headers=auth.admin(),
                              json={"person_key": "not-a-key"}).status_code == 422


def test_rescore_everyone_starts_the_batch_and_reports_its_progress(served_app, served_client,
                                                                   auth, people_keys):
    """The request answers at once (202) with the run; the run is the sharded batch in a
    process of its own, and its progress comes from the scores it wrote."""
    engine = served_app.extensions["osmanthus.engine"]
    response = served_client.post("/v1/admin/rescore-all", headers=auth.admin())
    assert response.status_code == 202
    run = response.json
    assert run["people"] == len(people_keys) and run["model_version"]
    assert _audited(engine, "admin_rescore_all", None) == ["admin:ops"]
    status = served_client.get(f"/v1/admin/rescore-all/{run['run_id']}", headers=auth.admin())
    for _ in range(600):  # waits for the run to end (a wait, not a speed limit)
        status = served_client.get(f"/v1/admin/rescore-all/{run['run_id']}",
                                   headers=auth.admin())
        if status.json["done"]:
            break
        time.sleep(0.5)
    assert status.status_code == 200 and status.json["done"], status.json
    assert status.json["people"] == status.json["scored"] == len(people_keys)
    assert _count(engine, scores, scores.c.run_id == run["run_id"]) == len(people_keys)
    assert served_client.get("/v1/admin/rescore-all/no%20such", headers=auth.admin()
                             ).status_code == 404


# --- models ---------------------------------------------------------------------------------
@pytest.fixture
def two_versions(world, tmp_path):
    """A copy of the world's registry with a second version (the same model again)."""
    root = tmp_path / "registry-copy"
    shutil.copytree(world.registry, root)
    registry = Registry(root)
    second = registry.register(registry.path(world.version), by="tests", why="a challenger")
    features = tmp_path / "valid.parquet"
    people = world.people()["person_key"]
    build_features(world.records, VALID_AS_OF, people).write_parquet(features)
    return root, second, features


@pytest.fixture
def models_app(served_config, two_versions, world):
    from service.app import create_app

    root, _, features = two_versions
    app = create_app(served_config.with_(
        registry_dir=root, as_of=DEMO_TODAY, validation_features=features,
        validation_outcomes=world.city / "outcomes.parquet", validation_as_of=VALID_AS_OF))
    yield app
    app.extensions["osmanthus.engine"].dispose()


def test_models_promote_refuse_force_and_roll_back(models_app, two_versions, world):
    from tests.service.conftest import Auth

    _, second, _ = two_versions
    client, admin = models_app.test_client(), Auth(models_app).admin("mo")
    listed = client.get("/v1/admin/models", headers=admin).json
    assert listed["serving"] == listed["champion"] == world.version
    assert [v["version"] for v in listed["versions"]] == [world.version, second]

    refused = client.post(f"/v1/admin/models/{second}/promote", headers=admin, json={})
    assert refused.status_code == 409 and refused.json["code"] == "promotion_refused"
    assert any("fairness not checked" in r for r in refused.json["errors"]["gates"])
    assert models_app.extensions["osmanthus.model"].version == world.version
    assert client.post(f"/v1/admin/models/{second}/promote", headers=admin,
                       json={"force": True}).status_code == 422
    assert client.post("/v1/admin/models/v9999/promote", headers=admin, json={}).status_code == 404

    forced = client.post(f"/v1/admin/models/{second}/promote", headers=admin,
                         json={"force": True, "why": "fairness checked by hand"})
    assert forced.status_code == 200 and forced.json["forced"] is True
    assert forced.json["serving"] == second == models_app.extensions["osmanthus.model"].version
    assert Registry(two_versions[0]).history()[-1]["by"] == "admin:mo"

    back = client.post("/v1/admin/models/rollback", headers=admin, json={"why": "test"})
    assert back.status_code == 200 and back.json["champion"] == world.version
    assert models_app.extensions["osmanthus.model"].version == world.version
    again = client.post("/v1/admin/models/rollback", headers=admin, json={})
    assert again.status_code == 409


def test_promotion_without_a_configured_snapshot_is_a_clear_409(served_client, auth, world):
    response = served_client.post(f"/v1/admin/models/{world.version}/promote",
                                  headers=auth.admin(), json={})
    assert response.status_code == 409 and response.json["code"] == "no_validation_snapshot"
    assert "OSMANTHUS_VALIDATION_FEATURES" in response.json["errors"]


def test_another_worker_follows_a_model_change(models_app, two_versions, served_config, world):
    from service.app import create_app
    from tests.service.conftest import Auth

    root, second, _ = two_versions
    other = create_app(served_config.with_(registry_dir=root))
    try:
        models_app.test_client().post(f"/v1/admin/models/{second}/promote",
                                      headers=Auth(models_app).admin(),
                                      json={"force": True, "why": "test"})
        assert other.extensions["osmanthus.model"].version == world.version
        other.test_client().get("/healthz")
        assert other.extensions["osmanthus.model"].version == second
    finally:
        other.extensions["osmanthus.engine"].dispose()


# --- perks ----------------------------------------------------------------------------------
def test_a_perk_change_is_a_new_policy_version(served_app, served_client, auth, served_config,
                                               monkeypatch):
    from service.api import admin_models
    from service.app import create_app

    engine = served_app.extensions["osmanthus.engine"]
    listed = served_client.get("/v1/admin/perks", headers=auth.admin()).json["perks"]
    assert {p["perk_id"]: p["policy_version"] for p in listed} == {
        "bike-deposit-free": 1, "library-deposit-free": 1, "hospital-pay-later": 1,
        "permit-fast-track": 1}
    other = create_app(served_config)  # a second worker on the same database

    response = served_client.put("/v1/admin/perks/bike-deposit-free", headers=auth.admin(),
                                 json={"min_score": 640, "conditions": ["no_active_court_listing"]})
    assert response.status_code == 200
    assert response.json["policy_version"] == 2 and response.json["min_score"] == 640
    served = served_app.extensions["osmanthus.perks"].perk("bike-deposit-free")
    assert (served.policy_version, served.min_score) == (2, 640)

    history = served_client.get("/v1/admin/perks?history=true", headers=auth.admin()).json["perks"]
    bike = [(p["policy_version"], p["min_score"], p["active"]) for p in history
            if p["perk_id"] == "bike-deposit-free"]
    assert bike == [(1, 600, False), (2, 640, True)]
    assert _count(engine, perks) == 5

    monkeypatch.setattr(admin_models, "PERKS_CHECK_SECONDS", 0.0)
    other.test_client().get("/healthz")
    assert other.extensions["osmanthus.perks"].perk("bike-deposit-free").min_score == 640
    other.extensions["osmanthus.engine"].dispose()
    restarted = create_app(served_config)
    assert restarted.extensions["osmanthus.perks"].perk("bike-deposit-free").policy_version == 2
    restarted.extensions["osmanthus.engine"].dispose()

    for body, field in [({"min_score": 2000, "conditions": []}, "min_score"),
                        ({"min_score": 600, "conditions": ["be_nice"]}, "conditions"),
                        ({"conditions": []}, "min_score")]:
        bad = served_client.put("/v1/admin/perks/bike-deposit-free", headers=auth.admin(),
                                json=body)
        assert bad.status_code == 422 and field in bad.json["errors"], body
    assert served_client.put("/v1/admin/perks/nope", headers=auth.admin(), json={
        "min_score": 600, "conditions": []}).status_code == 404


def test_the_openapi_document_describes_the_admin_api(served_client):
    spec = served_client.get("/openapi.json").json
    admin = {path for path in spec["paths"] if path.startswith("/v1/admin")}
    assert admin == {
        "/v1/admin/feeds", "/v1/admin/feeds/{feed_id}/quarantine", "/v1/admin/disputes",
        "/v1/admin/disputes/{dispute_id}", "/v1/admin/disputes/{dispute_id}/resolution",
        "/v1/admin/reviews", "/v1/admin/reviews/{review_id}",
        "/v1/admin/reviews/{review_id}/decision", "/v1/admin/rescore", "/v1/admin/rescore-all",
        "/v1/admin/rescore-all/{run_id}",
        "/v1/admin/repairs", "/v1/admin/repairs/{repair_id}",
        "/v1/admin/repairs/{repair_id}/decision",
        "/v1/admin/models", "/v1/admin/models/{version}/promote", "/v1/admin/models/rollback",
        "/v1/admin/perks", "/v1/admin/perks/{perk_id}"}
    upload = spec["paths"]["/v1/admin/feeds"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    for path in admin:
        for operation in spec["paths"][path].values():
            if isinstance(operation, dict) and "responses" in operation:
                assert {"401", "403"} <= set(operation["responses"]), path
