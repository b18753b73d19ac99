"""The keys that sign and verify tokens, loaded once per configuration.

Lives in `base` (beneath everything) because two rooms need it: `Config.check` refuses to start
with a key that cannot be loaded, and `service.rights.auth` signs and verifies with it.
`service.rights.auth` says what each key is for.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import jwt

ALGORITHM = "HS256"  # citizens' and admins' tokens
CONSENT_ALGORITHM = "EdDSA"  # consent tokens (Ed25519)



def claimed_parts(token: str) -> tuple[dict, dict]:
    """A token's header and payload as it claims them, NOT verified: only to choose which key
    or which check verifies it (`kid`, `role`, `iss`). Read with base64 and json, because
    PyJWT checks every character of each segment it decodes, which cost more than the
    signature check on the hot paths that route every request this way. Anything that is not
    three segments with two JSON objects (nesting too deep included) raises `jwt.DecodeError`."""
    try:
        header, payload, _signature = token.split(".")
        claimed = [json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                   for part in (header, payload)]
    except (ValueError, TypeError, binascii.Error, RecursionError):  # json: ValueError
        raise jwt.DecodeError("not a token") from None
    if not all(isinstance(part, dict) for part in claimed):
        raise jwt.DecodeError("not a token")
    return claimed[0], claimed[1]

@dataclass(frozen=True, eq=False)
class Keyring:
    """The keys that sign and verify, built once per configuration (`keyring_of`)."""

    issuer: str
    hmac_kid: str
    hmac_secrets: dict[str, bytes]  # kid -> secret (current and retired)
    consent_kid: str
    consent_private: object  # Ed25519PrivateKey
    consent_public: dict[str, object] = field(default_factory=dict)  # kid -> Ed25519PublicKey

    def role_key(self, role: str, kid: str) -> bytes:
        """The HS256 key of one role under one secret: HMAC(secret, role label)."""
        secret = self.hmac_secrets.get(kid)
        if secret is None:
            raise jwt.InvalidTokenError("unknown key id")
        return hmac.new(secret, b"osmanthus-jwt-role:" + role.encode(), hashlib.sha256).digest()

    def verifying_key(self, role: str, kid: str) -> tuple[object, str]:
        if role == "consent":
            public = self.consent_public.get(kid)
            if public is None:
                raise jwt.InvalidTokenError("unknown key id")
            return public, CONSENT_ALGORITHM
        return self.role_key(role, kid), ALGORITHM

    def jwks(self) -> dict:
        """The consent tokens' public keys as a JWK set (RFC 7517), for partners to verify."""
        from jwt.algorithms import OKPAlgorithm

        keys = []
        for kid, public in self.consent_public.items():
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": CONSENT_ALGORITHM, "use": "sig"})
        return {"keys": keys}


def _load_private(pem: str, what: str = "consent"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"the {what} key must be an Ed25519 private key")
    return key


def _load_public(pem: str, what: str = "consent"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"a retired {what} key must be an Ed25519 public key")
    return key


@functools.lru_cache(maxsize=64)
def _keyring(issuer: str, jwt_secret: str, jwt_kid: str, jwt_previous: tuple,
             consent_key: str, consent_kid: str, consent_previous: tuple) -> Keyring:
    private = _load_private(consent_key)
    public = {kid: _load_public(pem) for kid, pem in consent_previous}
    public[consent_kid] = private.public_key()
    secrets_by_kid = {kid: old.encode() for kid, old in jwt_previous}
    secrets_by_kid[jwt_kid] = jwt_secret.encode()
    return Keyring(issuer, jwt_kid, secrets_by_kid, consent_kid, private, public)


@dataclass(frozen=True, eq=False)
class AuditKeys:
    """The audit log's tree-head keys (service/rights/transparency.py): Ed25519, held outside
    the database. `private` is None in a process that only verifies and publishes."""

    kid: str
    private: object | None  # Ed25519PrivateKey
    public: dict[str, object] = field(default_factory=dict)  # kid -> Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return self.kid

    def sign(self, message: bytes) -> bytes:
        if self.private is None:
            raise ValueError("no audit signing key (OSMANTHUS_AUDIT_KEY) is configured")
        return self.private.sign(message)

    def jwks(self) -> dict:
        """The public keys as a JWK set (RFC 7517, OKP/Ed25519 per RFC 8037)."""
        from jwt.algorithms import OKPAlgorithm

        return {"keys": [{**OKPAlgorithm.to_jwk(public, as_dict=True), "kid": kid,
                          "alg": CONSENT_ALGORITHM, "use": "sig"}
                         for kid, public in self.public.items()]}


@functools.lru_cache(maxsize=64)
def _audit_keys(key: str | None, kid: str, previous: tuple) -> AuditKeys:
    private = _load_private(key, "audit") if key else None
    public = {old_kid: _load_public(pem, "audit") for old_kid, pem in previous}
    if private is not None:
        public[kid] = private.public_key()
    return AuditKeys(kid, private, public)


def audit_keys_of(config: Any) -> AuditKeys:
    """The audit keys of a `Config` (ValueError when one cannot be loaded)."""
    try:
        return _audit_keys(config.audit_key, config.audit_kid, tuple(config.audit_previous))
    except (TypeError, ValueError) as error:
        raise ValueError(str(error).splitlines()[0][:200]) from None


def keyring_of(config: Any) -> Keyring:
    """The keys of a `service.base.config.Config` (ValueError when one cannot be loaded)."""
    if not config.jwt_secret or not config.consent_key:
        raise ValueError("no signing secret is configured")
    try:
        return _keyring(config.jwt_issuer, config.jwt_secret, config.jwt_kid,
                        tuple(config.jwt_previous), config.consent_key, config.consent_kid,
                        tuple(config.consent_previous))
    except (TypeError, ValueError) as error:
        raise ValueError(str(error).splitlines()[0][:200]) from None
