"""Citizens and admins signed in by the city's OpenID Connect provider.

Off unless `OSMANTHUS_OIDC_ISSUER` is set (service/base/config.py names every setting). A bearer
token whose (unverified) `iss` is the configured issuer is checked here; any other goes to the
service's own tokens (service/rights/auth.py), so both kinds work side by side through the one
check `auth.decode_token` (and `auth.citizen_of` above it).

How a provider's token is checked:
- The provider is found by discovery, `{issuer}/.well-known/openid-configuration`, once per
  process (retried until it succeeds); the document's `issuer` must equal the configured one
  exactly (OpenID Connect Discovery §4.3), or nothing it names is trusted.
- Its keys come from the document's `jwks_uri` through PyJWT's `PyJWKClient`: the key set is
  cached for `OSMANTHUS_OIDC_JWKS_LIFESPAN` seconds; a token naming an unknown `kid` refetches
  it once (a rotated key is picked up at once), at most once per `REFETCH_COOLDOWN` seconds, so
  a stream of made-up `kid`s cannot turn into a stream of fetches.
- Only asymmetric algorithms that the provider lists (`id_token_signing_alg_values_supported`)
  are accepted, and only the one of the key the `kid` names (PyJWT checks a `PyJWK`'s own
  algorithm): never `none`, never HS* (a token signed with a public key as an HMAC secret is
  refused). `exp`, `iat`, `iss`, `aud` and `sub` are required, `aud` must hold
  `OSMANTHUS_OIDC_AUDIENCE`, and clocks may differ by `OSMANTHUS_OIDC_LEEWAY` (default 30 s).
- Every fetch has a timeout (`OSMANTHUS_OIDC_TIMEOUT`, default 3 s) and follows no redirect.
  A provider that cannot be reached is a 503 in the envelope with `Retry-After`, never a 500
  and never a hang; after a failed fetch the process answers 503 at once for `DOWN_SECONDS`
  instead of waiting on the provider again with every request (keys already cached keep
  verifying meanwhile).

Who the token names (the decision the issue leaves open):
- A citizen is the person key of the ID number in the claim `OSMANTHUS_OIDC_CITIZEN_CLAIM`
  (default `resident_id`): at sign-in the number is checked and hashed with the same HMAC as
  every feed (features/identity.py `person_key`), and only the person key leaves this module.
  The number is never stored, logged, cached or put in an error message (an invalid one is
  "not a valid resident ID", nothing more). A provider that already issues the service's
  pseudonymous key sets `OSMANTHUS_OIDC_CITIZEN_CLAIM_HOLDS=person_key` and the claim must be
  a person key. The provider's `sub` is required but not used as the person: providers' `sub`s
  are per-client identifiers, and the person key must match the one every feed produces.
- An admin is a token whose `OSMANTHUS_OIDC_ADMIN_CLAIM` (default `groups`: a list, or a
  space-separated string) holds `OSMANTHUS_OIDC_ADMIN_ROLE`; without it an admin endpoint is a
  403. The audit log names the admin by `OSMANTHUS_OIDC_ADMIN_NAME_CLAIM` (default `sub`), which
  must have an admin name's shape (auth.SUBJECT).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
import urllib.request
from typing import Any

import jwt

from service.base.config import Config
from service.base.errors import ApiError
from service.base.keys import claimed_parts

log = logging.getLogger(__name__)

# Asymmetric JWS algorithms (RFC 7518): what a provider may sign with; never none or HS*.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "EdDSA"})
REQUIRED = ["exp", "iat", "iss", "aud", "sub"]
REFETCH_COOLDOWN = 10.0  # seconds between refetches caused by an unknown kid
DOWN_SECONDS = 5.0  # after a failed fetch, answer 503 at once for this long
MAX_DOCUMENT_BYTES = 256 << 10  # a discovery document is a few kB
RETRY_AFTER = "5"
ENDPOINTS = ("authorization_endpoint", "token_endpoint")  # what the citizen page signs in with
_clock = time.monotonic  # tests move it


class ProviderDown(Exception):
    """The provider could not be asked (unreachable, slow, or answering nonsense)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None


