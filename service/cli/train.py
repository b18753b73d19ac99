"""`osmanthus train`: a scorecard from a features snapshot or any table, on this machine or
on a Dask cluster (model/train_dask.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
import polars as pl

from service.cli.model import (
    _directions_file,
    _perk_thresholds,
    _points_scale,
    _scale_options,
    _table_or_none,
)


@click.command()
@click.option("--features", "features_path", type=click.Path(exists=True),
              help="Catalog mode: features table (person_key, [snapshot], catalog features); "
              "with --engine dask also a directory of Parquet partitions.")
@click.option("--valid-features", "valid_features_path", type=click.Path(exists=True),
              help="Catalog mode: the validation snapshot's features (default: --features).")
@click.option("--outcomes", "outcomes_path", type=click.Path(exists=True),
              help="Catalog mode: outcomes (person_key, snapshot, defaulted).")
@click.option("--train-as-of", type=click.DateTime(["%Y-%m-%d"]),
              help="Catalog mode: the snapshot to fit on.")
@click.option("--valid-as-of", type=click.DateTime(["%Y-%m-%d"]),
              help="Catalog mode: a later snapshot to calibrate and validate on.")
@click.option("--people", "people_path", type=click.Path(exists=True, dir_okay=False),
              help="People (person_key, gender, birth_date, district) for the fairness tables.")
@click.option("--perks", "perks_path", type=click.Path(exists=True, dir_okay=False),
              help="Catalog mode: the perk configuration whose minimum scores the fairness "
              "tables are read at (default: the service's perks, as the promotion gates use).")
@click.option("--table", "table_path", type=click.Path(exists=True),
              help="Table mode: any credit table (CSV/Parquet; with --engine dask also a "
              "directory of Parquet partitions) with a target column.")
@click.option("--valid-table", "valid_table_path", type=click.Path(exists=True),
              help="Table mode: a later table to calibrate and validate on.")
@click.option("--target", help="Table mode: the target column.")
@click.option("--bad", default=None, help="Table mode: the target value meaning default "
              "(needed unless the target is 0/1).")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False),
              help="Table mode: JSON {column: 1 | -1 | 0}, monotone directions (else free).")
@click.option("--infer-directions/--no-infer-directions", default=True, show_default=True,
              help="Table mode: give every numeric column the catalog does not declare a "
              "monotone direction, the sign of its Spearman correlation with the target "
              "(model/table_mode.py); with --no-infer-directions they are free.")
@click.option("--separator", default=None,
              help="Table mode: the CSV delimiter (default ',', tab for .tsv).")
@click.option("--id-column", "id_columns", multiple=True,
              help="Table mode: a column that is not a feature (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The model directory to write (must not exist or be empty).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--num-threads", default=1, show_default=True, type=int,
              help="LightGBM threads (with --engine dask: per LocalCluster worker).")
@click.option("--description", default="", help="A line for the model card.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="local: in this process; dask: lightgbm.dask on a Dask "
              "cluster, reading the table lazily (for tables larger than one machine).")
@click.option("--scheduler", default=None, help="Dask engine: the scheduler's address "
              "(default: a LocalCluster on 127.0.0.1).")
@click.option("--workers", type=int, default=None,
              help="Dask engine: LocalCluster worker processes (default 2).")
@click.option("--rounds", type=int, default=None, help="Dask engine: boosting rounds (default: "
              "chosen by k-fold CV on an in-memory sample).")
@_scale_options
def train(features_path: str | None, valid_features_path: str | None,
          outcomes_path: str | None, train_as_of: dt.datetime | None,
          valid_as_of: dt.datetime | None, people_path: str | None, perks_path: str | None,
          table_path: str | None,
          valid_table_path: str | None, target: str | None, bad: str | None,
          catalog_path: str | None, infer_directions: bool, separator: str | None,
          id_columns: tuple[str, ...], out_dir: str, seed: int,
          num_threads: int, description: str, engine: str, scheduler: str | None,
          workers: int | None, rounds: int | None, base_score: float | None,
          base_odds: float | None, pdo: float | None) -> None:
    """Train a scorecard and write it as a model directory.

    \b
    Catalog mode (the city's features, catalog directions):
      osmanthus train --features F.parquet --outcomes O.parquet \\
        --train-as-of 2024-01-01 --valid-as-of 2025-01-01 --out models/new
    Table mode (any credit table; text columns become categories):
      osmanthus train --table credit.csv --target default [--bad yes] \\
        [--catalog directions.json] [--valid-table later.csv] --out models/credit
    On a Dask cluster (either mode; tables may be directories of Parquet partitions):
      osmanthus train --engine dask [--scheduler tcp://HOST:8786] --features parts/ ...
    In any mode, --base-score/--base-odds/--pdo anchor the points scale.
    """
    from features.catalog import SCORED_FEATURES, directions
    from model.bundle import frame_hash, save_model
    from model.evaluate import evaluate as run_evaluation
    from model.evaluate import snapshot
    from model.scorecard import PointsScale
    from model.table_mode import check_columns, prepare_table
    from model.train import ID_COLUMNS, encode_target, read_table, train_scorecard

    if (table_path is None) == (features_path is None):
        raise click.UsageError("give either --table (table mode) or --features (catalog mode)")
    if Path(out_dir).exists() and any(Path(out_dir).iterdir()):
        raise click.ClickException(f"{out_dir} is not empty: choose a new model directory")
    scale = _points_scale(PointsScale(), base_score, base_odds, pdo)
    if engine == "dask":
        return _train_dask(features_path is not None, features_path or table_path,
                           outcomes_path, train_as_of,
                           valid_features_path or valid_table_path, valid_as_of, people_path,
                           target, bad, catalog_path, id_columns, out_dir, seed, num_threads,
                           description, scheduler, workers, rounds, scale, perks_path)
    given = [p for p in (features_path, valid_features_path, outcomes_path, table_path,
                         valid_table_path) if p is not None and Path(p).is_dir()]
    if given or rounds is not None:
        raise click.UsageError("directories of partitions and --rounds need --engine dask")
    valid_frame = valid_y = None
    valid_day = None
    table_info: dict | None = None
    try:
        if features_path is not None:
            if outcomes_path is None or train_as_of is None:
                raise click.UsageError("catalog mode needs --outcomes and --train-as-of")
            frame = read_table(features_path)
            outcomes = read_table(outcomes_path)
            train_frame, y, _ = snapshot(frame, outcomes, train_as_of.date())
            if valid_as_of is not None:
                valid_day = valid_as_of.date()
                valid_source = read_table(valid_features_path) if valid_features_path else frame
                valid_frame, valid_y, _ = snapshot(valid_source, outcomes, valid_day)
            features, dirs, bad_value = list(SCORED_FEATURES), directions(), None
            missing = [n for n in features if n not in train_frame.columns]
            if missing:
                raise click.ClickException(f"features table lacks {', '.join(missing[:5])}")
        else:
            if target is None:
                raise click.UsageError("table mode needs --target")
            dirs = _directions_file(catalog_path)
            prepared = prepare_table(read_table(table_path, separator), target,
                                     source=str(table_path), catalog=dirs,
                                     id_columns=[*ID_COLUMNS, *id_columns])
            for line in prepared.warnings:
                click.echo(f"warning: {line}", err=True)
            train_frame, features = prepared.frame, prepared.features
            y, bad_value = train_frame[target], bad
            if valid_table_path:
                valid_frame = read_table(valid_table_path, separator)
                check_columns(valid_frame, str(valid_table_path), target)
                valid_y = valid_frame[target]
            table_info = {"source": Path(table_path).name, "target": target, "bad": bad,
                          "dropped": prepared.dropped, "warnings": prepared.warnings,
                          "infer_directions": infer_directions}
        click.echo(f"training on {len(y)} rows, {len(features)} features"
                   + (f"; validating on {len(valid_y)}" if valid_y is not None else ""))
        card, report = train_scorecard(train_frame, y, valid_frame, valid_y, features=features,
                                       directions=dirs, seed=seed, num_threads=num_threads,
                                       progress=True, bad=bad_value, scale=scale,
                                       infer_directions=table_info is None or infer_directions)
        for line in report.get("warnings") or []:
            click.echo(f"warning: {line}", err=True)
        if table_info is not None:
            report["table"] = table_info
            _echo_directions(report)
        evaluation = None
        if valid_frame is not None:
            # the card's fairness tables at the scores partners' answers turn on (as the
            # promotion gates read them), not at the band edges, which decide nothing
            evaluation = run_evaluation(
                card, valid_frame, encode_target(valid_y, bad_value),
                train_frame=train_frame, people=_table_or_none(people_path), as_of=valid_day,
                thresholds=None if table_info is not None else _perk_thresholds(perks_path))
        save_model(card, out_dir, report=report, evaluation=evaluation,
                   training_data_hash=frame_hash(train_frame.select(features),
                                                 encode_target(y, bad_value)),
                   description=description)
    except (ValueError, KeyError, FileExistsError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error
    except pl.exceptions.PolarsError as error:
        raise click.ClickException(f"could not read the table: {error}") from error
    click.echo(f"{report['rounds']} rounds by {report['cv_folds']}-fold CV, CV AUC "
               f"{report['cv_auc']:.4f}" + (f", validation AUC {report['valid_auc']:.4f}"
                                           if "valid_auc" in report else "")
               + f"; calibrated on {report['calibrated_on']}; base points "
               f"{card.base_points:.1f}")
    click.echo(f"points scale: {scale.base_score:g} at {scale.base_odds:g}:1 good:bad odds, "
               f"PDO {scale.pdo:g}")
    click.echo(f"wrote {out_dir}")


def _echo_directions(report: dict) -> None:
    """One line on the monotone directions (declared, inferred, free) and one per feature whose
    points change direction, so the modeller sees what the regulator will ask about."""
    inferred = report.get("directions_inferred") or {}
    declared = report.get("directions_declared") or {}
    text = set(report.get("categorical") or ())
    free = [n for n, d in (report.get("directions") or {}).items() if not d and n not in text]
    click.echo(f"monotone directions: {sum(1 for d in declared.values() if d)} declared, "
               f"{len(inferred)} inferred (sign of Spearman ρ), {len(free)} free"
               + (f" ({', '.join(free)})" if free else "") + f", {len(text)} text")
    for name, changes in (report.get("direction_changes") or {}).items():
        if changes:
            click.echo(f"points of {name!r} change direction {changes} time(s)")


def _train_dask(catalog: bool, train_path: str, outcomes_path: str | None,
                train_as_of: dt.datetime | None,
                valid_path: str | None, valid_as_of: dt.datetime | None, people_path: str | None,
                target: str | None, bad: str | None, catalog_path: str | None,
                id_columns: tuple[str, ...], out_dir: str, seed: int, num_threads: int,
                description: str, scheduler: str | None, workers: int | None,
                rounds: int | None, scale: Any = None, perks_path: str | None = None) -> None:
    """`train --engine dask` (model/train_dask.py): the same scorecard, fit on a cluster."""
    from features.catalog import SCORED_FEATURES, directions
    from model.bundle import save_model
    from model.train_dask import dask_client, train_files

    if catalog and (outcomes_path is None or train_as_of is None):
        raise click.UsageError("catalog mode needs --outcomes and --train-as-of")
    if not catalog and target is None:
        raise click.UsageError("table mode needs --target")
    try:
        with dask_client(scheduler, workers, num_threads) as client:
            click.echo(f"training on the Dask cluster at {client.scheduler_info()['address']}")
            card, report, evaluation = train_files(
                client=client, out_of=train_path, target=target,
                outcomes=outcomes_path if catalog else None,
                train_as_of=train_as_of.date() if train_as_of else None, valid_of=valid_path,
                valid_as_of=valid_as_of.date() if valid_as_of else None,
                features=list(SCORED_FEATURES) if catalog else None, exclude=id_columns,
                directions=directions() if catalog else _directions_file(catalog_path),
                bad=None if catalog else bad, people=_table_or_none(people_path), seed=seed,
                rounds=rounds, progress=True, scale=scale,
                thresholds=_perk_thresholds(perks_path) if catalog else None)
        save_model(card, out_dir, report=report, evaluation=evaluation, description=description)
    except (ValueError, KeyError, FileExistsError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error
    engine = report["engine"]
    click.echo(f"{report['rounds']} rounds ({engine['rounds_from']}) on {report['n_train']} rows "
               f"in {engine['partitions']} partitions over {engine['workers']} workers; "
               f"calibrated on {report['calibrated_on']} ({report['n_calibration']} rows, AUC "
               f"{report.get('valid_auc', report.get('holdout_auc')):.4f}); base points "
               f"{card.base_points:.1f}")
    click.echo(f"wrote {out_dir}")
