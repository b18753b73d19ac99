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
@click.option("--records", "records_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of typed records, <source>.parquet (as `validate --out` writes).")
@click.option("--as-of", "as_of", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Features see only what was known before this date (YYYY-MM-DD).")
@click.option("--people", "people_file", type=click.Path(exists=True, dir_okay=False),
              help="Parquet with a person_key column: everyone listed gets a row, even "
                   "with no records (default: everyone who has a record).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Parquet file to write: person_key, one column per catalog feature.")
def features(records_dir: str, as_of, people_file: str | None, out: str) -> None:
    """Build every person's features as of a date."""
    import time
    from pathlib import Path

    import polars as pl

    from features.build import build_features
    from features.records import Records

    started = time.perf_counter()
    records = Records.read_parquet(records_dir)
    persons = pl.read_parquet(people_file, columns=["person_key"])["person_key"] \
        if people_file else None
    table = build_features(records, as_of.date(), persons)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(out)
    click.echo(f"features as of {as_of.date()}: {table.height:,} people × "
               f"{table.width - 2} features → {out} ({time.perf_counter() - started:.1f} s)")
