"""Who is asking: citizens' and admins' tokens, partners' API keys, citizens' consent tokens.

- Citizens' and admins' tokens are JWTs (HS256) with `sub`, `role`, `aud`, `iss`, `iat`, `exp`
  and a `kid` header. Each role has its own key, derived from the configured secret with the
  role as label (HMAC-SHA256), and its own audience (`osmanthus-citizen`, `osmanthus-admin`):
  a key or token of one role is worth nothing for another. A citizen's subject is their person
  key, so `/v1/me/...` needs no id in the path.
- A consent token (role `consent`) is signed with Ed25519 (EdDSA): partners hold it for months
  and may check it with the public key (`/.well-known/jwks.json`), which cannot sign one. It
  names the consent, the partner and the perks, and it is worth nothing once the consent is
  revoked or expired (checked in the database on every use, not only by the token's expiry).
- Rotation by `kid`: new tokens are signed by the current key; retired keys listed in the
  configuration (service/base/config.py) still verify the tokens they signed until those expire.
  A token naming an unknown `kid`, or an algorithm other than its role's, is refused.
- Every subject has a shape (person key, admin name, consent id); any other is a 401 before it
  can reach a table, a log line or a cache key.
- A development token (issued by `osmanthus token`) carries `dev: true` and is refused in
  production, where the secrets come from configuration and never default.
- A partner's API key is random; only its SHA-256 is stored, and it is looked up by that hash.
- Citizens and admins may also come with a token of the city's OpenID Connect provider (when
  one is configured): `decode_token` hands a token whose `iss` is the provider's to
  `service.rights.oidc`, which verifies it and answers the same `sub` and `role` (a citizen's
  person key is the HMAC of the ID number the provider vouches for).

Decoding is on every request's path (a partner's batch decodes up to 1,000 consent tokens), and
PyJWT spends ~60 µs a token. The same tokens come back again and again (a citizen's app, a
partner holding a consent token), so `verified_claims` remembers PyJWT's acceptance of a token
(an LRU of the exact token strings) and re-checks only its expiry on a repeat. PyJWT is the
only verifier: a token it refuses is never remembered, so it is refused again every time.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import jwt
from flask import Flask

from service.base.config import Config
from service.base.errors import ApiError
from service.base.keys import ALGORITHM, CONSENT_ALGORITHM, Keyring, claimed_parts, keyring_of
from service.rights import oidc

ROLES = ("citizen", "admin", "consent")
PERSON_KEY = re.compile(r"[0-9a-f]{64}")  # HMAC-SHA256, hex: what a citizen token's `sub` holds
AUDIENCE = {role: f"osmanthus-{role}" for role in ROLES}
# What each role's subject may look like: anything else is refused before it is used.
SUBJECT = {
    "citizen": PERSON_KEY,
    "admin": re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"),
    "consent": re.compile(r"[0-9a-f]{32}"),  # a consent id (uuid4 hex)
}


@dataclass(frozen=True)
class Principal:
    role: str  # citizen | admin | partner
    subject: str  # person key, admin name, or partner id

    @property
    def actor(self) -> str:
        """How the audit log names this principal (a person key is never logged as actor)."""
        return "citizen" if self.role == "citizen" else f"{self.role}:{self.subject}"


def issue_token(config: Config, role: str, subject: str, *, minutes: int | None = None,
                development: bool = False, claims: dict | None = None,
                now: dt.datetime | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    now = now or dt.datetime.now(dt.UTC)
    payload = {
        "sub": subject, "role": role, "aud": AUDIENCE[role], "iss": config.jwt_issuer,
        "iat": now, "exp": now + dt.timedelta(minutes=minutes or config.token_minutes),
        **(claims or {}),
    }
    if development:
        payload["dev"] = True
    keys = keyring_of(config)
    if role == "consent":
        return jwt.encode(payload, keys.consent_private, algorithm=CONSENT_ALGORITHM,
                          headers={"kid": keys.consent_kid})
    return jwt.encode(payload, keys.role_key(role, keys.hmac_kid), algorithm=ALGORITHM,
                      headers={"kid": keys.hmac_kid})


def _routing(token: str) -> tuple[str | None, object]:
    """The role and `kid` a token claims, read without trusting them (`claimed_parts`): they
    only pick the key PyJWT then verifies with (and `_accepted` holds the verified role to the
    one that picked it)."""
    header, payload = claimed_parts(token)
    return payload.get("role"), header.get("kid")


@functools.lru_cache(maxsize=65_536)
def _accepted(keys: Keyring, token: str) -> dict:
    """PyJWT's verdict under the key of the role the token claims: that role's algorithm only,
    its audience, the issuer, and the key its `kid` names."""
    role, kid = _routing(token)
    if role not in ROLES or not isinstance(kid, str):
        raise jwt.InvalidTokenError("no role or key id")
    key, algorithm = keys.verifying_key(role, kid)
    claims = jwt.decode(token, key, algorithms=[algorithm], issuer=keys.issuer,
                        audience=AUDIENCE[role],
                        options={"require": ["exp", "sub", "role", "aud"]})
    if claims["role"] != role:  # PyJWT read another role than the one that chose the key
        raise jwt.InvalidTokenError("the role does not match the key")
    return claims


def verified_claims(config: Config, token: str) -> dict:
    """PyJWT's claims for a token (raises its `InvalidTokenError`s); a token it accepted before
    is only checked again for expiry, exactly as PyJWT checks it (no leeway)."""
    try:
        keys = keyring_of(config)
    except ValueError:
        raise jwt.InvalidTokenError("no keys") from None
    claims = _accepted(keys, token)
    if claims["exp"] <= time.time():
        raise jwt.ExpiredSignatureError("Signature has expired")
    return dict(claims)  # a copy: the remembered claims stay as PyJWT gave them


def decode_token(config: Config, token: str, role: str) -> dict:
    """The token's claims, or a 401 (not valid) / 403 (valid, but not for this).

    A citizen's or admin's token issued by the city's OpenID Connect provider (its `iss` is the
    configured `oidc_issuer`) is checked by `service.rights.oidc` instead, and answers the same
    `sub` (person key, admin name) and `role`; the two kinds work side by side."""
    if role in ("citizen", "admin") and oidc.is_provider_token(config, token):
        return oidc.provider_principal(config, token, role, SUBJECT[role])
    try:
        claims = verified_claims(config, token)
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "the token has expired") from None
    except jwt.InvalidTokenError:
        raise ApiError(401, "the token is not valid") from None
    if config.production and claims.get("dev"):
        raise ApiError(401, "development tokens are not accepted here")
    if claims["role"] != role:
        raise ApiError(403, f"this needs a {role} token")
    subject = claims["sub"]
    if not isinstance(subject, str) or not SUBJECT[role].fullmatch(subject):
        raise ApiError(401, "the token's subject is not valid")
    return claims


def bearer(header: str | None) -> str:
    if not header or not header.lower().startswith("bearer "):
        raise ApiError(401, "an Authorization: Bearer token is required",
                       headers={"WWW-Authenticate": "Bearer"})
    return header.split(" ", 1)[1].strip()


def new_api_key() -> tuple[str, str]:
    """A fresh partner key and the hash to store; the key itself is shown once."""
    key = "osk_" + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- per request --------------------------------------------------------------------------
def _config() -> Config:
    from flask import current_app

    return current_app.extensions["osmanthus.config"]


def citizen_of(config: Config, authorization: str | None) -> str:
    """The person key a citizen's `Authorization` header names (401/403 otherwise): the one
    citizen-token check, used by every /v1/me route and by the cached-page shortcut in front
    of Flask (`api.me.CachedScorePages`), so the two can never disagree on who may read.

    A subject that is not a person key (an identity provider that puts the raw ID number in
    `sub`, say) is refused before it can reach a table, a log line or a cache key. A token of
    the city's OpenID Connect provider names the person by the HMAC of its ID-number claim
    (`service.rights.oidc`), so the person key is the same whichever way the citizen signs in."""
    return decode_token(config, bearer(authorization), "citizen")["sub"]  # its shape checked


def citizen_key() -> str:
    """The person key of the citizen whose token came with this request (`citizen_of`)."""
    from flask import request

    return citizen_of(_config(), request.headers.get("Authorization"))


def admin_name() -> str:
    from flask import request

    return decode_token(_config(), bearer(request.headers.get("Authorization")), "admin")["sub"]


@functools.cache
def _partner_by_key_hash():
    """The key lookup, built once (the store is imported lazily: auth loads early)."""
    from sqlalchemy import bindparam, select

    from service.store.tables import partners

    return select(partners.c.partner_id).where(partners.c.api_key_hash == bindparam("key_hash"))


KNOWN_KEYS_MAX = 1024  # partners are few; a bound all the same
_clock = time.monotonic  # the key memory's clock (tests move it)


def partner_id(connection=None) -> str:
    """The partner whose API key (header `X-API-Key`) came with this request (`partner_of`)."""
    from flask import current_app, request

    return partner_of(current_app, request.headers.get("X-API-Key"), connection)


def partner_of(app: Flask, key: str | None, connection=None) -> str:
    """The partner whose API key is `key` (looked up on `connection` when given: the partner
    API's one connection for the request).

    A key found in the store is trusted by this worker for `api_key_cache_seconds` (default
    5 s) without asking again: the lookup was a round trip on every partner request. So a
    rotated or removed key keeps working for at most that long; an unknown key is never
    remembered and always costs a lookup."""
    from contextlib import nullcontext

    if not key:
        raise ApiError(401, "an X-API-Key header is required")
    key_hash = hash_api_key(key)
    config: Config = app.extensions["osmanthus.config"]
    known: dict[str, tuple[str, float]] = app.extensions.setdefault(
        "osmanthus.partner_keys", {})
    remembered = known.get(key_hash)
    if remembered is not None and remembered[1] > _clock():
        return remembered[0]
    engine = app.extensions["osmanthus.engine"]
    with nullcontext(connection) if connection is not None else engine.connect() as reading:
        found = reading.execute(_partner_by_key_hash(),
                                {"key_hash": key_hash}).scalar_one_or_none()
    if found is None:
        known.pop(key_hash, None)
        raise ApiError(401, "the API key is not valid")
    if config.api_key_cache_seconds > 0:
        if len(known) >= KNOWN_KEYS_MAX:
            known.clear()
        known[key_hash] = (found, _clock() + config.api_key_cache_seconds)
    return found
