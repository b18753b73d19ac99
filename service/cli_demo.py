"""`osmanthus demo`: the README's main job, end to end on a fresh machine."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Generate a demo city and build its features (grows with each layer)."""
    raise click.ClickException("not yet built")
