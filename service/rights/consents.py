"""Consents: a citizen lets one partner ask about named perks until a date, and can revoke it.

A consent yields a token (a JWT with role `consent`, subject the consent id, claims `partner`
and `perks`) that the citizen hands to the partner, e.g. as a QR code. The token alone is worth
nothing: the partner side checks the consents row on every use (not revoked, not expired,
partner and perk match), so revoking works at once even though the token itself lives on.

Dates are the service's one clock (`service.base.clock`), the same as disputes', repairs' and
the audit log's: a consent "until 2027-03-01" lasts to the end of that day in the city's
calendar (China Standard Time, UTC+8) on that clock (the wall clock in production).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from features.rules import add_months
from service.base.clock import CITY_TZ, city_date, clock_of
from service.base.config import Config
from service.base.errors import ApiError
from service.rights import audit
from service.rights.auth import issue_token
from service.rights.disputes import is_id
from service.rights.perks import PerkConfig
from service.scoring.score import ensure_people
from service.store.tables import as_utc, consents, partners

MAX_MONTHS = 12


def expiry_of(until: dt.date) -> dt.datetime:
    """The moment a consent 'until <date>' ends: the next midnight in the city, in UTC."""
    return dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), CITY_TZ).astimezone(dt.UTC)


def state_of(row: dict, now: dt.datetime) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    return "active" if as_utc(row["expires_at"]) > now else "expired"


def public(row: Any, now: dt.datetime) -> dict:
    """A consent as its citizen sees it (no person key), with its state at `now` (the
    service's clock)."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    data.pop("person_key", None)
    for name in ("granted_at", "expires_at", "revoked_at"):
        data[name] = as_utc(data[name])
    data["state"] = state_of(data, now)
    return data


def _check(engine: Engine, perk_config: PerkConfig, partner_id: str, perk_ids: list[str],
           until: dt.date, now: dt.datetime) -> None:
    """422 naming every bad field: unknown partner, perks that do not exist or are another
    partner's, a date not in the future or more than a year on."""
    errors: dict[str, list[str]] = {}
    known = {p["partner_id"] for p in perk_config.partners}
    with engine.connect() as connection:
        registered = connection.execute(
            select(partners.c.partner_id).where(partners.c.partner_id == partner_id)
        ).first()
    if partner_id not in known or registered is None:
        errors["partner_id"] = ["unknown partner"]
    offered = {perk.perk_id: perk.partner_id for perk in perk_config.perks}
    bad = [f"unknown perk (item {i})" if p not in offered  # never echo unknown text back
           else f"{p!r} is not offered by this partner"
           for i, p in enumerate(perk_ids, start=1) if offered.get(p) != partner_id]
    if bad:
        errors["perks"] = bad
    today = city_date(now)
    if until <= today:
        errors["until"] = ["must be a date in the future"]
    elif until > add_months(today, MAX_MONTHS):
        errors["until"] = [f"must be at most {MAX_MONTHS} months from today"]
    if errors:
        raise ApiError(422, "some fields are invalid", errors=errors)


def _token_for(config: Config, row: dict, now: dt.datetime) -> dict:
    minutes = max(1, math.ceil((as_utc(row["expires_at"]) - now).total_seconds() / 60))
    token = issue_token(config, "consent", row["consent_id"], minutes=minutes,
                        claims={"partner": row["partner_id"], "perks": list(row["perks"])})
    return {"consent": public(row, now), "token": token, "qr_svg": qr_svg(token)}


def _same_grant(engine: Engine, person_key: str, key: str | None) -> dict | None:
    if key is None:
        return None
    with engine.connect() as connection:
        row = connection.execute(select(consents).where(
            consents.c.person_key == person_key, consents.c.idempotency_key == key)).first()
    if row is None:
        return None
    data = dict(row._mapping)
    data.pop("idempotency_key", None)
    return data


def grant(engine: Engine, config: Config, perk_config: PerkConfig, person_key: str,
          partner_id: str, perk_ids: list[str], until: dt.date,
          idempotency_key: str | None = None) -> dict:
    """Record a consent and return it with its token.

    `idempotency_key` (the page makes one per grant form): the same key again — a double
    click, a retried request — answers with the consent it already made (and a token for it),
    never a second consent."""
    now = clock_of(config).now()
    perk_ids = list(dict.fromkeys(perk_ids))  # the order given, each perk once
    earlier = _same_grant(engine, person_key, idempotency_key)
    if earlier is not None:
        if (earlier["partner_id"], list(earlier["perks"])) != (partner_id, perk_ids):
            raise ApiError(409, "this idempotency key was used for another grant")
        return _token_for(config, earlier, now)
    _check(engine, perk_config, partner_id, perk_ids, until, now)
    row = {"consent_id": uuid.uuid4().hex, "person_key": person_key, "partner_id": partner_id,
           "perks": perk_ids, "granted_at": now, "expires_at": expiry_of(until),
           "revoked_at": None}
    try:
        with engine.begin() as connection:
            ensure_people(connection, [person_key])
            connection.execute(insert(consents).values(**row, idempotency_key=idempotency_key))
            _audit_grant(connection, person_key, row, partner_id, perk_ids, now)
    except IntegrityError:
        earlier = _same_grant(engine, person_key, idempotency_key)  # a concurrent twin won
        if earlier is None:
            raise
        return _token_for(config, earlier, now)
    return _token_for(config, row, now)


def _audit_grant(connection, person_key: str, row: dict, partner_id: str,
                 perk_ids: list[str], now: dt.datetime) -> None:
    audit.append(connection, actor="citizen", action="consent_granted",
                 person_key=person_key, at=now,
                 detail={"consent_id": row["consent_id"], "partner_id": partner_id,
                         "perks": perk_ids, "expires_at": row["expires_at"].isoformat()})


def list_consents(engine: Engine, person_key: str, now: dt.datetime) -> list[dict]:
    """Every consent of the person, newest first: active, expired and revoked (as of `now`,
    the service's clock)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(consents).where(consents.c.person_key == person_key)
            .order_by(consents.c.granted_at.desc(), consents.c.consent_id)
        ).all()
    return [public(row, now) for row in rows]


def revoke(engine: Engine, person_key: str, consent_id: str, now: dt.datetime) -> dict:
    """Revoke one of the person's consents at `now` (the service's clock); 404 if it is not
    theirs; revoking twice changes nothing and is not logged twice."""
    if not is_id(consent_id):
        raise ApiError(404, "no such consent")
    with engine.begin() as connection:
        row = connection.execute(
            select(consents).where(consents.c.consent_id == consent_id,
                                   consents.c.person_key == person_key).with_for_update()
        ).first()
        if row is None:
            raise ApiError(404, "no such consent")
        data = dict(row._mapping)
        if data["revoked_at"] is None:
            data["revoked_at"] = now
            connection.execute(update(consents).where(consents.c.consent_id == consent_id)
                               .values(revoked_at=now))
            audit.append(connection, actor="citizen", action="consent_revoked",
                         person_key=person_key, at=now,
                         detail={"consent_id": consent_id, "partner_id": data["partner_id"]})
    return public(data, now)


def qr_svg(token: str) -> str:
    """The consent token as a QR code for the partner to scan: an inline SVG drawn by segno
    (error correction M, the standard 4-module quiet zone, sized by its viewBox), so the
    citizen's page shows it without a QR encoder of its own."""
    import io

    import segno

    out = io.BytesIO()  # not svg_inline(): the page parses it as SVG, which needs the xmlns
    segno.make(token, error="m", boost_error=False).save(
        out, kind="svg", xmldecl=False, svgns=True, nl=False, scale=1, border=4,
        omitsize=True, svgclass="qr-code", light="#fff")
    return out.getvalue().decode()
