"""Configuration, read from the environment in this one place.

Development (the default) runs with nothing set: a SQLite file under `var/`, no Redis, and
secrets that are random, never known in advance: `from_env` generates them once into a file
(`OSMANTHUS_SECRETS_FILE`, default `var/secrets.json`; the demo's is `var/demo/secrets.json`),
mode 0600, and says so; a `Config` built in code without secrets (tests) gets random secrets
for its process. There is no usable default anywhere. Production (`OSMANTHUS_ENV=production`,
the container's default) refuses to start unless every secret is given, and never accepts
development tokens.

Secrets (see service/rights/auth.py and service/base/keys.py for how they sign):
- `OSMANTHUS_JWT_SECRET` (≥ 32 bytes), id `OSMANTHUS_JWT_KID`: citizens' and admins' tokens,
  each role under its own key derived from it (HMAC, label = role) and its own audience.
  `OSMANTHUS_JWT_PREVIOUS` (JSON `{kid: secret}`) keeps retired secrets verifying while the
  tokens they signed run out: rotation by `kid`.
- `OSMANTHUS_CONSENT_KEY` (an Ed25519 private key, PEM), id `OSMANTHUS_CONSENT_KID`: consent
  tokens, which partners hold for months and may verify with the public key (EdDSA), so a
  verifier can never mint one. `OSMANTHUS_CONSENT_PREVIOUS` (JSON `{kid: public PEM}`) keeps
  retired keys verifying.
- `OSMANTHUS_AUDIT_KEY` (an Ed25519 private key, PEM), id `OSMANTHUS_AUDIT_KID`: signs the
  audit log's tree heads (service/rights/transparency.py); kept out of the database, so write
  access to the database cannot forge a head. Production needs it wherever the log is sealed
  (`osmanthus audit seal`, or a service with `OSMANTHUS_AUDIT_SEAL_SECONDS` > 0); a process
  without it still verifies and publishes the public keys of `OSMANTHUS_AUDIT_PREVIOUS`
  (JSON `{kid: public PEM}`: retired keys, or the sealer's key for a process that only serves).
- `OSMANTHUS_PERSON_KEY`: the HMAC key of person keys (features/identity.py reads it).

OpenID Connect (service/rights/oidc.py), off unless `OSMANTHUS_OIDC_ISSUER` is set: the city's
provider signs citizens and admins in beside the service's own tokens.
- `OSMANTHUS_OIDC_ISSUER` (https in production; must equal the `issuer` of its discovery
  document) and `OSMANTHUS_OIDC_AUDIENCE` (this service's client id, required with it).
- `OSMANTHUS_OIDC_CITIZEN_CLAIM` (default `resident_id`) names the claim saying who a citizen is;
  `OSMANTHUS_OIDC_CITIZEN_CLAIM_HOLDS` says what it holds: `id_number` (default; hashed into
  the person key at sign-in, never kept) or `person_key` (a provider that already issues the
  pseudonymous key).
- `OSMANTHUS_OIDC_ADMIN_CLAIM` (default `groups`, a list or a space-separated string) must hold
  `OSMANTHUS_OIDC_ADMIN_ROLE` (default `osmanthus-admin`) for admin endpoints; the admin's name
  in the audit log is the claim `OSMANTHUS_OIDC_ADMIN_NAME_CLAIM` (default `sub`).
- `OSMANTHUS_OIDC_TIMEOUT` (seconds per fetch, default 3), `OSMANTHUS_OIDC_JWKS_LIFESPAN`
  (seconds the provider's keys are cached, default 600), `OSMANTHUS_OIDC_LEEWAY` (clock skew
  allowed on `exp`/`iat`/`nbf`, default 30 s, at most 120).

`OSMANTHUS_AUDIT_SEAL_SECONDS` (default 0: off): each service worker seals the audit log this
often in a daemon thread (the sequencer's lock makes one of them win each time); `osmanthus
serve` and `osmanthus demo` default it to 1.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PRODUCTION_SECRETS = ("OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET", "OSMANTHUS_CONSENT_KEY",
                      "DATABASE_URL")
# what development generates (`development_secrets`); a file missing a newer one gets it added
DEVELOPMENT_SECRETS = ("OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET", "OSMANTHUS_CONSENT_KEY",
                       "OSMANTHUS_AUDIT_KEY")
DEFAULT_SECRETS_FILE = Path("var/secrets.json")
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """Start-up cannot go on: a setting is missing or wrong."""


@dataclass(frozen=True)
class Config:
    env: str = "development"
    database_url: str = "sqlite:///var/osmanthus.db"
    redis_url: str | None = None
    registry_dir: Path = Path("var/registry")
    perks_file: Path | None = None  # None: the demo perks shipped in service/rights/perks.json
    # The service's one clock (service/base/clock.py): None → the wall clock (production);
    # a date → the city's clock starts there, frozen at its noon unless `clock_since` says at
    # which wall-clock instant that date began (then it runs at real speed: the demo).
    as_of: dt.date | None = None
    clock_since: dt.datetime | None = None
    # None: random for this process (development and tests); production refuses None.
    jwt_secret: str | None = None
    jwt_kid: str = "1"
    jwt_previous: tuple[tuple[str, str], ...] = ()  # (kid, secret): retired, still verifying
    consent_key: str | None = None  # Ed25519 private key, PEM
    consent_kid: str = "1"
    consent_previous: tuple[tuple[str, str], ...] = ()  # (kid, public key PEM)
    audit_key: str | None = None  # Ed25519 private key, PEM: signs the audit tree heads
    audit_kid: str = "1"
    audit_previous: tuple[tuple[str, str], ...] = ()  # (kid, public key PEM)
    audit_seal_seconds: float = 0.0  # > 0: every worker seals the audit log this often
    jwt_issuer: str = "osmanthus"
    token_minutes: int = 60
    partner_rate_limit: str = "6000/minute"
    citizen_rate_limit: str = "300/minute"  # per citizen token: a page load is ~6 requests
    # With Redis down, a limiter that fails open keeps partners served (their perks are
    # deposit-free rides and books, not money); failing closed would take the city's
    # bicycles down with Redis. Operators who prefer the opposite set it.
    rate_limit_fail_open: bool = True
    # How long an ingest waits for a lost database (a restart, a fail-over) before it stops,
    # leaving its feed `receiving` to be sent again (service/store/ingest.py).
    ingest_retry_seconds: float = 30.0
    # How long a worker trusts an API key it has looked up (service/rights/auth.py: partner_id).
    # A rotated or removed key stops working on every worker within this many seconds.
    api_key_cache_seconds: float = 5.0
    num_threads: int = 1
    # Days a dispute has to be answered (征信业管理条例 Art. 25: 20); fixed on each dispute when
    # it is received. Unanswered past it, the record stops counting until answered.
    dispute_due_days: int = 20
    # How often each API worker re-scores the people whose dispute just went overdue
    # (service/rights/overdue.py; 0: never, leaving it to serving and `osmanthus disputes sweep`).
    sweep_seconds: float = 3600.0
    # Request bodies (service/api/guard.py): JSON endpoints, and the feed upload (a file).
    max_body_bytes: int = 1 << 20
    max_feed_bytes: int = 512 << 20
    # The validation snapshot that `POST /v1/admin/models/<v>/promote` runs the gates on.
    validation_features: Path | None = None
    validation_outcomes: Path | None = None
    validation_people: Path | None = None
    validation_as_of: dt.date | None = None
    # OpenID Connect (service/rights/oidc.py; the module docstring above says what each is).
    oidc_issuer: str | None = None  # None: signing in through a provider is off
    oidc_audience: str | None = None
    oidc_citizen_claim: str = "resident_id"
    oidc_citizen_claim_holds: str = "id_number"  # or "person_key"
    oidc_admin_claim: str = "groups"
    oidc_admin_role: str = "osmanthus-admin"
    oidc_admin_name_claim: str = "sub"
    oidc_timeout: float = 3.0
    oidc_jwks_lifespan: float = 600.0
    oidc_leeway: float = 30.0
    extra: dict = field(default_factory=dict)  # tests' and extensions' own settings

    def __post_init__(self) -> None:
        # Outside production a Config built without secrets gets this process's random ones:
        # usable by the process itself, known to nobody else. Production never: check() fails.
        if not self.production:
            ephemeral = _process_secrets()
            if self.jwt_secret is None:
                object.__setattr__(self, "jwt_secret", ephemeral["jwt_secret"])
            if self.consent_key is None:
                object.__setattr__(self, "consent_key", ephemeral["consent_key"])
            if self.audit_key is None:
                object.__setattr__(self, "audit_key", ephemeral["audit_key"])

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        if env.get("OSMANTHUS_ENV", "development") != "production":
            env = development_environment(env, write_back=environ is None)
        config = cls(
            env=env.get("OSMANTHUS_ENV", "development"),
            database_url=env.get("DATABASE_URL", cls.database_url),
            redis_url=env.get("REDIS_URL") or None,
            registry_dir=Path(env.get("OSMANTHUS_REGISTRY", str(cls.registry_dir))),
            perks_file=Path(env["OSMANTHUS_PERKS"]) if env.get("OSMANTHUS_PERKS") else None,
            as_of=dt.date.fromisoformat(env["OSMANTHUS_AS_OF"]) if env.get("OSMANTHUS_AS_OF")
            else None,
            clock_since=_instant(env, "OSMANTHUS_CLOCK_SINCE"),
            jwt_secret=env.get("OSMANTHUS_JWT_SECRET") or None,
            jwt_kid=env.get("OSMANTHUS_JWT_KID") or cls.jwt_kid,
            jwt_previous=_previous(env, "OSMANTHUS_JWT_PREVIOUS"),
            consent_key=env.get("OSMANTHUS_CONSENT_KEY") or None,
            consent_kid=env.get("OSMANTHUS_CONSENT_KID") or cls.consent_kid,
            consent_previous=_previous(env, "OSMANTHUS_CONSENT_PREVIOUS"),
            audit_key=env.get("OSMANTHUS_AUDIT_KEY") or None,
            audit_kid=env.get("OSMANTHUS_AUDIT_KID") or cls.audit_kid,
            audit_previous=_previous(env, "OSMANTHUS_AUDIT_PREVIOUS"),
            audit_seal_seconds=float(env.get("OSMANTHUS_AUDIT_SEAL_SECONDS", "0")),
            token_minutes=int(env.get("OSMANTHUS_TOKEN_MINUTES", cls.token_minutes)),
            partner_rate_limit=env.get("OSMANTHUS_PARTNER_RATE_LIMIT", cls.partner_rate_limit),
            citizen_rate_limit=env.get("OSMANTHUS_CITIZEN_RATE_LIMIT", cls.citizen_rate_limit),
            rate_limit_fail_open=env.get("OSMANTHUS_RATE_LIMIT_FAIL_OPEN", "1") != "0",
            ingest_retry_seconds=float(env.get("OSMANTHUS_INGEST_RETRY_SECONDS",
                                               cls.ingest_retry_seconds)),
            api_key_cache_seconds=float(env.get("OSMANTHUS_API_KEY_CACHE_SECONDS",
                                                cls.api_key_cache_seconds)),
            num_threads=int(env.get("OSMANTHUS_NUM_THREADS", "1")),
            dispute_due_days=int(env.get("OSMANTHUS_DISPUTE_DUE_DAYS", cls.dispute_due_days)),
            sweep_seconds=float(env.get("OSMANTHUS_SWEEP_SECONDS", cls.sweep_seconds)),
            max_body_bytes=int(env.get("OSMANTHUS_MAX_BODY_BYTES", cls.max_body_bytes)),
            max_feed_bytes=int(env.get("OSMANTHUS_MAX_FEED_BYTES", cls.max_feed_bytes)),
            validation_features=_path(env, "OSMANTHUS_VALIDATION_FEATURES"),
            validation_outcomes=_path(env, "OSMANTHUS_VALIDATION_OUTCOMES"),
            validation_people=_path(env, "OSMANTHUS_VALIDATION_PEOPLE"),
            validation_as_of=dt.date.fromisoformat(env["OSMANTHUS_VALIDATION_AS_OF"])
            if env.get("OSMANTHUS_VALIDATION_AS_OF") else None,
            oidc_issuer=env.get("OSMANTHUS_OIDC_ISSUER") or None,
            oidc_audience=env.get("OSMANTHUS_OIDC_AUDIENCE") or None,
            oidc_citizen_claim=env.get("OSMANTHUS_OIDC_CITIZEN_CLAIM") or cls.oidc_citizen_claim,
            oidc_citizen_claim_holds=env.get("OSMANTHUS_OIDC_CITIZEN_CLAIM_HOLDS")
            or cls.oidc_citizen_claim_holds,
            oidc_admin_claim=env.get("OSMANTHUS_OIDC_ADMIN_CLAIM") or cls.oidc_admin_claim,
            oidc_admin_role=env.get("OSMANTHUS_OIDC_ADMIN_ROLE") or cls.oidc_admin_role,
            oidc_admin_name_claim=env.get("OSMANTHUS_OIDC_ADMIN_NAME_CLAIM")
            or cls.oidc_admin_name_claim,
            oidc_timeout=float(env.get("OSMANTHUS_OIDC_TIMEOUT", cls.oidc_timeout)),
            oidc_jwks_lifespan=float(env.get("OSMANTHUS_OIDC_JWKS_LIFESPAN",
                                             cls.oidc_jwks_lifespan)),
            oidc_leeway=float(env.get("OSMANTHUS_OIDC_LEEWAY", cls.oidc_leeway)),
        )
        if config.production:
            missing = [name for name in PRODUCTION_SECRETS if not env.get(name)]
            if missing:
                raise ConfigError(f"production needs {', '.join(missing)} to be set")
        return config

    def check(self) -> Config:
        """Refuse a production configuration without its secrets, or with weak ones."""
        if self.production and not self.jwt_secret:
            raise ConfigError("production needs OSMANTHUS_JWT_SECRET to be set")
        if self.production and not self.consent_key:
            raise ConfigError("production needs OSMANTHUS_CONSENT_KEY (an Ed25519 private key, "
                              "PEM) to be set")
        for name, secret in (("OSMANTHUS_JWT_SECRET", self.jwt_secret),
                             *((f"OSMANTHUS_JWT_PREVIOUS[{kid}]", old)
                               for kid, old in self.jwt_previous)):
            if self.production and len(secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"{name} must be at least {MIN_SECRET_BYTES} bytes "
                                  "(RFC 7518 §3.2)")
        if self.production and self.audit_seal_seconds > 0 and not self.audit_key:
            raise ConfigError("production seals the audit log (OSMANTHUS_AUDIT_SEAL_SECONDS > "
                              "0) only with OSMANTHUS_AUDIT_KEY (an Ed25519 private key, PEM)")
        if self.audit_seal_seconds < 0:
            raise ConfigError("OSMANTHUS_AUDIT_SEAL_SECONDS must be 0 (off) or more")
        try:
            from service.base.keys import audit_keys_of, keyring_of

            keyring_of(self)
            audit_keys_of(self)
        except ValueError as error:
            raise ConfigError(f"a signing key is not usable: {error}") from None
        if self.clock_since is not None and self.as_of is None:
            raise ConfigError("OSMANTHUS_CLOCK_SINCE needs OSMANTHUS_AS_OF: the date the city's "
                              "clock started at that instant")
        if self.production and self.as_of is not None:
            raise ConfigError("production runs on the wall clock: unset OSMANTHUS_AS_OF "
                              "(a city in its own time is for the demo and tests)")
        if not 1 <= self.dispute_due_days <= 60:
            raise ConfigError("OSMANTHUS_DISPUTE_DUE_DAYS must be 1 to 60 days")
        self._check_oidc()
        if self.production and self.database_url.startswith("sqlite"):
            raise ConfigError("production needs a PostgreSQL DATABASE_URL, not SQLite")
        return self

    def _check_oidc(self) -> None:
        """An identity provider's settings that cannot work are refused at start-up."""
        if not self.oidc_issuer:
            return
        if not self.oidc_audience:
            raise ConfigError("OSMANTHUS_OIDC_ISSUER needs OSMANTHUS_OIDC_AUDIENCE (the client id)")
        if not self.oidc_issuer.startswith(("https://", "http://")):
            raise ConfigError("OSMANTHUS_OIDC_ISSUER must be an https URL")
        if self.production and not self.oidc_issuer.startswith("https://"):
            raise ConfigError("production needs an https OSMANTHUS_OIDC_ISSUER")
        if self.oidc_issuer == self.jwt_issuer:
            raise ConfigError("OSMANTHUS_OIDC_ISSUER must differ from the service's own issuer")
        if self.oidc_citizen_claim_holds not in ("id_number", "person_key"):
            raise ConfigError("OSMANTHUS_OIDC_CITIZEN_CLAIM_HOLDS must be id_number or person_key")
        if not 0 < self.oidc_timeout <= 30:
            raise ConfigError("OSMANTHUS_OIDC_TIMEOUT must be over 0 and at most 30 seconds")
        if not 0 <= self.oidc_leeway <= 120:
            raise ConfigError("OSMANTHUS_OIDC_LEEWAY must be 0 to 120 seconds")
        if self.oidc_jwks_lifespan <= 0:
            raise ConfigError("OSMANTHUS_OIDC_JWKS_LIFESPAN must be over 0 seconds")

    def with_(self, **changes) -> Config:
        return replace(self, **changes)


