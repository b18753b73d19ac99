"""Citizens' own pages: /v1/me/score, explanation, records, perks, review, access log."""

from __future__ import annotations

import datetime as dt
import math
import re

import polars as pl
import pytest
from sqlalchemy import delete, func, select

from features.records import Source
from features.rules import MINOR
from model.scorecard import BAND_ZH
from service.base import clock
from service.base.cache import page_key
from service.base.errors import ApiError
from service.rights import audit
from service.rights.pages import REASON_TEXT
from service.rights.review import decide_review
from service.scoring.score import latest, rescore
from service.store.tables import RECORD_TABLES, audit_entries, scores
from tests.service.conftest import DEMO_TODAY
from tests.service.test_disputes import (
    LISTING,
    MINOR_PENALTY,
    add_court_listing,
    add_minor_penalty,
    open_listing_dispute,
    spoil_latest_transit_month,
)

GET_PAGES = ("/v1/me/score", "/v1/me/explanation", "/v1/me/records", "/v1/me/perks",
             "/v1/me/disputes", "/v1/me/review", "/v1/me/consents", "/v1/me/access-log")
EVERY_ROUTE = [("get", path) for path in GET_PAGES] + [
    ("get", f"/v1/me/disputes/{'0' * 32}"), ("post", "/v1/me/disputes"),
    ("post", "/v1/me/review"), ("post", "/v1/me/consents"),
    ("delete", f"/v1/me/consents/{'0' * 32}")]


def test_the_score_page_shows_score_band_model_as_of_and_trend(served_app, served_client, auth,
                                                              people_keys):
    key = people_keys[0]
    stored = latest(served_app.extensions["osmanthus.engine"], key)
    response = served_client.get("/v1/me/score", headers=auth.citizen(key))
    assert response.status_code == 200
    page = response.get_json()
    assert page["score"] == math.floor(stored["score"])  # whole: cut, never rounded up
    assert page["band"] == stored["band"] and page["band_zh"] == BAND_ZH[stored["band"]]
    assert page["model_version"] == served_app.extensions["osmanthus.model"].version
    assert page["as_of"] == DEMO_TODAY.isoformat()
    assert [p["as_of"] for p in page["trend"]] == [DEMO_TODAY.isoformat()]
    assert page["trend"][-1]["score"] == math.floor(stored["score"])


def test_the_score_page_is_cached_until_a_rescore(served_app, served_client, auth, people_keys):
    key, headers = people_keys[0], auth.citizen(people_keys[0])
    cache = served_app.extensions["osmanthus.cache"]
    cached = page_key(served_app.extensions["osmanthus.model"].version, key, DEMO_TODAY)
    first = served_client.get("/v1/me/score", headers=headers).get_json()
    assert cache.get(cached) is not None
    cache.set(cached, b'{"marker": true}')  # served from the cache, not recomputed ...
    assert served_client.get("/v1/me/score", headers=headers).get_json() == {"marker": True}
    spoil_latest_transit_month(served_app, key)  # ... until a re-score drops the page
    assert cache.get(cached) is None
    after = served_client.get("/v1/me/score", headers=headers).get_json()
    assert after["score"] < first["score"]


def test_the_score_page_is_the_latest_row_and_the_trend_rendered_as_the_schema_would(
        served_app, served_client, auth, people_keys):
    """The page's one query gives what `latest` + `trend` give (the latest row is the newest
    id even when its as-of date is older, the trend the last 24 dates), rendered by
    `ScorePageSchema`."""
    import json

    from service.api.me_schemas import ScorePageSchema
    from service.rights.pages import score_brief, score_page
    from service.scoring.score import trend

    key, engine = people_keys[2], served_app.extensions["osmanthus.engine"]
    stored = {k: v for k, v in latest(engine, key).items() if k != "id"}
    with engine.begin() as connection:  # 30 earlier dates, then a re-score of an old date
        for months in [*range(1, 31), 7]:
            connection.execute(scores.insert().values(
                {**stored, "as_of": DEMO_TODAY - dt.timedelta(days=30 * months),
                 "score": stored["score"] - months, "run_id": None}))
    page = score_page(served_app, key)
    newest = latest(engine, key)
    points = [{**p, "score": math.floor(p["score"]), "band_zh": BAND_ZH[p["band"]]}
              for p in trend(engine, key)]
    assert page == {**score_brief(newest), "trend": points, "today": DEMO_TODAY}
    assert len(page["trend"]) == 24 and page["as_of"] < DEMO_TODAY
    rendered = json.dumps(ScorePageSchema().dump(page), ensure_ascii=False).encode()
    served_app.extensions["osmanthus.cache"].delete(
        page_key(served_app.extensions["osmanthus.model"].version, key, DEMO_TODAY))
    assert served_client.get("/v1/me/score", headers=auth.citizen(key)).data == rendered


