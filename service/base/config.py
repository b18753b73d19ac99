"""Configuration, read from the environment in this one place.

Development (the default) runs with nothing set: a SQLite file under `var/`, no Redis, and
development signing keys. Production (`OSMANTHUS_ENV=production`) refuses to start unless every
secret is given, and never accepts development tokens.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEVELOPMENT_JWT_SECRET = "osmanthus-development-jwt-secret-not-for-production"
PRODUCTION_SECRETS = ("OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET", "DATABASE_URL")


class ConfigError(RuntimeError):
    """Start-up cannot go on: a setting is missing or wrong."""


@dataclass(frozen=True)
class Config:
    env: str = "development"
    database_url: str = "sqlite:///var/osmanthus.db"
    redis_url: str | None = None
    registry_dir: Path = Path("var/registry")
    perks_file: Path | None = None  # None: the demo perks shipped in service/rights/perks.json
    as_of: dt.date | None = None  # online scoring's as-of date; None: today (see scoring.today)
    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_issuer: str = "osmanthus"
    token_minutes: int = 60
    partner_rate_limit: str = "6000/minute"
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
    # The validation snapshot that `POST /v1/admin/models/<v>/promote` runs the gates on.
    validation_features: Path | None = None
    validation_outcomes: Path | None = None
    validation_people: Path | None = None
    validation_as_of: dt.date | None = None
    extra: dict = field(default_factory=dict)  # tests' and extensions' own settings

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        config = cls(
            env=env.get("OSMANTHUS_ENV", "development"),
            database_url=env.get("DATABASE_URL", cls.database_url),
            redis_url=env.get("REDIS_URL") or None,
            registry_dir=Path(env.get("OSMANTHUS_REGISTRY", str(cls.registry_dir))),
            perks_file=Path(env["OSMANTHUS_PERKS"]) if env.get("OSMANTHUS_PERKS") else None,
            as_of=dt.date.fromisoformat(env["OSMANTHUS_AS_OF"]) if env.get("OSMANTHUS_AS_OF")
            else None,
            jwt_secret=env.get("OSMANTHUS_JWT_SECRET", DEVELOPMENT_JWT_SECRET),
            token_minutes=int(env.get("OSMANTHUS_TOKEN_MINUTES", cls.token_minutes)),
            partner_rate_limit=env.get("OSMANTHUS_PARTNER_RATE_LIMIT", cls.partner_rate_limit),
            rate_limit_fail_open=env.get("OSMANTHUS_RATE_LIMIT_FAIL_OPEN", "1") != "0",
            ingest_retry_seconds=float(env.get("OSMANTHUS_INGEST_RETRY_SECONDS",
                                               cls.ingest_retry_seconds)),
            api_key_cache_seconds=float(env.get("OSMANTHUS_API_KEY_CACHE_SECONDS",
                                                cls.api_key_cache_seconds)),
            num_threads=int(env.get("OSMANTHUS_NUM_THREADS", "1")),
            dispute_due_days=int(env.get("OSMANTHUS_DISPUTE_DUE_DAYS", cls.dispute_due_days)),
            validation_features=_path(env, "OSMANTHUS_VALIDATION_FEATURES"),
            validation_outcomes=_path(env, "OSMANTHUS_VALIDATION_OUTCOMES"),
            validation_people=_path(env, "OSMANTHUS_VALIDATION_PEOPLE"),
            validation_as_of=dt.date.fromisoformat(env["OSMANTHUS_VALIDATION_AS_OF"])
            if env.get("OSMANTHUS_VALIDATION_AS_OF") else None,
        )
        if config.production:
            missing = [name for name in PRODUCTION_SECRETS if not env.get(name)]
            if missing:
                raise ConfigError(f"production needs {', '.join(missing)} to be set")
        return config

    def check(self) -> Config:
        """Refuse a production configuration that still uses a development secret."""
        if self.production and self.jwt_secret == DEVELOPMENT_JWT_SECRET:
            raise ConfigError("production must not use the development JWT secret")
        if self.production and len(self.jwt_secret.encode()) < 32:
            raise ConfigError("OSMANTHUS_JWT_SECRET must be at least 32 bytes (RFC 7518 §3.2)")
        if not 1 <= self.dispute_due_days <= 60:
            raise ConfigError("OSMANTHUS_DISPUTE_DUE_DAYS must be 1 to 60 days")
        if self.production and self.database_url.startswith("sqlite"):
            raise ConfigError("production needs a PostgreSQL DATABASE_URL, not SQLite")
        return self

    def with_(self, **changes) -> Config:
        return replace(self, **changes)


def _path(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None
