"""`osmanthus disputes sweep`: re-score the people whose dispute went overdue since their last
score (service/rights/overdue.py), so that the stored scores leave those records out without
anyone asking first. Each API worker also sweeps once an hour (`OSMANTHUS_SWEEP_SECONDS`), and
serving never answers from a stale score; this is for a cron job or an operator."""

from __future__ import annotations

import click


@click.group()
def disputes() -> None:
    """Disputes kept on time."""


@disputes.command()
def sweep() -> None:
    """Re-score everyone whose dispute went unanswered past its due date since their last
    score, as of the service's today."""
    from service.app import create_app
    from service.base.clock import clock_of
    from service.base.config import Config
    from service.rights.overdue import sweep as sweep_people

    config = Config.from_env()
    app = create_app(config)
    serving = app.extensions["osmanthus.model"]
    if not serving.ready:
        raise click.ClickException(f"no model to score with: {serving.problem}")
    keys = sweep_people(app)
    click.echo(f"re-scored {len(keys):,} people whose dispute went overdue "
               f"(as of {clock_of(config).today()})")
    app.extensions["osmanthus.engine"].dispose()