class Provider:
    """One identity provider as this process knows it: its discovery, algorithms and keys."""

    def __init__(self, issuer: str, timeout: float, lifespan: float) -> None:
        self.issuer, self.timeout, self.lifespan = issuer, timeout, lifespan
        self.algorithms: list[str] = []
        self.keys: jwt.PyJWKClient | None = None
        self.endpoints: dict[str, str] = {}  # authorization_endpoint, token_endpoint
        self._lock = threading.Lock()
        self._down_until = 0.0

    def _discover(self) -> None:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            opener = urllib.request.build_opener(_NoRedirect())
            with opener.open(url, timeout=self.timeout) as answer:
                document = json.loads(answer.read(MAX_DOCUMENT_BYTES + 1)[:MAX_DOCUMENT_BYTES])
        except (OSError, ValueError) as error:  # URLError, timeouts, HTTP errors, bad JSON
            raise ProviderDown(f"discovery failed ({type(error).__name__})") from None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise ProviderDown("the discovery document names another issuer")
        listed = document.get("id_token_signing_alg_values_supported")
        algorithms = sorted(ASYMMETRIC.intersection(listed if isinstance(listed, list) else []))
        jwks_uri = document.get("jwks_uri")
        if not algorithms or not isinstance(jwks_uri, str):
            raise ProviderDown("the discovery document lists no asymmetric algorithm or no "
                               "jwks_uri")
        try:
            keys = jwt.PyJWKClient(jwks_uri, lifespan=self.lifespan, timeout=self.timeout,
                                   cooldown_duration=REFETCH_COOLDOWN)
        except jwt.PyJWKClientError:
            raise ProviderDown("the jwks_uri is not an http(s) URL") from None
        self.algorithms, self.keys = algorithms, keys
        self.endpoints = {name: document[name] for name in ENDPOINTS
                          if isinstance(document.get(name), str)
                          and document[name].startswith(("https://", "http://"))}

    def discovered(self) -> Provider:
        """This provider, discovered (ProviderDown when it cannot be)."""
        with self._lock:
            if self.keys is None:
                if _clock() < self._down_until:
                    raise ProviderDown("marked down after a failed fetch")
                try:
                    self._discover()
                except ProviderDown:
                    self._down_until = _clock() + DOWN_SECONDS
                    raise
        return self

    def signing_key(self, kid: str) -> jwt.PyJWK:
        """The provider's key named `kid` (InvalidTokenError when it has none, ProviderDown
        when it cannot be asked)."""
        with self._lock:
            if _clock() < self._down_until:
                return self._cached_key(kid)
            try:
                if self.keys is None:
                    self._discover()
                return self.keys.get_signing_key(kid)
            except (ProviderDown, jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as error:
                self._down_until = _clock() + DOWN_SECONDS
                log.warning("identity provider %s unavailable: %s", self.issuer, str(error)[:200])
                raise ProviderDown(str(error)) from None
            except jwt.PyJWKClientError:  # reached, but no key of that kid
                raise jwt.InvalidTokenError("unknown key id") from None

    def _cached_key(self, kid: str) -> jwt.PyJWK:
        """While the provider is down: a key already cached, or ProviderDown."""
        cached = self.keys.jwk_set_cache.get() if self.keys and self.keys.jwk_set_cache else None
        if cached is None:
            raise ProviderDown("marked down after a failed fetch")
        for key in cached.keys:
            if key.key_id == kid and key.public_key_use in ("sig", None):
                return key
        raise ProviderDown("marked down after a failed fetch")


_PROVIDERS: dict[tuple, Provider] = {}
_PROVIDERS_LOCK = threading.Lock()


def provider_of(config: Config) -> Provider:
    """This process's `Provider` for the configured issuer (one per issuer and settings)."""
    key = (config.oidc_issuer, config.oidc_timeout, config.oidc_jwks_lifespan)
    with _PROVIDERS_LOCK:
        found = _PROVIDERS.get(key)
        if found is None:
            found = _PROVIDERS[key] = Provider(*key)
        return found


def is_provider_token(config: Config, token: str) -> bool:
    """Whether `token` says the configured provider issued it (unverified: only to choose which
    check it gets; that check verifies everything)."""
    return bool(config.oidc_issuer) and _claimed_issuer(token) == config.oidc_issuer


@functools.lru_cache(maxsize=8192)
def _claimed_issuer(token: str) -> str | None:
    """The `iss` a token's payload claims, unverified (`claimed_parts`): a routing decision on
    every request of every citizen, remembered per token string (in this process's memory only,
    as `auth` remembers its own tokens) as the tokens come back again and again."""
    try:
        _header, claims = claimed_parts(token)
    except jwt.DecodeError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def provider_claims(config: Config, token: str) -> dict[str, Any]:
    """The provider's verified claims of `token`: 401 when not valid, 503 when the provider
    cannot be asked."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("no key id")
        provider = provider_of(config)
        key = provider.signing_key(kid)
        return jwt.decode(token, key, algorithms=provider.algorithms,
                          audience=config.oidc_audience, issuer=config.oidc_issuer,
                          leeway=config.oidc_leeway, options={"require": REQUIRED})
    except ProviderDown:
        raise ApiError(503, "the city's sign-in service cannot be reached to check this token; "
                            "try again shortly", headers={"Retry-After": RETRY_AFTER}) from None
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "the token has expired") from None
    except jwt.PyJWTError:  # InvalidTokenError, and InvalidKeyError for a key of another kind
        raise ApiError(401, "the token is not valid") from None


def provider_principal(config: Config, token: str, role: str, subject_shape: re.Pattern
                       ) -> dict[str, Any]:
    """`{sub, role, exp}` for a provider's token used as `role` (citizen or admin): `sub` is the
    person key or the admin's name. Nothing else of the token leaves (it may hold an ID number)."""
    claims = provider_claims(config, token)
    if role == "citizen":
        subject = _person_key(config, claims.get(config.oidc_citizen_claim))
    elif role == "admin":
        if config.oidc_admin_role not in _values(claims.get(config.oidc_admin_claim)):
            raise ApiError(403, "this needs an admin of the city's sign-in service")
        subject = claims.get(config.oidc_admin_name_claim)
    else:
        raise ApiError(403, f"this needs a {role} token")
    if not isinstance(subject, str) or not subject_shape.fullmatch(subject):
        raise ApiError(401, "the token's subject is not valid")
    return {"sub": subject, "role": role, "exp": claims["exp"], "oidc": True}


def sign_in_settings(config: Config) -> dict[str, str] | None:
    """What the citizen page needs to sign in with the provider (authorization code + PKCE, in
    the browser: service/web/static/signin.js), or None when there is no provider or it cannot
    be reached now. Public values only: the issuer, the client id and two endpoints."""
    if not config.oidc_issuer:
        return None
    try:
        endpoints = provider_of(config).discovered().endpoints
    except ProviderDown:
        return None
    if len(endpoints) < len(ENDPOINTS):
        return None
    return {"issuer": config.oidc_issuer, "client_id": config.oidc_audience, **endpoints}


def _values(claim: object) -> list[str]:
    """A group claim as a list: providers send a list or a space-separated string."""
    if isinstance(claim, str):
        return claim.split()
    if isinstance(claim, list):
        return [value for value in claim if isinstance(value, str)]
    return []


def _person_key(config: Config, value: object) -> str:
    """The person key a citizen claim names: the HMAC of the ID number, or the key itself."""
    if value is None:
        raise ApiError(403, "this token names no citizen (no "
                            f"{config.oidc_citizen_claim!s:.64} claim)")
    if config.oidc_citizen_claim_holds == "person_key":
        return value if isinstance(value, str) else ""
    from features.identity import InvalidResidentId, person_key

    if not isinstance(value, str):
        raise ApiError(401, "the token's citizen claim is not a valid resident ID")
    try:
        return person_key(value)
    except InvalidResidentId:  # its reason is safe, but says nothing the citizen can act on
        raise ApiError(401, "the token's citizen claim is not a valid resident ID") from None
