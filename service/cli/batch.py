"""`osmanthus batch score`: the whole city in shards, in local processes or on Dask."""

from __future__ import annotations

import click

from service.base.config import Config
from service.scoring.batch import CHUNK


@click.group()
def batch() -> None:
    """Batch jobs over the whole store, split into shards by person key."""


@batch.command("score")
@click.option("--shards", type=click.IntRange(min=1), required=True,
              help="How many shards to split the people into (by a hash of the person key).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="A local process pool, or a Dask distributed cluster.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="A Dask scheduler (tcp://host:8786); without it --engine dask starts a "
              "LocalCluster on 127.0.0.1.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Score as of this date (default: the service's today, OSMANTHUS_AS_OF).")
@click.option("--run-id", default=None,
              help="Name the run; calling again with the same id resumes its unfinished "
              "shards (default: a new id).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local processes, or LocalCluster workers (default: CPUs; 2 for Dask).")
@click.option("--chunk", type=click.IntRange(min=1), default=CHUNK, show_default=True,
              help="People per transaction inside a shard.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def batch_score_command(shards: int, engine: str, scheduler: str | None, as_of, run_id,
                        workers: int | None, chunk: int, quiet: bool) -> None:
    """Score everyone in the store with the champion, shard by shard.

    Each row carries the run id and the model version. Re-running a run id never duplicates
    a row; a run that was stopped resumes at its unfinished shards and keeps its model and
    as-of date. On Dask, a shard whose worker is lost is retried."""
    from service.scoring.batch import BatchError, batch_score
    from service.scoring.score import today
    from service.store.tables import make_engine, migrate

    config = Config.from_env()
    store = make_engine(config.database_url)
    migrate(store)
    store.dispose()
    try:
        run = batch_score(config.database_url, config.registry_dir, shards=shards,
                          engine=engine, scheduler=scheduler,
                          as_of=as_of.date() if as_of else None,
                          default_as_of=today(config), run_id=run_id,
                          workers=workers, chunk=chunk, num_threads=config.num_threads,
                          redis_url=config.redis_url, progress=not quiet)
    except BatchError as error:
        raise click.ClickException(str(error)) from None
    click.echo(run.summary())
    if not run.complete:
        raise click.ClickException(
            f"{run.missing:,} people still have no score in run {run.run_id} (people added "
            f"during the run?): run again with --run-id {run.run_id}")
