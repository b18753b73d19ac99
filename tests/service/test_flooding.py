"""A partner replaying another partner's consent token cannot flood a citizen's access log,
and citizens are rate-limited too."""

from __future__ import annotations

from service.rights.eligibility import REFUSALS_PER_HOUR
from tests.service.conftest import Auth
from tests.service.test_partner import BIKES, ask, audit_rows, grant


def test_refusals_without_this_persons_consent_are_limited_and_summarised(served_app,
                                                                          people_keys):
    client, person = served_app.test_client(), people_keys[3]
    bikes = Auth(served_app).partner("city-bikes")
    library_token = grant(served_app, person, "city-library", (BIKES,))  # not bikes' consent
    before = len(audit_rows(served_app))
    statuses = [ask(client, bikes, library_token).status_code for _ in range(20)]
    assert statuses == [403] * REFUSALS_PER_HOUR + [429] * (20 - REFUSALS_PER_HOUR)
    limited = ask(client, bikes, library_token)
    assert limited.get_json()["code"] == "rate_limited" and limited.headers["Retry-After"]
    added = audit_rows(served_app)[before:]
    assert [row["action"] for row in added] == (["eligibility_refused"] * REFUSALS_PER_HOUR
                                                + ["eligibility_refusals_limited"])
    assert all(row["person_key"] == person for row in added)
    page = client.get("/v1/me/access-log", headers=Auth(served_app).citizen(person)).get_json()
    entries = page if isinstance(page, list) else page.get("entries", page)
    assert len(entries) <= REFUSALS_PER_HOUR + 1 + before  # not one per question asked
    # the partner's own consents are untouched by the limit on someone else's
    own = grant(served_app, person)
    assert ask(client, bikes, own).status_code == 200


def test_citizens_are_rate_limited_per_token(served_apps, people_keys):
    app = served_apps(citizen_rate_limit="5/minute")
    client, headers = app.test_client(), Auth(app).citizen(people_keys[0])
    statuses = [client.get("/v1/me/records", headers=headers).status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
    other = Auth(app).citizen(people_keys[1])
    assert client.get("/v1/me/records", headers=other).status_code == 200


def test_the_citizens_access_log_pages_through_everything(served_app, people_keys):
    """Newest first, `limit` at a time; `X-Next-Before` leads back to the very first entry."""
    from service.rights import audit

    person = people_keys[5]
    engine = served_app.extensions["osmanthus.engine"]
    with engine.begin() as connection:
        for n in range(7):
            audit.append(connection, actor="admin:ops", action="record_read",
                         person_key=person, detail={"n": n})
    client, headers = served_app.test_client(), Auth(served_app).citizen(person)
    seen, before = [], None
    for _ in range(10):
        query = {"limit": 3, **({"before": before} if before else {})}
        response = client.get("/v1/me/access-log", headers=headers, query_string=query)
        assert response.status_code == 200
        seen += [entry["detail"].get("n") for entry in response.get_json()["entries"]
                 if entry["action"] == "record_read"]
        before = response.headers.get("X-Next-Before")
        if before is None:
            break
    assert seen == list(range(6, -1, -1))  # all seven, newest first, each once
    bad = client.get("/v1/me/access-log", headers=headers, query_string={"limit": 0})
    assert bad.status_code == 422


def test_cached_score_pages_count_toward_the_citizens_limit(served_apps, people_keys,
                                                           monkeypatch):
    """`/v1/me/score` answered from the page cache in front of Flask is counted like any
    other citizen request; the answer past the limit is the 429 envelope."""
    from service.api.me import CachedScorePages

    app = served_apps(citizen_rate_limit="5/minute")
    client, headers = app.test_client(), Auth(app).citizen(people_keys[0])
    served = []
    original = CachedScorePages._cached

    def watched(self, environ):
        body = original(self, environ)
        served.append(body is not None)
        return body

    monkeypatch.setattr(CachedScorePages, "_cached", watched)
    statuses = [client.get("/v1/me/score", headers=headers).status_code for _ in range(7)]
    assert served[1:5] == [True] * 4  # the first fills the cache; the next four are cached
    assert statuses == [200] * 5 + [429, 429]
    limited = client.get("/v1/me/score", headers=headers)
    assert limited.get_json()["code"] == "rate_limited" and limited.headers["Retry-After"]
    assert client.get("/v1/me/records", headers=headers).status_code == 429  # one bucket