def test_a_cached_score_page_is_answered_in_front_of_flask_exactly_as_flask_would(
        served_app, served_client, auth, people_keys):
    from werkzeug.test import Client

    from service.api.me import CachedScorePages

    key, headers = people_keys[0], auth.citizen(people_keys[0])
    from service.api.guard import SafeHeaders

    assert isinstance(served_app.wsgi_app, SafeHeaders)  # outermost: headers on every answer
    fast = served_app.wsgi_app.wrapped
    while not isinstance(fast, CachedScorePages):  # under other layers in front of Flask
        fast = fast.wrapped
    first = served_client.get("/v1/me/score", headers=headers)  # computed by the route, cached
    flask_only = Client(fast.wrapped).get("/v1/me/score", headers=headers)
    environ = {"PATH_INFO": "/v1/me/score", "REQUEST_METHOD": "GET",
               "HTTP_AUTHORIZATION": headers["Authorization"]}
    assert fast._cached(environ) == first.data  # ... and now served from the cache, here
    again = served_client.get("/v1/me/score", headers=headers)
    for response in (again, flask_only):
        assert (response.status_code, response.data, response.content_type) == \
            (first.status_code, first.data, first.content_type)
        assert response.headers["Content-Length"] == str(len(first.data))
    config = served_app.extensions["osmanthus.config"]
    from service.rights.auth import issue_token

    for refused in (auth.admin()["Authorization"], "Bearer not.a.token", "Basic abc",
                    "Bearer " + issue_token(config, "citizen", key, now=dt.datetime(2020, 1, 1,
                                                                                    tzinfo=dt.UTC)),
                    "Bearer " + issue_token(config, "citizen", "not-a-person-key")):
        assert fast._cached({**environ, "HTTP_AUTHORIZATION": refused}) is None
        assert served_client.get("/v1/me/score", headers={"Authorization": refused}
                                 ).status_code in (401, 403)
    assert fast._cached({**environ, "REQUEST_METHOD": "HEAD"}) is None
    prod = config.with_(env="production", jwt_secret="p" * 40)
    served_app.extensions["osmanthus.config"] = prod
    try:  # a development token is refused in production, in front of Flask too
        dev = issue_token(prod, "citizen", key, development=True)
        assert fast._cached({**environ, "HTTP_AUTHORIZATION": f"Bearer {dev}"}) is None
        assert fast._cached({**environ, "HTTP_AUTHORIZATION":
                             f"Bearer {issue_token(prod, 'citizen', key)}"}) == first.data
    finally:
        served_app.extensions["osmanthus.config"] = config


def test_someone_never_scored_is_scored_on_first_read(served_app, served_client, auth,
                                                      people_keys):
    key = people_keys[1]
    engine = served_app.extensions["osmanthus.engine"]
    with engine.begin() as connection:
        connection.execute(delete(scores).where(scores.c.person_key == key))
    page = served_client.get("/v1/me/score", headers=auth.citizen(key)).get_json()
    assert math.floor(latest(engine, key)["score"]) == page["score"]


def test_someone_with_no_record_gets_the_base_score_and_says_so(served_client, auth):
    headers = auth.citizen("f" * 64)
    assert served_client.get("/v1/me/score", headers=headers).status_code == 200
    body = served_client.get("/v1/me/explanation", headers=headers).get_json()
    assert body["no_record"] is True
    assert [r["feature"] for r in body["reasons"]] == ["no_record"]
    assert body["smaller_factors"] == [] and body["other_points"] == 0
    assert body["base_points"] + body["reasons"][0]["points"] + body["clip_points"] == (
        body["score"])  # the empty file's net points, whole, on the one reason
    assert served_client.get("/v1/me/records", headers=headers).get_json()["records"] == []


