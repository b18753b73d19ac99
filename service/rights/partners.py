"""Partners and their API keys, behind `osmanthus partners` and the demo: who may ask the
yes/no question at all. Only a key's SHA-256 is stored (`auth.new_api_key`)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select

from service.rights.auth import new_api_key
from service.store.tables import partners


def add_partner(engine: Engine, partner_id: str, name: str, *, rotate: bool = False) -> str:
    """Register a partner (or give an existing one a new key with `rotate`); returns the key,
    of which only the SHA-256 is stored."""
    if not partner_id or len(partner_id) > 64 or not partner_id.replace("-", "").isalnum():
        raise ValueError("a partner id is 1 to 64 letters, digits or hyphens")
    key, hashed = new_api_key()
    with engine.begin() as connection:
        exists = connection.execute(select(partners.c.partner_id)
                                    .where(partners.c.partner_id == partner_id)).first()
        if exists and not rotate:
            raise ValueError(f"partner {partner_id} exists; --rotate gives it a new key")
        if exists:
            connection.execute(partners.update().where(partners.c.partner_id == partner_id)
                               .values(name=name, api_key_hash=hashed))
        else:
            connection.execute(partners.insert().values(
                partner_id=partner_id, name=name, api_key_hash=hashed,
                created_at=dt.datetime.now(dt.UTC)))
    return key


def list_partners(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(partners.c.partner_id, partners.c.name,
                                         partners.c.created_at).order_by(partners.c.partner_id))
        return [dict(row._mapping) for row in rows]
