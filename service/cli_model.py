"""Commands for the scorecard: `train`, `score`, `evaluate`, `models`."""

from __future__ import annotations

import click


@click.command()
def train() -> None:
    """Train a scorecard (not yet built)."""
    raise click.ClickException("not yet built")


@click.command()
def score() -> None:
    """Score a table (not yet built)."""
    raise click.ClickException("not yet built")


@click.command()
def evaluate() -> None:
    """Evaluate a model (not yet built)."""
    raise click.ClickException("not yet built")


@click.group()
def models() -> None:
    """The model registry (not yet built)."""