def test_the_explanation_adds_up_and_carries_both_languages(served_app, served_client, auth,
                                                            people_keys):
    key = people_keys[0]
    stored = latest(served_app.extensions["osmanthus.engine"], key)
    body = served_client.get("/v1/me/explanation", headers=auth.citizen(key)).get_json()
    assert body["base_points"] == math.floor(stored["base_points"])
    assert body["base_points_exact"] == stored["base_points"] and body["reasons"]
    total = (body["base_points"] + sum(r["points"] for r in body["reasons"])
             + body["other_points"] + body["clip_points"])
    assert total == body["score"] == math.floor(stored["score"])  # whole points that add up
    assert body["other_points"] == sum(r["points"] for r in body["smaller_factors"])
    assert abs(body["other_points"]) <= min(abs(r["points"]) for r in body["reasons"])
    assert all(abs(r["points"] - r["points_exact"]) <= 1
               for r in body["reasons"] + body["smaller_factors"])
    assert all(r["points"] == stored["reasons"]["points_shown"][r["feature"]]
               for r in body["reasons"] + body["smaller_factors"])  # the stored integers
    assert body["raw_score"] == pytest.approx(sum(stored["points"].values())
                                              + body["base_points_exact"])
    for reason in body["reasons"] + body["smaller_factors"]:
        assert reason["text_zh"] and reason["text_en"] and reason["text_zh"] != reason["text_en"]
    assert [r["points"] for r in body["reasons"]] == sorted(r["points"] for r in body["reasons"])


def test_a_row_stored_before_whole_points_shows_what_a_rescore_stores(served_app, served_client,
                                                                     auth, people_keys):
    """A score row written by an earlier version has exact points only: the page works its
    whole points and named reasons out with the same functions, so it shows exactly what the
    row stored now shows."""
    key, engine = people_keys[3], served_app.extensions["osmanthus.engine"]
    headers = auth.citizen(key)
    now = served_client.get("/v1/me/explanation", headers=headers).get_json()
    row = {k: v for k, v in latest(engine, key).items() if k != "id"}
    shown = ("score_shown", "base_shown", "points_shown", "clip_shown", "other_shown")
    old = {k: v for k, v in row["reasons"].items() if k not in shown}
    for side in ("reasons_lowering", "reasons_raising"):  # as the old rule named them: top 4
        old[side] = [{k: v for k, v in r.items() if k != "points_shown"}
                     for r in old[side]][:4]
    with engine.begin() as connection:
        connection.execute(scores.insert().values({**row, "reasons": old}))
    before = served_client.get("/v1/me/explanation", headers=headers).get_json()
    assert before == now


@pytest.mark.parametrize(("header", "expected"), [
    (None, "zh"), ("en", "en"), ("zh", "zh"), ("en-GB", "en"), ("fr", "zh"),
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-GB;q=0.9, zh;q=0.1", "en"),
    ("en;q=0.3, zh;q=0.5", "zh"), ("fr, en;q=0.5", "en"), ("en;q=0, zh;q=0.2", "zh"),
])
def test_accept_language_chooses_the_text(served_app, served_client, auth, people_keys, header,
                                          expected):
    key = people_keys[0]
    add_minor_penalty(served_app, key)
    headers = auth.citizen(key) | ({"Accept-Language": header} if header else {})
    body = served_client.get("/v1/me/explanation", headers=headers).get_json()
    assert body["language"] == expected
    assert all(r["text"] == r[f"text_{expected}"] for r in body["reasons"])
    records = served_client.get("/v1/me/records", headers=headers).get_json()["records"]
    minor = next(r for r in records if r["record_id"] == MINOR_PENALTY)
    assert minor["reason"] == minor[f"reason_{expected}"] == \
        REASON_TEXT[MINOR][0 if expected == "zh" else 1]


def test_the_records_page_shows_every_record_and_why_one_does_not_count(
        served_app, served_client, auth, people_keys):
    key = people_keys[0]
    add_minor_penalty(served_app, key)
    add_court_listing(served_app, key)
    engine = served_app.extensions["osmanthus.engine"]
    stored = {}
    with engine.connect() as connection:
        for source, table in RECORD_TABLES.items():
            stored[source.value] = set(connection.execute(
                select(table.c.record_id).where(table.c.person_key == key)).scalars())
    page = served_client.get("/v1/me/records", headers=auth.citizen(key)).get_json()
    shown: dict[str, set[str]] = {s.value: set() for s in Source}
    for record in page["records"]:
        shown[record["source"]].add(record["record_id"])
        assert (record["reason"] is None) == record["counts"] == record["can_dispute"]
        assert "person_key" not in record and "person_key" not in record["details"]
        assert record["dispute_state"] == "none"
    assert shown == stored and sum(map(len, stored.values())) == len(page["records"])
    assert page["counting"] + page["not_counting"] == len(page["records"])
    by_id = {r["record_id"]: r for r in page["records"]}
    assert by_id[MINOR_PENALTY]["counts"] is False
    assert by_id[MINOR_PENALTY]["reason_zh"] == REASON_TEXT[MINOR][0]
    assert by_id[LISTING]["counts"] is True and by_id[LISTING]["details"]["status"] == "active"
    dates = [r["date"] for r in page["records"]]
    assert dates == sorted(dates, reverse=True)


