"""A single decision answered in front of Flask (`api.partner_front`) is the route's answer:
the same status, body and headers for a yes, a no, a refusal, a bad body, a missing or unknown
key and a breached limit; every decision it answers has exactly one audit entry; and what it
does not take on reaches Flask before anything was counted or audited."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.api.partner_front import DecisionsInFront
from service.store.tables import audit_entries
from tests.service.conftest import Auth
from tests.service.test_partner import BIKES, grant, set_latest

ROUTES = ("front", "flask")
PATH = "/v1/partner/eligibility"


def front_of(app) -> DecisionsInFront:
    """The front layer in the app's WSGI chain (under `SafeHeaders`)."""
    layer = app.wsgi_app
    while not isinstance(layer, DecisionsInFront):
        layer = layer.wrapped
    return layer


@pytest.fixture
def asking(monkeypatch):
    """`asking(app, route)` → a function posting to the eligibility endpoint that answers by
    `route` ("front": asserts the front layer answered without Flask; "flask": the front layer
    steps aside, as for a request it does not take on)."""

    def make(app, route: str):
        front = front_of(app)
        reached_flask: list[str] = []
        flask_app = front.wrapped

        def to_flask(environ, start_response):
            reached_flask.append(environ["PATH_INFO"])
            return flask_app(environ, start_response)

        monkeypatch.setattr(front, "wrapped", to_flask)
        if route == "flask":
            monkeypatch.setattr(front, "_question", lambda environ: None)
        client = app.test_client()

        def ask(headers: dict, body: dict, *, falls_through: bool = False):
            reached_flask.clear()
            response = client.post(PATH, headers=headers, json=body)
            if route == "front":
                assert bool(reached_flask) == falls_through, (response.status_code,
                                                              response.json)
            return response

        return ask

    return make


def entries_of(app) -> int:
    with app.extensions["osmanthus.engine"].connect() as connection:
        return connection.execute(select(func.count()).select_from(audit_entries)).scalar_one()


def decision_entries(app, decision_id: str) -> int:
    with app.extensions["osmanthus.engine"].connect() as connection:
        return sum(1 for row in connection.execute(select(audit_entries.c.detail))
                   if row.detail.get("decision_id") == decision_id)


def same_answer(front, flask, *, variable: tuple[str, ...] = ()) -> None:
    """Status, headers (every name and value) and body alike, but for `variable` body fields
    (a decision id is new each time) and the length they may change."""
    assert front.status_code == flask.status_code
    assert {k: v for k, v in front.headers if k != "Content-Length"} == \
        {k: v for k, v in flask.headers if k != "Content-Length"}
    mine, theirs = front.json, flask.json
    assert set(mine) == set(theirs)
    assert {k: v for k, v in mine.items() if k not in variable} == \
        {k: v for k, v in theirs.items() if k not in variable}
    if not variable:
        assert front.get_data() == flask.get_data()


def test_yes_and_no_are_the_routes_answers_each_audited_once(served_app, asking, people_keys):
    high, low = people_keys[20], people_keys[21]
    set_latest(served_app, high, 720.0)
    set_latest(served_app, low, 420.0)
    key = Auth(served_app).partner("city-bikes")
    answers = {}
    for route in ROUTES:
        ask = asking(served_app, route)
        for person, expected in ((high, "yes"), (low, "no")):
            before = entries_of(served_app)
            response = ask(key, {"consent_token": grant(served_app, person), "perk_id": BIKES})
            assert response.status_code == 200 and response.json["eligible"] == expected
            assert entries_of(served_app) == before + 1
            assert decision_entries(served_app, response.json["decision_id"]) == 1
            answers[route, expected] = response
    for expected in ("yes", "no"):
        same_answer(answers["front", expected], answers["flask", expected],
                    variable=("decision_id", "expires_at"))
        assert answers["front", expected].headers["Cache-Control"] == "no-store"


def test_a_refusal_is_the_routes_403_and_audited_once(served_app, asking, people_keys):
    key = Auth(served_app).partner("city-bikes")
    answers = {}
    for route in ROUTES:
        before = entries_of(served_app)
        token = grant(served_app, people_keys[22], revoked=True)
        answers[route] = asking(served_app, route)(key, {"consent_token": token,
                                                         "perk_id": BIKES})
        assert answers[route].status_code == 403
        assert answers[route].json["code"] == "consent_revoked"
        assert entries_of(served_app) == before + 1
    same_answer(answers["front"], answers["flask"])


@pytest.mark.parametrize("body, field", [
    ({"consent_token": "t"}, "perk_id"),
    ({"consent_token": "", "perk_id": BIKES}, "consent_token"),
    ({"consent_token": "t", "perk_id": BIKES, "score": 1}, "score"),
    ({"consent_token": "t\x00", "perk_id": BIKES}, "consent_token"),  # the guard's refusal
])
def test_a_bad_body_is_flasks_422_naming_the_field(served_app, asking, body, field):
    key = Auth(served_app).partner("city-bikes")
    before = entries_of(served_app)
    answers = {route: asking(served_app, route)(key, body, falls_through=True)
               for route in ROUTES}
    assert answers["front"].status_code == 422 and field in answers["front"].json["errors"]
    same_answer(answers["front"], answers["flask"])
    assert entries_of(served_app) == before


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "osk_not-a-key"}],
                         ids=["missing", "unknown"])
