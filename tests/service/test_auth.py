"""Tokens and keys: who may pass, and what a bad one gets."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from service.base.config import Config, new_consent_key
from service.base.errors import ApiError
from service.rights.auth import (
    AUDIENCE,
    bearer,
    decode_token,
    hash_api_key,
    issue_token,
    keyring_of,
    new_api_key,
)

DEV = Config()
PROD = Config(env="production", jwt_secret="production-secret-of-at-least-32-bytes!",
              consent_key=new_consent_key())
PK, PK2 = "a" * 64, "b" * 64  # person keys (a citizen token's subject must be one)


def test_a_token_round_trips_with_its_role_and_subject():
    claims = decode_token(DEV, issue_token(DEV, "citizen", PK), "citizen")
    assert claims["sub"] == PK and claims["role"] == "citizen"
    assert claims["aud"] == AUDIENCE["citizen"]


@pytest.mark.parametrize("make,status", [
    (lambda: issue_token(DEV, "admin", "ops"), 403),  # right signature, wrong role
    (lambda: issue_token(DEV, "citizen", PK, now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), 401),
    (lambda: issue_token(Config(jwt_secret="another-secret-of-at-least-32-bytes!!"), "citizen", PK), 401),
    (lambda: "not.a.token", 401),
    (lambda: jwt.encode({"sub": PK, "role": "citizen"}, DEV.jwt_secret, "HS256"), 401),
])
def test_bad_tokens_are_refused_with_the_right_status(make, status):
    with pytest.raises(ApiError) as caught:
        decode_token(DEV, make(), "citizen")
    assert caught.value.status == status


def test_development_tokens_are_refused_in_production_even_when_signed_right():
    token = issue_token(PROD, "citizen", PK, development=True)
    with pytest.raises(ApiError, match="development"):
        decode_token(PROD, token, "citizen")
    assert decode_token(PROD, issue_token(PROD, "citizen", PK), "citizen")["sub"] == PK


def test_a_development_token_from_the_development_keys_fails_in_production():
    with pytest.raises(ApiError):
        decode_token(PROD, issue_token(DEV, "citizen", PK, development=True), "citizen")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Token abc"])
def test_a_missing_bearer_header_is_a_401(header):
    with pytest.raises(ApiError) as caught:
        bearer(header)
    assert caught.value.status == 401


def test_api_keys_are_random_and_only_their_hash_is_kept():
    key1, hash1 = new_api_key()
    key2, _ = new_api_key()
    assert key1 != key2 and hash_api_key(key1) == hash1 and key1 not in hash1


# --- remembered verdicts (`verified_claims`): PyJWT stays the only verifier ---------------
CITIZEN_KEY = keyring_of(DEV).role_key("citizen", DEV.jwt_kid)


def _signed(payload: dict, headers: dict | None = None, secret: str | bytes = CITIZEN_KEY,
            algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm,
                      headers={"kid": DEV.jwt_kid, **(headers or {})})


NOW = int(dt.datetime.now(dt.UTC).timestamp())
GOOD = {"sub": PK, "role": "citizen", "aud": AUDIENCE["citizen"], "iss": DEV.jwt_issuer,
        "iat": NOW, "exp": NOW + 600}
REFUSED = {
    "expired": lambda: _signed({**GOOD, "exp": NOW - 1}),
    "not yet valid": lambda: _signed({**GOOD, "nbf": NOW + 600}),
    "another issuer": lambda: _signed({**GOOD, "iss": "someone-else"}),
    "no role": lambda: _signed({k: v for k, v in GOOD.items() if k != "role"}),
    "another secret": lambda: _signed(GOOD, secret="another-secret-of-at-least-32-bytes!!"),
    "HS384": lambda: _signed(GOOD, algorithm="HS384"),
    "the master secret itself": lambda: _signed(GOOD, secret=DEV.jwt_secret),
    "the admin key": lambda: _signed(GOOD, secret=keyring_of(DEV).role_key("admin", "1")),
    "no audience": lambda: _signed({k: v for k, v in GOOD.items() if k != "aud"}),
    "the admin audience": lambda: _signed({**GOOD, "aud": AUDIENCE["admin"]}),
    "an unknown kid": lambda: _signed(GOOD, headers={"kid": "nope"}),
    "a subject not a person key": lambda: _signed({**GOOD, "sub": "x" * 97}),
    "a subject with a surrogate": lambda: _signed({**GOOD, "sub": "\ud800" + "a" * 63}),
    "alg none": lambda: jwt.encode(GOOD, None, algorithm="none"),
    "payload swapped": lambda: ".".join([_signed(GOOD).split(".")[0],
                                         _signed({**GOOD, "sub": PK2}).split(".")[1],
                                         _signed(GOOD).split(".")[2]]),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_token_is_refused_every_time(name):
    token = REFUSED[name]()
    for _ in range(2):  # a refusal is never remembered as an acceptance
        with pytest.raises(ApiError) as caught:
            decode_token(DEV, token, "citizen")
        assert caught.value.status == 401


def test_a_remembered_token_still_expires(monkeypatch):
    import service.rights.auth as auth_module

    now = int(dt.datetime.now(dt.UTC).timestamp())  # not the module's NOW: collection was earlier
    token = _signed({**GOOD, "iat": now, "exp": now + 60})
    assert decode_token(DEV, token, "citizen")["sub"] == PK
    assert decode_token(DEV, token, "citizen")["sub"] == PK  # the second time, remembered
    assert auth_module._accepted.cache_info().hits >= 1
    monkeypatch.setattr(auth_module.time, "time", lambda: now + 61)
    with pytest.raises(ApiError) as caught:
        decode_token(DEV, token, "citizen")
    assert caught.value.status == 401 and "expired" in caught.value.message


def test_remembered_claims_are_copies():
    token = issue_token(DEV, "citizen", PK)
    decode_token(DEV, token, "citizen")["sub"] = "someone else"
    assert decode_token(DEV, token, "citizen")["sub"] == PK


def test_the_key_is_chosen_by_the_claimed_role_and_held_to_the_verified_one(monkeypatch):
    """`_routing` reads the claimed role and kid without trusting them; if it ever read another
    role than PyJWT's verified claims (a parser difference), the token is refused."""
    import service.rights.auth as auth_module

    # signed with the citizen key for the citizen audience, but its role claim says admin
    mixed = _signed({**GOOD, "role": "admin", "sub": "alice"})
    with pytest.raises(ApiError):  # routed by its claim (admin): the admin key refuses it
        decode_token(DEV, mixed, "admin")
    monkeypatch.setattr(auth_module, "_routing", lambda _token: ("citizen", DEV.jwt_kid))
    auth_module._accepted.cache_clear()
    with pytest.raises(ApiError) as caught:  # routed to the citizen key: verified, yet refused
        decode_token(DEV, mixed, "admin")
    assert caught.value.status == 401
    auth_module._accepted.cache_clear()


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "é.é.é", "W10.W10.x",
                                   "[" * 5000 + "." + "e30.x"])