def _perks(client, headers) -> dict[str, dict]:
    return {p["perk_id"]: p for p in client.get("/v1/me/perks", headers=headers)
            .get_json()["perks"]}


def _perks_score(client, headers) -> int:
    return client.get("/v1/me/perks", headers=headers).get_json()["score"]


def test_perks_follow_the_score_and_conditions(served_app, served_client, auth, people_keys):
    perk_config = served_app.extensions["osmanthus.perks"]
    engine = served_app.extensions["osmanthus.engine"]
    for key in people_keys[:5]:
        row = latest(engine, key)
        shown = _perks(served_client, auth.citizen(key))
        assert set(shown) == {p.perk_id for p in perk_config.perks}
        for perk in perk_config.perks:
            mine = shown[perk.perk_id]
            assert mine["status"] == perk.decide(row["score"], row["reasons"]["features"])
            assert mine["points_needed"] == math.ceil(max(0.0, perk.min_score - row["score"]))
            if row["score"] < perk.min_score:  # whole numbers a citizen can add up
                assert _perks_score(served_client, auth.citizen(key)) + mine["points_needed"] == (
                    perk.min_score)
            assert mine["locked"] == (mine["status"] == "no")
            assert mine["name_zh"] == perk.name_zh and mine["partner_id"] == perk.partner_id
            if not mine["locked"]:
                assert mine["unlocked_by"] == []


def test_a_locked_perk_names_the_court_listing_that_would_unlock_it(served_app, served_client,
                                                                    auth, people_keys):
    engine = served_app.extensions["osmanthus.engine"]
    key = max(people_keys, key=lambda k: latest(engine, k)["score"])
    assert latest(engine, key)["score"] >= 600  # the bicycle perk's minimum
    headers = auth.citizen(key)
    add_court_listing(served_app, key)
    bike = _perks(served_client, headers)["bike-deposit-free"]
    assert bike["status"] == "no" and bike["points_needed"] == 0
    assert bike["conditions"] == [{"condition": "no_active_court_listing", "met": False,
                                   "text_zh": "无在列失信被执行记录",
                                   "text_en": "no active court-enforcement listing"}]
    assert [(u["source"], u["record_id"]) for u in bike["unlocked_by"]] == [("court", LISTING)]


def test_a_locked_perk_names_the_records_whose_clearing_reaches_its_minimum(
        served_app, served_client, auth, people_keys):
    engine = served_app.extensions["osmanthus.engine"]
    perk_config = served_app.extensions["osmanthus.perks"]
    transit = RECORD_TABLES[Source.TRANSIT]
    with engine.connect() as connection:
        riders = set(connection.execute(select(transit.c.person_key).distinct()).scalars())
    checked = 0
    for key in [k for k in people_keys if k in riders][:8]:
        headers = auth.citizen(key)
        costly = spoil_latest_transit_month(served_app, key)
        perks = _perks(served_client, headers)
        # what the person would score without that record: remove it and re-score
        with engine.begin() as connection:
            connection.execute(delete(transit).where(transit.c.record_id == costly))
        without = {"score": rescore(served_app, key)}
        features = latest(engine, key)["reasons"]["features"]
        for perk in perk_config.perks:
            mine = perks[perk.perk_id]
            listed = {u["record_id"]: u for u in mine["unlocked_by"]}
            if not mine["locked"]:
                continue
            expected = perk.decide(without["score"]["score"], features) == "yes"
            assert (costly in listed) == expected, (perk.perk_id, mine)
            if expected:
                checked += 1
                assert listed[costly]["score_without"] == math.floor(  # the page: whole
                    without["score"]["score"])
            for unlock in listed.values():
                assert unlock["score_without"] >= perk.min_score
    assert checked > 0  # the sample has at least one person a single record keeps locked out


BIKE = "bike-deposit-free"


