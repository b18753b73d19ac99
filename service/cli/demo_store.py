"""The second half of `osmanthus demo`: the city in the store, scored, with partners, a consent,
and the `curl` lines to try it (settings come from the environment the demo set up)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path

import click
import polars as pl
from sqlalchemy import select

from features.records import Source
from features.rules import add_months
from service.base.config import Config
from service.base.progress import progress_bar, reporter
from service.scoring.everyone import PARALLEL_FROM

# a resident's trend needs more than one point: the demo also scores the city at the three
# quarter-starts before its as-of date, from the records known then (features are point in time)
TREND_MONTHS = (9, 6, 3)

DEMO_PARTNER, DEMO_PERK = "city-bikes", "bike-deposit-free"


def load_and_score(city_dir: Path, *, workers: int, step: Callable[[str], None]) -> None:
    """Every feed through `service.store.ingest` (validated, quarantined, upserted), then everyone
    in the city scored as of the service's today."""
    quiet = ("alembic", "features.validate", "service.store.ingest", "service.scoring.serving",
             "service.scoring.batch")
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name in quiet:  # the lines below say it all; restored afterwards
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        _load_and_score(city_dir, workers=workers, step=step)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _load_and_score(city_dir: Path, *, workers: int, step: Callable[[str], None]) -> None:
    from service.scoring.everyone import rescore_store
    from service.scoring.score import ensure_people, today
    from service.store.ingest import ingest_feed
    from service.store.tables import make_engine, migrate

    config = Config.from_env()
    engine = make_engine(config.database_url)
    if engine.dialect.name == "sqlite":
        _bulk_load_pragmas(engine)
    migrate(engine)
    started = time.monotonic()
    for source in Source:
        feed = city_dir / "feeds" / f"{source.value}.parquet"
        began = time.monotonic()
        rows = pl.scan_parquet(feed).select(pl.len()).collect().item()
        with progress_bar(rows, source.value, " rows") as bar:
            summary = ingest_feed(engine, feed, source, on_chunk=reporter(bar))
        click.echo(f"  {source.value:<16} {summary.rows_stored:>10,} stored "
                   f"{summary.rows_quarantined:>7,} quarantined  "
                   f"({time.monotonic() - began:.1f} s)")
    click.echo(f"  ingested in {time.monotonic() - started:.1f} s")

    keys = pl.read_parquet(city_dir / "people.parquet")["person_key"].to_list()
    with engine.begin() as connection:  # residents with no record yet are scored too
        ensure_people(connection, keys)
    as_of = today(config)
    workers = workers if len(keys) > PARALLEL_FROM else 1
    history = [add_months(as_of, -months) for months in TREND_MONTHS]
    step(f"Score all {len(keys):,} residents as of {as_of}, and as of "
         f"{', '.join(map(str, history))} for their trend ({workers} "
         f"process{'es' if workers > 1 else ''}, in shards)")
    for day in history:  # oldest first: the newest date's rows are the person's latest score
        past = rescore_store(config, engine, None, workers=workers, as_of=day, progress=True)
        click.echo(f"  scored {past.scored:,} people as of {day} in {past.seconds:.1f} s")
    run = rescore_store(config, engine, None, workers=workers, as_of=as_of, progress=True)
    click.echo(f"  scored {run.scored:,} people with {run.model_version} in {run.seconds:.1f} s "
               f"(run {run.run_id})")
    print_bands_and_perks(engine, as_of)
    engine.dispose()


def print_bands_and_perks(engine, as_of: dt.date) -> dict:
    """The city as scored: how many residents each band holds and how many each perk would
    approve and refuse (score, conditions and the thin-file rule, as a partner would be
    answered). Returns the counts, so a test can hold them."""
    from model.scorecard import BANDS
    from service.rights.perks import load_perks
    from service.store.tables import scores

    with engine.connect() as connection:
        rows = connection.execute(select(scores.c.score, scores.c.band, scores.c.reasons)
                                  .where(scores.c.as_of == as_of)).all()
    total = max(len(rows), 1)
    bands = {name: 0 for _, name in BANDS}
    for row in rows:
        bands[row.band] = bands.get(row.band, 0) + 1
    click.echo("  bands:  " + ", ".join(f"{name} {count:,} ({100 * count / total:.1f}%)"
                                         for name, count in bands.items()))
    approvals = {}
    for perk in load_perks().perks:
        yes = sum(perk.decide(row.score, row.reasons.get("features") or {}) == "yes"
                  for row in rows)
        approvals[perk.perk_id] = {"approved": yes, "refused": len(rows) - yes}
        click.echo(f"  {perk.perk_id:<22} (≥{perk.min_score:g}) approved {yes:>7,}  "
                   f"refused {len(rows) - yes:>7,}")
    return {"bands": bands, "perks": approvals}


