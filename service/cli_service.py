"""Commands for the running service: `ingest`, `audit verify`, `token`."""

from __future__ import annotations

import click

from features.records import Source
from service.config import Config


def _engine(config: Config):
    from service.store import make_engine, migrate

    engine = make_engine(config.database_url)
    migrate(engine)
    return engine


@click.command()
@click.argument("feed", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", required=True, type=click.Choice([s.value for s in Source]),
              help="Which record source the feed holds (one source per file).")
def ingest(feed: str, source: str) -> None:
    """Validate FEED and store its good rows; bad rows are quarantined with their reasons.

    Safe to repeat: re-sending a feed, or one that was cut off halfway, never duplicates or
    loses a record."""
    from features.validate import FeedError
    from service.ingest import ingest_feed

    config = Config.from_env()
    try:
        summary = ingest_feed(_engine(config), feed, source)
    except FeedError as error:
        raise click.ClickException(str(error)) from None
    for line in summary.lines():
        click.echo(line)


@click.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the audit chain; exit 1 and name the first broken link if a row was altered."""
    from service.audit import verify

    verdict = verify(_engine(Config.from_env()))
    if verdict.ok:
        click.echo(f"audit log intact: {verdict.rows} rows")
        return
    click.echo(f"audit log BROKEN at row {verdict.broken_at}: {verdict.why} "
               f"({verdict.rows} rows read)", err=True)
    raise SystemExit(1)


@click.command()
@click.argument("role", type=click.Choice(["citizen", "admin"]))
@click.argument("subject")
@click.option("--minutes", type=int, default=24 * 60, show_default=True)
def token(role: str, subject: str, minutes: int) -> None:
    """Issue a development token (refused by a production deployment).

    SUBJECT is a person key for a citizen, or a name for an admin."""
    from service.auth import issue_token

    config = Config.from_env()
    if config.production:
        raise click.ClickException("development tokens cannot be issued in production")
    click.echo(issue_token(config, role, subject, minutes=minutes, development=True))
