"""`osmanthus demo`: the README's main job, end to end on a fresh machine.

Each step is the documented command, invoked with the arguments a person would type, so the
demo can never drift from the CLI: generate a city (with a few bad rows on purpose), validate
its feeds, build features at the training, validation and current snapshots, train a scorecard
out of time, evaluate it against the truth and across groups, register it and promote it to
champion through the same gates as any challenger. Then it loads the city into the store
(every feed through `service.store.ingest`, so quarantine is exercised), scores everyone as of the
city's "today", registers the demo partners with API keys, grants one consent, prints
ready-to-paste `curl` lines, and serves the API under gunicorn (unless `--no-serve`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from service.rights.perks import DEFAULT_PERKS_FILE

TRAIN_AS_OF = "2024-01-01"
VALID_AS_OF = "2025-01-01"
CURRENT_AS_OF = "2026-01-01"
PERKS_FILE = DEFAULT_PERKS_FILE


def _step(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


@click.command()
@click.option("--people", default=20_000, show_default=True, type=click.IntRange(min=500))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--dir", "workdir", default="var/demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for everything the demo writes.")
@click.option("--fresh/--keep", default=True, show_default=True,
              help="Start from an empty folder (the default) or keep what is there.")
@click.option("--serve/--no-serve", "serve_", default=True, show_default=True,
              help="Serve the API when the city is scored.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes for scoring and gunicorn workers (default: the CPUs, at most 4).")
@click.pass_context
def demo(ctx: click.Context, people: int, seed: int, workdir: str, fresh: bool, serve_: bool,
         port: int, workers: int | None) -> None:
    """Generate a demo city, train, evaluate and promote a champion, load and score the city,
    and serve the API."""
    import time

    started = time.monotonic()
    from service.cli.data import city, features, validate
    from service.cli.model import evaluate, models
    from service.cli.train import train

    root = Path(workdir)
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OSMANTHUS_REGISTRY", str(root / "registry"))
    city_dir, feature_dir = root / "city", root / "features"
    _serving_environment(root, city_dir, feature_dir)

    _step(f"1. A synthetic city of {people:,} people (1% of feed rows spoiled on purpose)")
    ctx.invoke(city, people=people, seed=seed, out=str(city_dir), corrupt_rate=0.01, quiet=False)

    _step("2. Validate the feeds: good rows typed and keyed, bad rows quarantined")
    ctx.invoke(validate, feed=str(city_dir / "feeds"), source=None, out=str(root), today=None)

    _step("3. Features as of each snapshot")
    people_file = str(city_dir / "people.parquet")
    for as_of in (TRAIN_AS_OF, VALID_AS_OF, CURRENT_AS_OF):
        ctx.invoke(features, records_dir=str(root / "records"), as_of=_date(as_of),
                   people_file=people_file, out=str(feature_dir / f"{as_of}.parquet"))

    _step(f"4. Train on {TRAIN_AS_OF}, validate out of time on {VALID_AS_OF}")
    model_dir = root / "models" / "candidate"
    shutil.rmtree(model_dir, ignore_errors=True)
    ctx.invoke(train, **_train_arguments(feature_dir, city_dir, model_dir, seed))

    _step("5. Evaluate: discrimination, calibration, stability, fairness, the true upper bound")
    snapshot = dict(features_path=str(feature_dir / f"{VALID_AS_OF}.parquet"),
                    outcomes_path=str(city_dir / "outcomes.parquet"), as_of=_date(VALID_AS_OF),
                    people_path=people_file, perks_path=str(PERKS_FILE))
    ctx.invoke(evaluate, model_ref=str(model_dir), truth_path=str(city_dir / "truth.parquet"),
               train_path=str(feature_dir / f"{TRAIN_AS_OF}.parquet"),
               out_dir=str(root / "reports"), registry_root=None, **snapshot)

    _step("6. Register and promote through the gates")
    ctx.invoke(models.commands["register"], directory=str(model_dir), by="demo",
               why="demo city", registry_root=None)
    version = _latest_version()
    ctx.invoke(models.commands["promote"], version=version, force=False, why=None, by="demo",
               registry_root=None, **snapshot)
    ctx.invoke(models.commands["list"], registry_root=None)

    from service.cli.demo_store import load_and_score, print_curl_lines, set_up_partners

    workers = workers or min(4, os.cpu_count() or 1)
    _step(f"7. Load the city into the store ({os.environ['DATABASE_URL']})")
    load_and_score(city_dir, workers=workers, step=_step)
    _step("8. Partners, their API keys, and one citizen's consent")
    demo_access = set_up_partners(root)

    click.secho(f"\nDone in {time.monotonic() - started:.0f} s.", bold=True)
    click.echo(f"  report:     {root / 'reports' / 'evaluation.md'}")
    click.echo(f"  model card: {os.environ['OSMANTHUS_REGISTRY']}/versions/{version}/MODEL_CARD.md")
    click.echo(f"  store:      {os.environ['DATABASE_URL']}")
    click.echo(f"  clock:      the city's {os.environ['OSMANTHUS_AS_OF']} began at "
               f"{os.environ['OSMANTHUS_CLOCK_SINCE']} and runs on (to serve this city again "
               "later, set OSMANTHUS_AS_OF and OSMANTHUS_CLOCK_SINCE to these)")
    print_curl_lines(demo_access, port)
    if serve_:
        from service.cli.service import execute, gunicorn_command

        argv, env = gunicorn_command("127.0.0.1", port, min(workers, 2), None, 120)
        click.secho(f"\nServing on http://127.0.0.1:{port} (Ctrl-C stops it)", bold=True)
        sys.stdout.flush()
        execute(argv, env)


def _serving_environment(root: Path, city_dir: Path, feature_dir: Path) -> None:
    """The settings of the demo's store and server, unless already set: a SQLite file in the
    demo folder, the city's own clock, and the validation snapshot promotions are gated on.

    The city's clock (`service.base.clock`): its records run to December 2025, so its day
    starts at 2026-01-01 00:00 (city time) now, and runs at real speed from here; the demo
    scores everyone as of that day, and every consent, dispute, review, repair and audit row
    is dated on the same clock, so the page shows one world."""
    import datetime as dt

    defaults = {
        "DATABASE_URL": f"sqlite:///{(root / 'osmanthus.db').resolve()}",
        "OSMANTHUS_AS_OF": CURRENT_AS_OF,
        "OSMANTHUS_CLOCK_SINCE": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "OSMANTHUS_VALIDATION_FEATURES": str((feature_dir / f"{VALID_AS_OF}.parquet").resolve()),
        "OSMANTHUS_VALIDATION_OUTCOMES": str((city_dir / "outcomes.parquet").resolve()),
        "OSMANTHUS_VALIDATION_PEOPLE": str((city_dir / "people.parquet").resolve()),
        "OSMANTHUS_VALIDATION_AS_OF": VALID_AS_OF,
        # random secrets, generated once into the demo's own folder (mode 0600)
        "OSMANTHUS_SECRETS_FILE": str((root / "secrets.json").resolve()),
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    from service.base.config import export_development_secrets

    export_development_secrets()
    os.environ["OSMANTHUS_REGISTRY"] = str(Path(os.environ["OSMANTHUS_REGISTRY"]).resolve())


def _date(text: str):
    import datetime as dt

    return dt.datetime.strptime(text, "%Y-%m-%d")


def _train_arguments(feature_dir: Path, city_dir: Path, model_dir: Path, seed: int) -> dict:
    """`osmanthus train` in catalog mode; `ctx.invoke` fills every other option's default."""
    return dict(
        features_path=str(feature_dir / f"{TRAIN_AS_OF}.parquet"),
        valid_features_path=str(feature_dir / f"{VALID_AS_OF}.parquet"),
        outcomes_path=str(city_dir / "outcomes.parquet"),
        train_as_of=_date(TRAIN_AS_OF), valid_as_of=_date(VALID_AS_OF),
        people_path=str(city_dir / "people.parquet"), out_dir=str(model_dir), seed=seed,
        description="Osmanthus demo city scorecard",
    )


def _latest_version() -> str:
    from model.registry import Registry

    return Registry().list()[-1]["version"]