def _bulk_load_pragmas(engine) -> None:
    """A loading connection may keep more pages in memory and sync at checkpoints only
    (WAL mode: a crash loses at most the last transactions, never the database)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA cache_size=-131072")  # up to 128 MiB
        cursor.close()


def set_up_partners(root: Path) -> dict:
    """Register every demo partner with a fresh API key, and let one resident who qualifies
    for the bicycle perk consent to the bicycle company asking about it."""
    from service.app import create_app
    from service.base.clock import clock_of
    from service.rights.auth import issue_token
    from service.rights.consents import grant
    from service.rights.partners import add_partner
    from service.store.tables import scores

    config = Config.from_env()
    app = create_app(config)  # also seeds the perk policy table
    engine, perk_config = app.extensions["osmanthus.engine"], app.extensions["osmanthus.perks"]
    keys = {p["partner_id"]: add_partner(engine, p["partner_id"], p["name"], rotate=True)
            for p in perk_config.partners}
    for partner_id in keys:
        click.echo(f"  partner {partner_id:<16} API key issued (shown below, once)")

    perk = perk_config.perk(DEMO_PERK)
    with engine.connect() as connection:
        rows = connection.execute(select(scores.c.person_key, scores.c.score, scores.c.reasons)
                                  .order_by(scores.c.score.desc(), scores.c.person_key)
                                  .limit(500)).all()
    chosen = next((r for r in rows if (r.reasons.get("records_counted") or 0) > 0
                   and perk.decide(r.score, r.reasons["features"]) == "yes"), rows[0])
    consent = grant(engine, config, perk_config, chosen.person_key, DEMO_PARTNER, [DEMO_PERK],
                    clock_of(config).today() + dt.timedelta(days=30))
    click.echo(f"  resident {chosen.person_key[:12]}… (score {chosen.score:.0f}) consents to "
               f"{DEMO_PARTNER} asking about {DEMO_PERK} for 30 days")
    engine.dispose()
    day = 24 * 60
    return {
        "person_key": chosen.person_key,
        "citizen_token": issue_token(config, "citizen", chosen.person_key, minutes=day,
                                     development=True),
        "admin_token": issue_token(config, "admin", "demo", minutes=day, development=True),
        "consent_token": consent["token"], "partner_keys": keys,
    }


def print_curl_lines(access: dict, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    bike_key = access["partner_keys"][DEMO_PARTNER]
    body = '{"consent_token": "\'"$CONSENT_TOKEN"\'", "perk_id": "' + DEMO_PERK + '"}'
    lines = [
        "# development tokens and keys, valid for a day (paste these first):",
        f"export OSM={base}",
        f"export CITIZEN_TOKEN={access['citizen_token']}",
        f"export ADMIN_TOKEN={access['admin_token']}",
        f"export CONSENT_TOKEN={access['consent_token']}",
        f"export BIKE_KEY={bike_key}",
        "",
        "curl -s $OSM/healthz",
        "curl -s $OSM/readyz",
        'curl -s $OSM/v1/me/score -H "Authorization: Bearer $CITIZEN_TOKEN"',
        'curl -s $OSM/v1/me/explanation -H "Authorization: Bearer $CITIZEN_TOKEN" '
        '-H "Accept-Language: zh"',
        'curl -s $OSM/v1/me/perks -H "Authorization: Bearer $CITIZEN_TOKEN"',
        f"curl -s -X POST $OSM/v1/partner/eligibility -H \"X-API-Key: $BIKE_KEY\" "
        f"-H 'Content-Type: application/json' -d '{body}'",
        'curl -s $OSM/v1/admin/models -H "Authorization: Bearer $ADMIN_TOKEN"',
        f"open {base}/openapi.json for every operation",
        f"open {base}/app in a browser and paste $CITIZEN_TOKEN to see the citizen's page",
    ]
    click.secho("\nTry it:", bold=True)
    for line in lines:
        click.echo(f"  {line}" if line else "")
    others = {k: v for k, v in access["partner_keys"].items() if k != DEMO_PARTNER}
    if others:
        click.echo("  # the other demo partners' API keys: " +
                   ", ".join(f"{k}={v}" for k, v in others.items()))
