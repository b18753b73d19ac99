"""Tokens and keys: who may pass, and what a bad one gets."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from service.base.config import Config
from service.base.errors import ApiError
from service.rights.auth import bearer, decode_token, hash_api_key, issue_token, new_api_key

DEV = Config()
PROD = Config(env="production", jwt_secret="production-secret-of-at-least-32-bytes!")


def test_a_token_round_trips_with_its_role_and_subject():
    claims = decode_token(DEV, issue_token(DEV, "citizen", "pk1"), "citizen")
    assert claims["sub"] == "pk1" and claims["role"] == "citizen"


@pytest.mark.parametrize("make,status", [
    (lambda: issue_token(DEV, "admin", "ops"), 403),  # right signature, wrong role
    (lambda: issue_token(DEV, "citizen", "pk", now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), 401),
    (lambda: issue_token(Config(jwt_secret="another-secret-of-at-least-32-bytes!!"), "citizen", "pk"), 401),
    (lambda: "not.a.token", 401),
    (lambda: jwt.encode({"sub": "pk", "role": "citizen"}, DEV.jwt_secret, "HS256"), 401),
])
def test_bad_tokens_are_refused_with_the_right_status(make, status):
    with pytest.raises(ApiError) as caught:
        decode_token(DEV, make(), "citizen")
    assert caught.value.status == status


def test_development_tokens_are_refused_in_production_even_when_signed_right():
    token = issue_token(PROD, "citizen", "pk", development=True)
    with pytest.raises(ApiError, match="development"):
        decode_token(PROD, token, "citizen")
    assert decode_token(PROD, issue_token(PROD, "citizen", "pk"), "citizen")["sub"] == "pk"


def test_a_development_token_from_the_default_key_fails_in_production():
    with pytest.raises(ApiError):
        decode_token(PROD, issue_token(DEV, "citizen", "pk", development=True), "citizen")


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
def _signed(payload: dict, headers: dict | None = None, secret: str = DEV.jwt_secret,
            algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


NOW = int(dt.datetime.now(dt.UTC).timestamp())
GOOD = {"sub": "pk", "role": "citizen", "iss": DEV.jwt_issuer, "iat": NOW, "exp": NOW + 600}
REFUSED = {
    "expired": lambda: _signed({**GOOD, "exp": NOW - 1}),
    "not yet valid": lambda: _signed({**GOOD, "nbf": NOW + 600}),
    "another issuer": lambda: _signed({**GOOD, "iss": "someone-else"}),
    "no role": lambda: _signed({k: v for k, v in GOOD.items() if k != "role"}),
    "another secret": lambda: _signed(GOOD, secret="another-secret-of-at-least-32-bytes!!"),
    "HS384": lambda: _signed(GOOD, algorithm="HS384"),
    "alg none": lambda: jwt.encode(GOOD, None, algorithm="none"),
    "payload swapped": lambda: ".".join([_signed(GOOD).split(".")[0],
                                         _signed({**GOOD, "sub": "other"}).split(".")[1],
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
    assert decode_token(DEV, token, "citizen")["sub"] == "pk"
    assert decode_token(DEV, token, "citizen")["sub"] == "pk"  # the second time, remembered
    assert auth_module._accepted.cache_info().hits >= 1
    monkeypatch.setattr(auth_module.time, "time", lambda: now + 61)
    with pytest.raises(ApiError) as caught:
        decode_token(DEV, token, "citizen")
    assert caught.value.status == 401 and "expired" in caught.value.message


def test_remembered_claims_are_copies():
    token = issue_token(DEV, "citizen", "pk1")
    decode_token(DEV, token, "citizen")["sub"] = "someone else"
    assert decode_token(DEV, token, "citizen")["sub"] == "pk1"