def test_a_missing_or_unknown_key_is_the_routes_401(served_app, asking, people_keys,
                                                     headers):
    token = grant(served_app, people_keys[23])
    before = entries_of(served_app)
    answers = {route: asking(served_app, route)(headers, {"consent_token": token,
                                                          "perk_id": BIKES})
               for route in ROUTES}
    assert answers["front"].status_code == 401
    same_answer(answers["front"], answers["flask"])
    assert entries_of(served_app) == before


def test_the_limit_is_counted_once_a_request_and_breached_alike(served_apps, asking,
                                                                  people_keys):
    """3 a minute: a yes, a bad body (counted by Flask, not also in front), a yes, then 429
    with Retry-After — whichever way the requests are answered."""
    app = served_apps(partner_rate_limit="3/minute")
    answers = {}
    for route in ROUTES:
        ask = asking(app, route)
        key = Auth(app).partner("city-bikes")  # a new key: a bucket of its own
        question = {"consent_token": grant(app, people_keys[24]), "perk_id": BIKES}
        statuses = [ask(key, question).status_code,
                    ask(key, {"perk_id": BIKES}, falls_through=True).status_code,
                    ask(key, question).status_code]
        before = entries_of(app)
        answers[route] = ask(key, question)
        assert statuses == [200, 422, 200] and answers[route].status_code == 429
        assert entries_of(app) == before, "a refused request is not decided nor audited"
        assert 1 <= int(answers[route].headers["Retry-After"]) <= 60
    same_answer(answers["front"], answers["flask"])


def test_an_unexpected_error_is_the_routes_500_with_an_incident(served_app, asking,
                                                                 people_keys, monkeypatch):
    from service.api import partner, partner_front

    def broken(*_args, **_kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(partner_front, "decide", broken)
    monkeypatch.setattr(partner, "decide", broken)
    key = Auth(served_app).partner("city-bikes")
    question = {"consent_token": grant(served_app, people_keys[25]), "perk_id": BIKES}
    answers = {route: asking(served_app, route)(key, question) for route in ROUTES}
    assert answers["front"].status_code == 500
    assert "database" not in answers["front"].get_data(as_text=True)
    same_answer(answers["front"], answers["flask"], variable=("message",))


def test_what_the_front_does_not_take_on_reaches_flask_unchanged(served_app, people_keys):
    """A query string, another content type, a trailing slash: Flask answers (same body)."""
    client = served_app.test_client()
    key = Auth(served_app).partner("city-bikes")
    body = {"consent_token": grant(served_app, people_keys[26]), "perk_id": BIKES}
    assert client.post(PATH + "?x=1", headers=key, json=body).status_code == 200
    assert client.post(PATH + "/", headers=key, json=body).status_code == 200
    response = client.post(PATH, headers={**key, "Content-Type": "text/plain"},
                           data=b'{"consent_token": "t", "perk_id": "p"}')
    assert response.status_code == 422 and "consent_token" in response.json["errors"]


def flask_spy(app, monkeypatch) -> list[str]:
    """The paths of the requests the front layer handed to Flask."""
    front, reached = front_of(app), []
    flask_app = front.wrapped
    monkeypatch.setattr(front, "wrapped", lambda environ, start_response: (
        reached.append(environ["PATH_INFO"]) or flask_app(environ, start_response)))
    return reached


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def limit_storage(request) -> str | None:
    from tests.service.test_limits import redis_url

    return None if request.param == "memory" else redis_url()


def test_decisions_in_front_and_through_flask_share_one_count(served_apps, people_keys,
                                                               monkeypatch, limit_storage):
    """5 a minute: 3 decisions in front and 2 through Flask-Limiter are the 5; the 6th is
    refused whichever way it comes (one bucket, in memory and on Redis)."""
    app = served_apps(partner_rate_limit="5/minute", redis_url=limit_storage)
    reached_flask, client = flask_spy(app, monkeypatch), app.test_client()
    key = Auth(app).partner("city-bikes")
    question = {"consent_token": grant(app, people_keys[27]), "perk_id": BIKES}
    statuses = [client.post(path, headers=key, json=question).status_code
                for path in (PATH, PATH + "/", PATH, PATH + "/", PATH)]
    assert statuses == [200] * 5 and reached_flask == [PATH + "/"] * 2
    assert client.post(PATH, headers=key, json=question).status_code == 429
    assert client.post(PATH + "/", headers=key, json=question).status_code == 429
    assert len(reached_flask) == 3, "the 429 in front is the front's own"


@pytest.mark.parametrize("fail_open", [True, False], ids=["open", "closed"])
def test_with_redis_down_a_decision_is_flask_limiters_to_count(served_apps, people_keys,
                                                               monkeypatch, fail_open):
    """A dead Redis: the front leaves the decision to Flask before deciding anything, and
    Flask-Limiter fails open (counting in memory: the 3rd of 2 a minute is a 429) or closed
    (503 with Retry-After, nothing audited)."""
    app = served_apps(partner_rate_limit="2/minute", redis_url="redis://127.0.0.1:1/0",
                      rate_limit_fail_open=fail_open)
    reached_flask, client = flask_spy(app, monkeypatch), app.test_client()
    key = Auth(app).partner("city-bikes")
    question = {"consent_token": grant(app, people_keys[28]), "perk_id": BIKES}
    before = entries_of(app)
    statuses = [client.post(PATH, headers=key, json=question) for _ in range(3)]
    assert reached_flask == [PATH] * 3
    if fail_open:
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert entries_of(app) == before + 2
    else:
        assert [r.status_code for r in statuses] == [503] * 3
        assert all(r.headers["Retry-After"] for r in statuses)
        assert entries_of(app) == before
