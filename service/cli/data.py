"""Commands for records and features: `city`, `validate`, `features`."""

from __future__ import annotations

import click

from features.records import Source


@click.command()
@click.option("--people", type=click.IntRange(min=1), required=True, help="Residents to generate.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The same seed gives byte-identical files.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: feeds/, people, outcomes, truth, city.json.")
@click.option("--corrupt-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share of feed rows to spoil on purpose (bad IDs, dates, amounts, values).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def city(people: int, seed: int, out: str, corrupt_rate: float, quiet: bool) -> None:
    """Generate a synthetic city: five record feeds, outcomes and the hidden truth."""
    import time
    from pathlib import Path

    from features.city import generate_city
    from service.base.config import export_development_secrets

    export_development_secrets()  # the person key: random, generated once in development
    started = time.perf_counter()
    try:
        manifest = generate_city(people, seed, Path(out), corrupt_rate=corrupt_rate,
                                 progress=not quiet)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    seconds = time.perf_counter() - started
    click.echo(f"city of {people:,} people (seed {seed}) → {out} in {seconds:.1f} s")
    for source, rows in manifest.rows.items():
        spoiled = manifest.corrupted.get(source, 0)
        click.echo(f"  {source:<16} {rows:>12,} rows" + (f" ({spoiled:,} corrupted)" if spoiled else ""))
    rates = ", ".join(f"{snap}: {rate:.2%}" for snap, rate in manifest.default_rate.items())
    click.echo(f"  default rate     {rates}")


@click.command()
@click.argument("feed", type=click.Path(exists=True))
@click.option("--source", type=click.Choice([s.value for s in Source]),
              help="The feed's source (required when FEED is a file).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: records/<source>.parquet and quarantine/<source>.parquet.")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]),
              help="Date after which a record is 'in the future' (default: today).")
def validate(feed: str, source: str | None, out: str, today) -> None:
    """Validate a FEED (CSV or Parquet, one source per file) against its source's contract.

    Good rows go, typed and keyed by person key and record_id, to OUT/records/<source>.parquet
    (the folder `osmanthus features --records` reads); each bad row goes once to
    OUT/quarantine/<source>.parquet with its row number, field and reason. FEED may also be a
    folder holding <source>.parquet or <source>.csv files: each one found is validated. A feed
    that cannot be used at all (unreadable, missing a required column) stops the command with
    a non-zero exit status; no raw ID number is ever written or printed.
    """
    from pathlib import Path

    from service.base.config import export_development_secrets

    export_development_secrets()  # the person key: random, generated once in development

    from features.validate import FeedError, validate_feed

    feed_path, out_dir = Path(feed), Path(out)
    if feed_path.is_dir():
        found = [(path, path.stem) for path in sorted(feed_path.iterdir())
                 if path.suffix in (".parquet", ".csv") and (source or path.stem) == path.stem]
        jobs = [(path, stem) for path, stem in found if stem in {s.value for s in Source}]
        if not jobs:
            raise click.ClickException(f"no <source>.parquet or <source>.csv feed in {feed}")
    elif source is None:
        raise click.ClickException("--source is required when FEED is a file")
    else:
        jobs = [(feed_path, source)]
    today_date = today.date() if today else None
    for path, name in jobs:
        try:
            result = validate_feed(path, name, today=today_date)
        except FeedError as error:
            raise click.ClickException(str(error)) from None
        for kind, frame in (("records", result.records), ("quarantine", result.quarantine)):
            (out_dir / kind).mkdir(parents=True, exist_ok=True)
            frame.write_parquet(out_dir / kind / f"{name}.parquet")
        summary = result.summary()
        click.echo(f"{name}: {summary['rows_read']:,} rows read, {summary['good']:,} good, "
                   f"{summary['quarantined']:,} quarantined → {out_dir}")
        for field, count in summary["by_field"].items():
            click.echo(f"  {field:<20} {count:>10,} quarantined")
        if summary["ignored_columns"]:
            click.echo(f"  ignored unknown columns: {', '.join(summary['ignored_columns'])}")


@click.command()
@click.option("--records", "records_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of typed records, <source>.parquet: DIR/records after `validate --out DIR`.")
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