def test_what_is_not_a_token_is_a_401(token):
    import base64

    if token.startswith("["):  # a header nested deeper than json can parse
        token = base64.urlsafe_b64encode(b"[" * 5000).decode() + ".e30.x"
    with pytest.raises(ApiError) as caught:
        decode_token(DEV, token, "citizen")
    assert caught.value.status == 401


# --- separate keys, asymmetric consent tokens, rotation by kid ------------------------------
CONSENT_ID = "c" * 32


def test_consent_tokens_are_ed25519_and_verify_with_the_public_key_alone():
    token = issue_token(DEV, "consent", CONSENT_ID, claims={"partner": "p", "perks": ["x"]})
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    public = keyring_of(DEV).consent_public[DEV.consent_kid]
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE["consent"])
    assert claims["sub"] == CONSENT_ID
    assert decode_token(DEV, token, "consent")["partner"] == "p"


def test_a_verifier_cannot_mint_a_consent_token():
    """What a partner holds (the public key, the JWKS) signs nothing the service accepts:
    neither as an HMAC secret (the classic alg confusion) nor under any other algorithm."""
    from cryptography.hazmat.primitives import serialization

    public = keyring_of(DEV).consent_public[DEV.consent_kid]
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = {"sub": CONSENT_ID, "role": "consent", "aud": AUDIENCE["consent"],
               "iss": DEV.jwt_issuer, "exp": NOW + 600, "partner": "p", "perks": ["x"]}
    import hashlib
    import hmac as hmac_module

    for forged in (
        _hs256_with_raw_key(payload, pem),
        _hs256_with_raw_key(payload, hmac_module.new(pem, b"", hashlib.sha256).digest()),
        _signed(payload),  # the citizen key
        jwt.encode(payload, new_consent_key(), algorithm="EdDSA", headers={"kid": "1"}),
    ):
        with pytest.raises(ApiError) as caught:
            decode_token(DEV, forged, "consent")
        assert caught.value.status == 401


