"""The `osmanthus` command. Each group of subcommands lives in its own module; this file only
gathers them, so that adding a command never means editing someone else's."""

from __future__ import annotations

import logging

import click

from service.cli.audit_remote import verify_remote
from service.cli.batch import batch
from service.cli.data import city, features, validate
from service.cli.demo import demo
from service.cli.disputes import disputes
from service.cli.model import evaluate, models, score
from service.cli.recal import recalibrate
from service.cli.report import report
from service.cli.service import audit, ingest, partners, rescore, serve, token
from service.cli.train import train


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Osmanthus (桂花分): an open, explainable citizen credit score."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for command in (city, validate, features, train, score, evaluate, models, ingest, audit, token,
                partners, rescore, serve, demo):
    main.add_command(command)
main.add_command(report)
main.add_command(batch)
main.add_command(recalibrate)
main.add_command(disputes)
audit.add_command(verify_remote)  # the outside auditor's check, beside `audit verify`
