"""Citizens and admins signed in by the city's OpenID Connect provider (service/rights/oidc.py),
against a provider these tests start (tests/service/oidc_provider.py)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time

import jwt
import pytest

from features.identity import id_problem, make_resident_id, person_key
from service.rights import oidc
from tests.service.oidc_provider import AUDIENCE, Provider, silent_issuer

RESIDENT = make_resident_id(110101, dt.date(1988, 5, 17), 123)
ADMIN_GROUPS = {"groups": ["staff", "osmanthus-admin"]}
ME, ADMIN = "/v1/me/records", "/v1/admin/models"


@pytest.fixture
def provider():
    made = Provider()
    yield made
    made.stop()


def _oidc(config, issuer: str, **settings):
    return config.with_(oidc_issuer=issuer, oidc_audience=AUDIENCE, **settings)


@pytest.fixture
def app(config, provider):
    """The plain app (no model), signing in through `provider` too."""
    from service.app import create_app

    made = create_app(_oidc(config, provider.issuer))
    yield made
    made.extensions["osmanthus.engine"].dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _envelope(response, status: int) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["status"] == status and body["code"] and body["message"], body
    return body


def test_a_provider_citizen_is_the_person_key_of_their_id_number(app, provider):
    from service.rights.auth import citizen_of

    config = app.extensions["osmanthus.config"]
    for alg in ("ES256", "RS256"):
        token = provider.token(alg, resident_id=RESIDENT)
        assert citizen_of(config, f"Bearer {token}") == person_key(RESIDENT)


def test_a_provider_admin_reaches_admin_endpoints_and_is_named_by_sub(app, provider):
    from service.rights.auth import decode_token

    client = app.test_client()
    token = provider.token("RS256", sub="ops.lin", **ADMIN_GROUPS)
    assert client.get(ADMIN, headers=bearer(token)).status_code == 200
    claims = decode_token(app.extensions["osmanthus.config"], token, "admin")
    assert claims["sub"] == "ops.lin" and claims["role"] == "admin"
    spaced = provider.token(sub="ops.wu", groups="staff osmanthus-admin")  # a string claim
    assert client.get(ADMIN, headers=bearer(spaced)).status_code == 200


def test_the_service_own_tokens_keep_working_beside_the_provider(app, provider):
    from service.rights.auth import issue_token

    config = app.extensions["osmanthus.config"]
    client = app.test_client()
    own = issue_token(config, "citizen", person_key(RESIDENT))
    theirs = provider.token(resident_id=RESIDENT)
    assert client.get(ME, headers=bearer(own)).status_code == 200
    assert client.get(ME, headers=bearer(theirs)).status_code == 200
    assert client.get(ADMIN, headers=bearer(issue_token(config, "admin", "ops"))).status_code == 200


def _hs256(payload: dict, header: dict, key: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _claims(provider: Provider, **changes) -> dict:
    now = int(time.time())
    return {"iss": provider.issuer, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 300,
            "resident_id": RESIDENT, **changes}


def _tampered(provider: Provider) -> str:
    header, payload, signature = provider.token(resident_id=RESIDENT).split(".")
    other = make_resident_id(110101, dt.date(1970, 1, 1), 555)
    forged = json.dumps(_claims(provider, resident_id=other)).encode()
    return ".".join([header, base64.urlsafe_b64encode(forged).rstrip(b"=").decode(), signature])


def _unknown_kid(provider: Provider) -> str:
    kid = provider.add_key("ES256")
    token = provider.token(kid=kid, resident_id=RESIDENT)
    del provider.keys[kid]  # signed by a key the provider does not publish
    return token


BAD_CITIZEN_TOKENS = {
    "wrong issuer": lambda p: p.token(resident_id=RESIDENT, iss="https://evil.example"),
    "wrong audience": lambda p: p.token(resident_id=RESIDENT, aud="someone-else"),
    "expired": lambda p: p.token(resident_id=RESIDENT, exp=int(time.time()) - 120),
    "not yet valid": lambda p: p.token(resident_id=RESIDENT, nbf=int(time.time()) + 600),
    "issued in the future": lambda p: p.token(resident_id=RESIDENT, iat=int(time.time()) + 600),
    "alg none": lambda p: jwt.encode(_claims(p), None, algorithm="none",
                                     headers={"kid": p.kid("ES256")}),
    "HS256 signed with the public key": lambda p: _hs256(
        _claims(p), {"alg": "HS256", "typ": "JWT", "kid": p.kid("RS256")},
        p.public_pem(p.kid("RS256"))),
    "ES256 header on the RSA key": lambda p: _hs256(
        _claims(p), {"alg": "ES256", "typ": "JWT", "kid": p.kid("RS256")}, b"x"),
    "unknown kid": lambda p: _unknown_kid(p),
    "no kid": lambda p: jwt.encode(_claims(p), p.keys[p.kid("ES256")][1], algorithm="ES256"),
    "tampered payload": _tampered,
    "missing sub": lambda p: p.token(resident_id=RESIDENT, drop=("sub",)),
    "missing exp": lambda p: p.token(resident_id=RESIDENT, drop=("exp",)),
    "missing iat": lambda p: p.token(resident_id=RESIDENT, drop=("iat",)),
    "an invalid ID number": lambda p: p.token(resident_id=RESIDENT[:-1] + "0"
                                              if RESIDENT[-1] != "0" else RESIDENT[:-1] + "1"),
    "an ID number that is not a string": lambda p: p.token(resident_id=110101198805171234),
    "a payload nested too deep to read": lambda p: ".".join(
        base64.urlsafe_b64encode(part).decode().rstrip("=")
        for part in (b'{"alg":"ES256"}', b"[" * 2000 + b"]" * 2000, b"sig")),
}


@pytest.mark.parametrize("name", BAD_CITIZEN_TOKENS)
def test_bad_provider_tokens_are_a_401_in_the_envelope(app, provider, name):
    token = BAD_CITIZEN_TOKENS[name](provider)
    response = app.test_client().get(ME, headers=bearer(token))
    body = _envelope(response, 401)
    assert RESIDENT not in response.get_data(as_text=True)
    assert body["code"] == "unauthenticated"


def test_a_provider_token_naming_no_citizen_is_a_403(app, provider):
    token = provider.token(**ADMIN_GROUPS)  # an admin's token: no ID number in it
    _envelope(app.test_client().get(ME, headers=bearer(token)), 403)


@pytest.mark.parametrize("claims", [{}, {"groups": ["staff"]}, {"groups": "staff"},
                                    {"groups": {"osmanthus-admin": True}},
                                    {"roles": ["osmanthus-admin"]}])
def test_a_provider_token_without_the_admin_role_is_a_403_on_admin_endpoints(app, provider,
                                                                             claims):
    token = provider.token(resident_id=RESIDENT, **claims)
    _envelope(app.test_client().get(ADMIN, headers=bearer(token)), 403)


def test_an_admin_name_of_the_wrong_shape_is_a_401(app, provider):
    token = provider.token(sub="x" * 65, **ADMIN_GROUPS)
    _envelope(app.test_client().get(ADMIN, headers=bearer(token)), 401)


def test_a_rotated_provider_key_is_picked_up(app, provider, monkeypatch):
    client = app.test_client()
    assert client.get(ME, headers=bearer(provider.token(resident_id=RESIDENT))).status_code == 200
    fetched = provider.jwks_fetches
    old = provider.token(resident_id=RESIDENT)
    new_kid = provider.rotate("ES256")
    monkeypatch.setattr(oidc.provider_of(app.extensions["osmanthus.config"]).keys,
                        "cooldown_duration", 0)  # the last fetch was a moment ago
    new = provider.token(kid=new_kid, resident_id=RESIDENT)
    assert client.get(ME, headers=bearer(new)).status_code == 200
    assert provider.jwks_fetches == fetched + 1  # the unknown kid refetched the key set once
    assert client.get(ME, headers=bearer(new)).status_code == 200
    assert provider.jwks_fetches == fetched + 1  # and then it is cached
    # the provider dropped the old key from its set: its tokens stop with the refetched set
    _envelope(client.get(ME, headers=bearer(old)), 401)


def test_made_up_kids_cannot_make_a_stream_of_fetches(app, provider):
    client = app.test_client()
    assert client.get(ME, headers=bearer(provider.token(resident_id=RESIDENT))).status_code == 200
    fetched = provider.jwks_fetches
    for _ in range(20):
        kid = provider.add_key("ES256")
        token = provider.token(kid=kid, resident_id=RESIDENT)
        del provider.keys[kid]
        _envelope(client.get(ME, headers=bearer(token)), 401)
    assert provider.jwks_fetches == fetched  # within the cooldown: no fetch at all


def test_a_provider_that_lies_about_its_issuer_is_not_trusted(app, provider):
    provider.discovery_issuer = "https://someone-else.example"
    response = app.test_client().get(ME, headers=bearer(provider.token(resident_id=RESIDENT)))
    _envelope(response, 503)
    assert provider.jwks_fetches == 0


def test_a_provider_listing_only_symmetric_algorithms_is_not_trusted(app, provider):
    provider.algorithms = ["HS256", "none"]
    response = app.test_client().get(ME, headers=bearer(provider.token(resident_id=RESIDENT)))
    _envelope(response, 503)


def test_a_stopped_provider_is_a_503_with_retry_after_not_a_500(app, provider):
    token = provider.token(resident_id=RESIDENT)
    provider.stop()
    response = app.test_client().get(ME, headers=bearer(token))
    body = _envelope(response, 503)
    assert response.headers["Retry-After"] and "sign-in" in body["message"]
    own = app.extensions["osmanthus.config"]
    from service.rights.auth import issue_token

    mine = issue_token(own, "citizen", person_key(RESIDENT))  # the service's tokens still work
    assert app.test_client().get(ME, headers=bearer(mine)).status_code == 200


def test_a_provider_that_never_answers_is_a_503_within_the_timeout(config, provider):
    from service.app import create_app

    issuer, listener = silent_issuer()
    try:
        app = create_app(_oidc(config, issuer, oidc_timeout=0.5))
        token = jwt.encode(_claims(provider, iss=issuer, resident_id=RESIDENT),
                           provider.keys[provider.kid("ES256")][1], algorithm="ES256",
                           headers={"kid": provider.kid("ES256")})
        client = app.test_client()
        started = time.monotonic()
        _envelope(client.get(ME, headers=bearer(token)), 503)
        assert time.monotonic() - started < 10  # a hang guard, far above the 0.5 s timeout
        listener.setblocking(False)
        listener.accept()[0].close()  # the one connection discovery made
        _envelope(client.get(ME, headers=bearer(token)), 503)  # marked down: answered at once
        with pytest.raises(BlockingIOError):
            listener.accept()  # no second connection: nobody waited on the provider again
        app.extensions["osmanthus.engine"].dispose()
    finally:
        listener.close()


def test_keys_already_cached_keep_verifying_while_the_provider_is_down(app, provider,
                                                                     monkeypatch):
    client = app.test_client()
    token = provider.token(resident_id=RESIDENT)
    assert client.get(ME, headers=bearer(token)).status_code == 200
    unknown = provider.token(kid=provider.add_key("ES256"), resident_id=RESIDENT)
    provider.stop()
    monkeypatch.setattr(oidc.provider_of(app.extensions["osmanthus.config"]).keys,
                        "cooldown_duration", 0)
    _envelope(client.get(ME, headers=bearer(unknown)), 503)  # a refetch failed: marked down
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_the_id_number_is_in_no_log_line(app, provider, caplog):
    client = app.test_client()
    provider.discovery_issuer = "https://someone-else.example"
    with caplog.at_level("DEBUG"):
        client.get(ME, headers=bearer(provider.token(resident_id=RESIDENT)))
        provider.discovery_issuer = None
        client.get(ME, headers=bearer(provider.token(resident_id=RESIDENT[:-1] + "Q")))
    assert caplog.records  # the provider's trouble was logged
    assert all(RESIDENT[:17] not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("settings, problem", [
    ({"oidc_issuer": "https://id.example"}, "AUDIENCE"),
    ({"oidc_issuer": "ftp://id.example", "oidc_audience": "x"}, "https"),
    ({"oidc_issuer": "osmanthus", "oidc_audience": "x"}, "https"),
    ({"oidc_issuer": "https://id.example", "oidc_audience": "x",
      "oidc_citizen_claim_holds": "name"}, "CLAIM_HOLDS"),
    ({"oidc_issuer": "https://id.example", "oidc_audience": "x", "oidc_timeout": 0}, "TIMEOUT"),
])
def test_provider_settings_that_cannot_work_stop_start_up(config, settings, problem):
    from service.base.config import ConfigError

    with pytest.raises(ConfigError, match=problem):
        config.with_(**settings).check()


def test_production_needs_an_https_issuer():
    from service.base.config import Config, ConfigError, new_consent_key

    environment = {"OSMANTHUS_ENV": "production", "OSMANTHUS_PERSON_KEY": "k" * 32,
                   "OSMANTHUS_JWT_SECRET": "s" * 40, "DATABASE_URL": "postgresql://x/y",
                   "OSMANTHUS_CONSENT_KEY": new_consent_key(), "OSMANTHUS_OIDC_ISSUER": "http://id.example",
                   "OSMANTHUS_OIDC_AUDIENCE": "osmanthus-web", "OSMANTHUS_OIDC_LEEWAY": "10"}
    config = Config.from_env(environment)
    assert (config.oidc_issuer, config.oidc_audience, config.oidc_leeway) == (
        "http://id.example", "osmanthus-web", 10.0)
    with pytest.raises(ConfigError, match="https"):
        config.check()
    Config.from_env({**environment, "OSMANTHUS_OIDC_ISSUER": "https://id.example"}).check()


def test_a_provider_citizen_reads_their_own_score(served_apps, world, people_keys, provider):
    """End to end on a served app: the page is the one the service's own token of the same
    person key gets (the ID number from the provider hashes to the feeds' person key)."""
    import polars as pl

    from features.records import Source
    from service.rights.auth import issue_token

    ids = pl.read_parquet(world.feed(Source.SOCIAL_SECURITY), columns=["resident_id"])
    wanted = set(people_keys)
    resident = next(value for value in ids["resident_id"].unique().sort().to_list()
                    if id_problem(value) is None and person_key(value) in wanted)
    app = served_apps(oidc_issuer=provider.issuer, oidc_audience=AUDIENCE)
    client = app.test_client()
    theirs = client.get("/v1/me/score", headers=bearer(provider.token(resident_id=resident)))
    own = client.get("/v1/me/score", headers=bearer(issue_token(
        app.extensions["osmanthus.config"], "citizen", person_key(resident))))
    assert theirs.status_code == own.status_code == 200
    assert theirs.get_json() == own.get_json() and theirs.get_json()["score"]
    other = client.get("/v1/me/score", headers=bearer(provider.token(resident_id=RESIDENT)))
    assert other.status_code == 404 or other.get_json() != own.get_json()


def test_the_page_learns_the_provider_and_may_call_its_token_endpoint_only(app, provider):
    client = app.test_client()
    settings = client.get("/app/sign-in.json").get_json()["provider"]
    assert settings == {"issuer": provider.issuer, "client_id": AUDIENCE,
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "token_endpoint": f"{provider.issuer}/token"}
    policy = client.get("/app").headers["Content-Security-Policy"]
    assert f"connect-src 'self' {provider.issuer};" in policy
    assert policy.count(provider.issuer) == 1  # scripts, styles, frames: still this origin only


def test_without_a_provider_the_page_offers_the_pasted_token_alone(config):
    from service.app import create_app
    from service.web import POLICY

    plain = create_app(config)  # this module's `app` has a provider
    client = plain.test_client()
    assert client.get("/app/sign-in.json").get_json() == {"provider": None}
    assert client.get("/app").headers["Content-Security-Policy"] == POLICY
    plain.extensions["osmanthus.engine"].dispose()


def test_a_provider_that_is_down_is_not_offered(app, provider):
    provider.stop()
    client = app.test_client()
    assert client.get("/app/sign-in.json").get_json() == {"provider": None}
    from service.web import POLICY

    assert client.get("/app").headers["Content-Security-Policy"] == POLICY


def test_a_discovery_document_cannot_write_into_the_policy(app, provider, monkeypatch):
    from service.web import POLICY

    monkeypatch.setattr(oidc.provider_of(app.extensions["osmanthus.config"]).discovered(),
                        "endpoints", {"authorization_endpoint": f"{provider.issuer}/authorize",
                                      "token_endpoint": "https://x.example; script-src *"})
    assert app.test_client().get("/app").headers["Content-Security-Policy"] == POLICY


def test_scripts_and_styles_keep_the_fixed_policy(app, provider):
    from service.web import POLICY

    client = app.test_client()
    assert client.get("/app/static/app.js").headers["Content-Security-Policy"] == POLICY
    assert provider.issuer in client.get("/app").headers["Content-Security-Policy"]


def test_a_provider_citizen_access_log_verifies_with_the_rfc_reference(app, provider):
    """A citizen signed in by the city's provider (a `sub` that is not their person key) gets
    an access log whose sealed entries verify as served, checked with the independent RFC 6962
    implementation of test_transparency, and so does `verify-remote` with their token; no
    answer carries the person key."""
    from service.rights import audit
    from tests.service.test_transparency import (
        _all_leaves,
        _auditor,
        _seal,
        _signature_ok,
        mth,
        path,
    )

    mine, other = person_key(RESIDENT), "cd" * 32
    with app.extensions["osmanthus.engine"].begin() as connection:
        for n, who in enumerate((mine, other, mine, mine, other)):
            audit.append(connection, actor="partner:city-bikes", action="eligibility",
                         person_key=who, detail={"perk_id": "bike-deposit-free", "n": n})
    _seal(app)
    with app.extensions["osmanthus.engine"].begin() as connection:
        audit.append(connection, actor="partner:city-bikes", action="eligibility",
                     person_key=mine, detail={"n": 5})  # not yet sealed
    client = app.test_client()
    token = provider.token("ES256", resident_id=RESIDENT)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] != mine
    answer = client.get("/v1/me/access-log", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    log = answer.get_json()
    assert mine not in json.dumps(log)
    head, jwks = log["tree_head"], client.get("/.well-known/osmanthus-audit-keys.json").get_json()
    assert _signature_ok(head, jwks)
    leaves = _all_leaves(app)
    assert mth(leaves).hex() == head["root_hash"] and len(leaves) == head["tree_size"]
    sealed = [e for e in log["entries"] if e["sealed"]]
    assert [e["detail"]["n"] for e in log["entries"]] == [5, 3, 2, 0]
    assert len(sealed) == 3
    for entry in sealed:  # the leaf data as served IS the leaf, and its proof is RFC 6962's
        assert entry["leaf_data"].encode() == leaves[entry["leaf_index"]]
        assert entry["proof"] == [h.hex() for h in path(entry["leaf_index"], leaves)]
    lines = _auditor(client).run(None, token)
    assert "3 entries included" in lines[-1] and "1 not yet sealed" in lines[-1]