def _hs256_with_raw_key(payload: dict, key: bytes) -> str:
    """HS256 over raw bytes (PyJWT itself refuses a PEM as an HMAC key, so sign by hand)."""
    import base64
    import hashlib
    import hmac as hmac_module
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "1"}).encode())
    body = b64(json.dumps(payload).encode())
    mac = hmac_module.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def test_each_role_has_its_own_key_and_audience():
    keys = keyring_of(DEV)
    assert keys.role_key("citizen", "1") != keys.role_key("admin", "1")
    assert len({AUDIENCE[role] for role in ("citizen", "admin", "consent")}) == 3


def test_rotation_by_kid_keeps_old_tokens_until_the_old_key_is_dropped():
    old = Config(jwt_secret="o" * 40, jwt_kid="2025", consent_key=new_consent_key(),
                 consent_kid="2025")
    citizen, consent = (issue_token(old, "citizen", PK),
                        issue_token(old, "consent", CONSENT_ID, claims={"partner": "p"}))
    from cryptography.hazmat.primitives import serialization

    old_public = keyring_of(old).consent_public["2025"].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    rotated = Config(jwt_secret="n" * 40, jwt_kid="2026", jwt_previous=(("2025", "o" * 40),),
                     consent_key=new_consent_key(), consent_kid="2026",
                     consent_previous=(("2025", old_public),))
    assert decode_token(rotated, citizen, "citizen")["sub"] == PK
    assert decode_token(rotated, consent, "consent")["sub"] == CONSENT_ID
    fresh = issue_token(rotated, "citizen", PK)
    assert jwt.get_unverified_header(fresh)["kid"] == "2026"
    dropped = rotated.with_(jwt_previous=(), consent_previous=())
    for token, role in ((citizen, "citizen"), (consent, "consent")):
        with pytest.raises(ApiError) as caught:
            decode_token(dropped, token, role)
        assert caught.value.status == 401


@pytest.mark.parametrize("subject", ["x" * 97, "ops\x00", "ops\ud800", "", "a b"])
def test_an_admin_subject_of_the_wrong_shape_is_a_401(subject):
    with pytest.raises(ApiError) as caught:
        decode_token(DEV, issue_token(DEV, "admin", subject), "admin")
    assert caught.value.status == 401


def test_the_published_keys_verify_consent_tokens(client, app):
    """A partner can check a consent token with /.well-known/jwks.json alone."""
    config = app.extensions["osmanthus.config"]
    token = issue_token(config, "consent", CONSENT_ID, claims={"partner": "p"})
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert keys and all("d" not in key for key in keys)  # public halves only
    key = jwt.PyJWKSet.from_dict({"keys": keys})[jwt.get_unverified_header(token)["kid"]]
    assert jwt.decode(token, key, algorithms=["EdDSA"],
                      audience=AUDIENCE["consent"])["sub"] == CONSENT_ID