def test_human_review_makes_only_the_named_perk_pending_until_decided(served_app, served_client,
                                                                      auth, people_keys):
    headers = auth.citizen(people_keys[0])
    engine = served_app.extensions["osmanthus.engine"]
    before = {p: v["status"] for p, v in _perks(served_client, headers).items()}
    assert served_client.get("/v1/me/review", headers=headers).get_json() == []
    response = served_client.post("/v1/me/review", headers=headers, json={
        "perk_id": BIKE, "reason": "请人工复核 / please review by a person"})
    assert response.status_code == 201 and response.get_json()["state"] == "pending"
    review_id = response.get_json()["review_id"]
    assert response.get_json()["requested_at"] is not None
    during = {p: v["status"] for p, v in _perks(served_client, headers).items()}
    assert during == {**before, BIKE: "pending"}  # the other perks are untouched
    again = served_client.post("/v1/me/review", headers=headers,
                               json={"perk_id": BIKE, "reason": "again"})
    assert again.status_code == 409
    now = clock.now(served_app)
    decided = decide_review(engine, review_id, "eligible", "收入已核实", by="admin:ops", now=now)
    assert decided["state"] == "decided" and decided["outcome"] == "eligible"
    shown = served_client.get(f"/v1/me/review/{review_id}", headers=headers).get_json()
    assert (shown["state"], shown["outcome"], shown["outcome_reason"]) == (
        "decided", "eligible", "收入已核实")
    # The reviewer's outcome replaces the score's answer for that perk only (PIPL Art. 24).
    after = {p: v["status"] for p, v in _perks(served_client, headers).items()}
    assert after == {**before, BIKE: "yes"}
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert [(e["action"], e["actor"]) for e in log[:2]] == [
        ("review_decided", "admin:ops"), ("review_requested", "citizen")]
    with pytest.raises(ApiError) as error:
        decide_review(engine, review_id, "eligible", "again", by="admin:ops", now=now)
    assert error.value.status == 409
    with pytest.raises(ApiError) as error:
        decide_review(engine, "e" * 32, "eligible", "x", by="admin:ops", now=now)
    assert error.value.status == 404
    with pytest.raises(ApiError) as error:
        decide_review(engine, review_id, "maybe", "x", by="admin:ops", now=now)
    assert error.value.status == 422 and "outcome" in error.value.errors


def test_a_review_request_can_be_withdrawn(served_app, served_client, auth, people_keys):
    headers, other = auth.citizen(people_keys[0]), auth.citizen(people_keys[1])
    before = _perks(served_client, headers)[BIKE]["status"]
    review_id = served_client.post("/v1/me/review", headers=headers, json={
        "perk_id": BIKE, "reason": "please"}).get_json()["review_id"]
    assert _perks(served_client, headers)[BIKE]["status"] == "pending"
    assert served_client.delete(f"/v1/me/review/{review_id}", headers=other).status_code == 404
    withdrawn = served_client.delete(f"/v1/me/review/{review_id}", headers=headers)
    assert withdrawn.status_code == 200 and withdrawn.get_json()["state"] == "withdrawn"
    assert _perks(served_client, headers)[BIKE]["status"] == before
    assert served_client.delete(f"/v1/me/review/{review_id}", headers=headers).status_code == 409
    log = served_client.get("/v1/me/access-log", headers=headers).get_json()["entries"]
    assert log[0]["action"] == "review_withdrawn"


@pytest.mark.parametrize(("body", "field"), [
    ({"perk_id": BIKE}, "reason"), ({"perk_id": BIKE, "reason": ""}, "reason"),
    ({"perk_id": BIKE, "reason": "  "}, "reason"),
    ({"perk_id": BIKE, "reason": "x" * 2001}, "reason"), ({"perk_id": BIKE, "reason": 5}, "reason"),
    ({"perk_id": BIKE, "reason": "\x00"}, "reason"),
    ({"perk_id": BIKE, "reason": "ok", "state": "decided"}, "state"),
    ({"reason": "ok"}, "perk_id"), ({"perk_id": "no-such-perk", "reason": "ok"}, "perk_id"),
    ({"perk_id": BIKE, "reason": "ok", "decision_id": "xyz"}, "decision_id"),
])
def test_a_bad_review_request_names_the_field(served_client, auth, people_keys, body, field):
    headers = auth.citizen(people_keys[0])
    response = served_client.post("/v1/me/review", headers=headers, json=body)
    envelope = response.get_json()
    assert response.status_code == 422 and envelope["code"] == "invalid_input"
    assert field in envelope["errors"]
    assert served_client.get("/v1/me/review", headers=headers).get_json() == []