def _path(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


def _instant(env: Mapping[str, str], name: str) -> dt.datetime | None:
    """An ISO 8601 instant; one without a UTC offset is read as UTC."""
    text = env.get(name)
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{name} must be an ISO 8601 instant, e.g. 2026-12-06T03:54:00Z") \
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _previous(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """Retired keys, `{kid: key}` as JSON, in a stable order."""
    text = env.get(name)
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(f"{name} must be a JSON object {{kid: key}}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise ConfigError(f"{name} must be a JSON object {{kid: key}}")
    return tuple(sorted(value.items()))


def new_consent_key() -> str:
    """A fresh Ed25519 private key, PEM (what `OSMANTHUS_CONSENT_KEY` holds)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def _new_secrets() -> dict[str, str]:
    return {"OSMANTHUS_PERSON_KEY": secrets.token_urlsafe(32),
            "OSMANTHUS_JWT_SECRET": secrets.token_urlsafe(48),
            "OSMANTHUS_CONSENT_KEY": new_consent_key(),
            "OSMANTHUS_AUDIT_KEY": new_consent_key()}  # the same kind of key: Ed25519, PEM


_PROCESS_SECRETS: dict[str, str] = {}


def _process_secrets() -> dict[str, str]:
    """The secrets of a Config built in code without any (tests): the development secrets
    file's when `OSMANTHUS_SECRETS_FILE` names one (so the CLI and the app agree), else
    random ones for this process."""
    if not _PROCESS_SECRETS:
        named = os.environ.get("OSMANTHUS_SECRETS_FILE")
        fresh = development_secrets(Path(named)) if named else _new_secrets()
        _PROCESS_SECRETS.update(jwt_secret=fresh["OSMANTHUS_JWT_SECRET"],
                                consent_key=fresh["OSMANTHUS_CONSENT_KEY"],
                                audit_key=fresh["OSMANTHUS_AUDIT_KEY"])
    return _PROCESS_SECRETS


def development_secrets(path: Path) -> dict[str, str]:
    """The development secrets in `path`, generated there once (mode 0600) if absent.

    Every process of one development set-up (the demo's CLI steps, each gunicorn worker)
    reads the same file, so a token one signs another accepts; nobody else knows them."""
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        pass
    except ValueError:
        raise ConfigError(f"{path} is not the JSON this file holds; remove it to start "
                          "afresh") from None
    else:
        return stored if all(stored.get(name) for name in DEVELOPMENT_SECRETS) \
            else _add_secrets(path, stored)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = _new_secrets()
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(fresh, out, indent=1)
    try:
        os.link(partial, path)  # whole or not at all; never over another process's file
    except FileExistsError:  # another process made it first: use theirs
        return json.loads(path.read_text())
    finally:
        partial.unlink()
    print(f"osmanthus: generated random development secrets into {path} (mode 0600); "
          "production must set its own (OSMANTHUS_ENV=production)", file=sys.stderr)
    return fresh


def _add_secrets(path: Path, stored: dict[str, str]) -> dict[str, str]:
    """A secrets file from before a secret existed (the audit key, issue 15) gets the new
    ones added, keeping the old; rewritten whole (a rename), mode 0600."""
    fresh = {**_new_secrets(), **{k: v for k, v in stored.items() if v}}
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(fresh, out, indent=1)
    os.replace(partial, path)
    return fresh


def development_environment(env: Mapping[str, str], *, write_back: bool = False
                            ) -> Mapping[str, str]:
    """`env` with any missing secret filled from the development secrets file. With
    `write_back` (the process's own environment) the filled values are exported too, so that
    code reading the environment directly (features/identity.py's person key) sees them."""
    missing = [name for name in DEVELOPMENT_SECRETS if not env.get(name)]
    if not missing:
        return env
    path = Path(env.get("OSMANTHUS_SECRETS_FILE") or DEFAULT_SECRETS_FILE)
    stored = development_secrets(path)
    filled = {**env, **{name: stored[name] for name in missing if stored.get(name)}}
    if write_back:
        for name in missing:
            if stored.get(name):
                os.environ[name] = stored[name]
    return filled


def export_development_secrets() -> None:
    """Outside production, put the development secrets the process lacks into its environment
    (generating the file once): for commands that hash ID numbers without building a Config.
    A production process that lacks one fails where it is read."""
    if os.environ.get("OSMANTHUS_ENV", "development") != "production":
        try:
            development_environment(os.environ, write_back=True)
        except OSError as error:
            raise ConfigError(f"cannot keep development secrets: {error.strerror}") from None
