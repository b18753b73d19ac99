"""Commands for records and features: `city`, `validate`, `features`."""

from __future__ import annotations

import click


@click.command()
def city() -> None:
    """Generate a synthetic city (not yet built)."""
    raise click.ClickException("not yet built")


@click.command()
def validate() -> None:
    """Validate a feed (not yet built)."""
    raise click.ClickException("not yet built")


@click.command()
def features() -> None:
    """Build features as of a date (not yet built)."""
    raise click.ClickException("not yet built")