def test_the_access_log_shows_who_asked_for_which_perk_and_the_answer(
        served_app, served_client, auth, people_keys):
    key, other = people_keys[0], people_keys[1]
    engine = served_app.extensions["osmanthus.engine"]
    with engine.begin() as connection:
        audit.append(connection, actor="partner:city-bikes", action="eligibility",
                     person_key=key, detail={"perk": "bike-deposit-free", "answer": "yes",
                                             "decision_id": "d-1"})
    log = served_client.get("/v1/me/access-log", headers=auth.citizen(key)).get_json()["entries"]
    assert len(log) == 1
    entry = log[0]
    assert entry["partner_id"] == "city-bikes" and entry["perk_id"] == "bike-deposit-free"
    assert entry["answer"] == "yes" and entry["action"] == "eligibility"
    assert dt.datetime.fromisoformat(entry["at"]).tzinfo is not None
    assert served_client.get("/v1/me/access-log",
                             headers=auth.citizen(other)).get_json()["entries"] == []
    # the citizen's own reads are not logged as someone else's
    for path in GET_PAGES:
        served_client.get(path, headers=auth.citizen(key))
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(audit_entries)).scalar()
    assert rows == 1


@pytest.mark.parametrize(("method", "path"), EVERY_ROUTE)
def test_only_a_citizen_token_reaches_me(served_app, served_client, auth, method, path):
    from service.rights.auth import issue_token

    config = served_app.extensions["osmanthus.config"]
    expired = issue_token(config, "citizen", "a" * 64,
                          now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    cases = [({}, 401), (auth.admin(), 403), (auth.partner(), 401),
             ({"Authorization": f"Bearer {expired}"}, 401),
             ({"Authorization": "Bearer not-a-token"}, 401)]
    for headers, status in cases:
        response = getattr(served_client, method)(path, headers=headers, json={})
        body = response.get_json()
        assert response.status_code == status, (headers, body)
        assert set(body) == {"code", "status", "message", "errors"}


def test_no_raw_id_or_person_key_in_any_response(served_app, served_client, auth, people_keys,
                                                 world):
    key = people_keys[0]
    headers = auth.citizen(key)
    add_court_listing(served_app, key)
    auth.partner("city-bikes")
    bodies = [
        open_listing_dispute(served_client, headers).get_data(as_text=True),
        served_client.post("/v1/me/consents", headers=headers, json={
            "partner_id": "city-bikes", "perks": ["bike-deposit-free"],
            "until": (clock.today(served_app) + dt.timedelta(days=30)).isoformat()}
        ).get_data(as_text=True),
        served_client.post("/v1/me/review", headers=headers, json={"reason": "please"})
        .get_data(as_text=True),
    ]
    for path in GET_PAGES:
        response = served_client.get(path, headers=headers)
        assert response.status_code == 200, path
        bodies.append(response.get_data(as_text=True))
    raw_ids = set()
    for source in Source:
        feed = pl.read_parquet(world.feed(source), columns=["resident_id"])
        raw_ids |= set(feed["resident_id"].drop_nulls().to_list())
    pattern = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
    for body in bodies:
        assert key not in body
        assert not pattern.search(body)
        assert not any(raw in body for raw in raw_ids)


def test_a_thin_file_is_told_the_rule_keeps_its_perks_locked_and_what_would_lift_it(
        served_app, served_client, auth):
    from service.rights.perks import THIN_FILE_CONDITION, THIN_FILE_EN, THIN_FILE_ZH

    newcomer = "f" * 64  # never scored, no record: an empty file, scored on the spot
    perks = _perks(served_client, auth.citizen(newcomer))
    for perk in served_app.extensions["osmanthus.perks"].perks:
        mine = perks[perk.perk_id]
        assert mine["status"] == "no" and mine["locked"]
        rule = [c for c in mine["conditions"] if c["condition"] == THIN_FILE_CONDITION]
        assert rule == [{"condition": THIN_FILE_CONDITION, "met": False,
                         "text_zh": THIN_FILE_ZH, "text_en": THIN_FILE_EN}]
        assert len(mine["conditions"]) == len(perk.conditions) + 1
    for word in ("social security", "transit", "positive record"):
        assert word in THIN_FILE_EN


def test_a_person_with_a_record_on_file_is_not_shown_the_thin_file_rule(
        served_app, served_client, auth, people_keys):
    from service.rights.perks import THIN_FILE_CONDITION, thin_file

    engine = served_app.extensions["osmanthus.engine"]
    key = next(k for k in people_keys if not thin_file(latest(engine, k)["reasons"]["features"]))
    perks = _perks(served_client, auth.citizen(key))
    assert all(c["condition"] != THIN_FILE_CONDITION
               for p in perks.values() for c in p["conditions"])
