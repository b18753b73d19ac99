"""Commands for the scorecard: `train`, `score`, `evaluate`, `models`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
import polars as pl


def _table_or_none(path: str | None) -> pl.DataFrame | None:
    """A CSV or Parquet table, or None when no path was given."""
    if path is None:
        return None
    from model.train import read_table
    return read_table(path)


def _perk_thresholds(path: str | None) -> dict[str, float]:
    """Perk thresholds from the perk configuration JSON: {"perk": 600}, a list of perks, or
    {"perks": [...]}, each perk with an id and a minimum score. None: the service's own perks
    ($OSMANTHUS_PERKS, else the shipped perks.json), the scores partners' answers turn on, as
    the API's promotion gates use them."""
    if path is None:
        from service.base.config import Config
        from service.rights.perks import load_perks

        return load_perks(Config.from_env().perks_file).thresholds()
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and "perks" in data:
        data = data["perks"]
    if isinstance(data, dict):
        return {str(k): float(v) for k, v in data.items()}
    out = {}
    for perk in data:
        name = perk.get("id") or perk.get("perk_id") or perk.get("name_en")
        minimum = next((perk[k] for k in ("min_score", "minimum", "minimum_score")
                        if k in perk), None)
        if name is None or minimum is None:
            raise click.ClickException(f"{path}: each perk needs an id and a min_score")
        out[str(name)] = float(minimum)
    return out


def _registry_option(command: Any) -> Any:
    return click.option("--registry", "registry_root", type=click.Path(file_okay=False),
                        default=None, help="Registry directory (default $OSMANTHUS_REGISTRY "
                        "or var/registry).")(command)


def _snapshot_options(command: Any) -> Any:
    options = [
        click.option("--features", "features_path", required=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Features table (CSV/Parquet; person_key, [snapshot], features)."),
        click.option("--outcomes", "outcomes_path", required=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Outcomes (person_key, snapshot, defaulted)."),
        click.option("--as-of", "as_of", required=True, type=click.DateTime(["%Y-%m-%d"]),
                     help="The snapshot date to evaluate on."),
        click.option("--people", "people_path", type=click.Path(exists=True, dir_okay=False),
                     help="People (person_key, gender, birth_date, district) for fairness."),
        click.option("--perks", "perks_path", type=click.Path(exists=True, dir_okay=False),
                     help="Perk configuration JSON; its minimum scores are the fairness "
                     "thresholds (default: the service's perks, $OSMANTHUS_PERKS or the "
                     "shipped perks.json)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _evaluation_options(command: Any) -> Any:
    """The snapshot options plus what an evaluation or a report may add to it."""
    command = click.option(
        "--train-features", "train_path", type=click.Path(exists=True, dir_okay=False),
        help="The training snapshot's features, for score and feature PSI.")(command)
    command = click.option(
        "--truth", "truth_path", type=click.Path(exists=True, dir_okay=False),
        help="True default probabilities (person_key, snapshot, true_pd): the upper bound.",
    )(command)
    return _snapshot_options(command)


def _scale_options(command: Any) -> Any:
    """--base-score, --base-odds, --pdo: the points scale's anchor (score = offset + factor ·
    ln(good:bad odds), factor = PDO / ln 2). Each is optional; `_points_scale` fills the rest."""
    options = [
        click.option("--base-score", type=float, default=None,
                     help="Points at the base odds (default: the PointsScale default in "
                     "model/scorecard.py, or the parent's when recalibrating)."),
        click.option("--base-odds", type=float, default=None,
                     help="Good:bad odds that score the base score (positive)."),
        click.option("--pdo", type=float, default=None,
                     help="Points to double the odds (positive)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _points_scale(base: Any, base_score: float | None, base_odds: float | None,
                  pdo: float | None) -> Any:
    """`base` (a PointsScale) with the given anchor values replaced; a scale that cannot mean
    anything (non-finite, odds or PDO not positive) is a CLI error naming the value."""
    import dataclasses

    given = {k: v for k, v in (("base_score", base_score), ("base_odds", base_odds),
                               ("pdo", pdo)) if v is not None}
    try:
        return dataclasses.replace(base, **given)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--base-score/--base-odds/--pdo"
                                 ) from error


def _load_model_ref(registry: Any, ref: str) -> Any:
    from model.bundle import ModelRefused
    try:
        return registry.resolve(ref)
    except ModelRefused as error:
        raise click.ClickException(f"model refused: {error}") from error
    except (KeyError, LookupError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error


def _directions_file(path: str | None) -> dict[str, int]:
    """A modeller's catalog: {"column": +1 | -1 | 0}, +1 meaning more of it raises the score."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(v in (-1, 0, 1) for v in data.values()):
        raise click.ClickException(f"{path}: expected {{\"column\": 1 | -1 | 0, ...}}")
    return {str(k): int(v) for k, v in data.items()}


def _write_table(frame: pl.DataFrame, path: str) -> None:
    if path.lower().endswith((".parquet", ".pq")):
        frame.write_parquet(path)
    else:
        frame.write_csv(path)


@click.command()
@click.option("--model", "model_ref", required=True,
              help="A model directory, a registered version (v0003) or 'champion'.")
@click.option("--table", "table_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A table (CSV/Parquet) with the model's feature columns.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the scores (.csv or .parquet).")
@click.option("--keep", "keep", multiple=True,
              help="Also copy this column to the output (person_key is always kept).")
@click.option("--separator", default=None, help="The CSV delimiter (default ',', tab for .tsv).")
@_registry_option
def score(model_ref: str, table_path: str, out_path: str, keep: tuple[str, ...],
          separator: str | None, registry_root: str | None) -> None:
    """Score a table: for each row, the probability of default, the score, the band, the base
    points and every feature's points (points_<feature>), keeping person_key and other id
    columns. Text in a numeric column is an error (column, rows); categories the model never
    saw are scored as missing and reported."""
    from model.registry import Registry
    from model.table_mode import unseen_categories
    from model.train import ID_COLUMNS, read_table

    loaded = _load_model_ref(Registry(registry_root), model_ref)
    card = loaded.scorecard
    try:
        frame = read_table(table_path, separator)
    except (ValueError, pl.exceptions.PolarsError) as error:
        raise click.ClickException(f"could not read {table_path}: {error}") from error
    missing = [n for n in card.feature_names if n not in frame.columns]
    if missing:
        hint = (" (one column: is the delimiter right? see --separator)"
                if frame.width == 1 else "")
        raise click.ClickException(
            f"{table_path} lacks the model's columns {', '.join(map(repr, missing[:8]))}; "
            f"columns found: {', '.join(map(repr, frame.columns[:12]))}{hint}")
    kept = [c for c in frame.columns if c in ID_COLUMNS or c in keep]
    try:
        scored = card.score_frame(frame)
    except (KeyError, ValueError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error
    for note in unseen_categories(frame, card.categories):
        click.echo(f"warning: {note}", err=True)
    out = pl.concat([frame.select(kept), scored.to_frame()], how="horizontal").with_columns(
        pl.lit(scored.base_points).alias("base_points"))
    points = [c for c in out.columns if c.startswith("points_")]
    out = out.select([c for c in out.columns if c not in points and c != "base_points"]
                     + ["base_points", *points])
    _write_table(out, out_path)
    click.echo(f"scored {frame.height} rows with {model_ref}: base points "
               f"{scored.base_points:.2f} (score = base points + the points_ columns, clipped "
               f"to {card.scale.min_score:g}–{card.scale.max_score:g}); mean score "
               f"{float(scored.score.mean()):.1f}; wrote {out_path}")


@click.command()
@click.option("--model", "model_ref", required=True,
              help="A model directory, a registered version (v0003) or 'champion'.")
@_evaluation_options
@_registry_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for evaluation.json and evaluation.md.")
def evaluate(model_ref: str, features_path: str, outcomes_path: str, as_of: dt.datetime,
             people_path: str | None, perks_path: str | None, truth_path: str | None,
             train_path: str | None, registry_root: str | None, out_dir: str) -> None:
    """Evaluate a model on one snapshot: AUC, KS, Gini, Brier, calibration, bands, PSI and
    fairness by gender, age band and district; writes evaluation.json and evaluation.md."""
    from model.evaluate import evaluate as run_evaluation
    from model.evaluate import snapshot, write_report
    from model.registry import Registry

    loaded = _load_model_ref(Registry(registry_root), model_ref)
    day = as_of.date()
    try:
        frame, target, true_pd = snapshot(_table_or_none(features_path), _table_or_none(outcomes_path), day,
                                          _table_or_none(truth_path))
        train_frame = _table_or_none(train_path)
        result = run_evaluation(loaded.scorecard, frame, target, train_frame=train_frame,
                                people=_table_or_none(people_path), thresholds=_perk_thresholds(perks_path),
                                true_pd=true_pd, as_of=day)
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error)) from error
    json_path, md_path = write_report(result, out_dir)
    m = result["metrics"]
    click.echo(f"model {model_ref} on {day}: {result['rows']} people, AUC {m['auc']:.4f}, "
               f"KS {m['ks']:.4f}, Gini {m['gini']:.4f}, Brier {m['brier']:.4f}")
    if "true_pd" in result:
        click.echo(f"true-probability AUC (upper bound): {result['true_pd']['auc']:.4f}")
    if "score_psi" in result["stability"]:
        click.echo(f"score PSI against training: {result['stability']['score_psi']:.4f}")
    for failure in result.get("fairness_failures", []):
        click.echo(f"fairness: {failure}")
    for note in result.get("fairness_notes", []):
        click.echo(f"fairness (noted): {note}")
    click.echo(f"wrote {json_path} and {md_path}")


@click.group()
def models() -> None:
    """The model registry: list, register, promote, roll back, export."""


@models.command("list")
@_registry_option
def models_list(registry_root: str | None) -> None:
    """List registered versions; * marks the champion."""
    from model.registry import Registry

    registry = Registry(registry_root)
    rows = registry.list()
    if not rows:
        click.echo(f"no model registered in {registry.root}")
        return
    for row in rows:
        metrics = row.get("metrics") or {}
        auc = (metrics.get("validation") or {}).get("auc") or metrics.get("valid_auc")
        forced = " forced" if row["forced"] else ""
        if row.get("parent_digest"):  # a recalibration: the version whose trees it keeps
            forced += f"  recalibrated from {row.get('parent') or 'an unregistered bundle'}"
        click.echo(f"{'*' if row['champion'] else ' '} {row['version']}  created "
                   f"{row['created_at']}  by {row['by']}  AUC "
                   f"{'—' if auc is None else f'{auc:.4f}'}{forced}  {row['why']}".rstrip())


@models.command("register")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--by", default=None, help="Who registers it (default $USER).")
@click.option("--why", default="", help="Why.")
@_registry_option
def models_register(directory: str, by: str | None, why: str, registry_root: str | None) -> None:
    """Register a model directory as a new version (verified first)."""
    from model.bundle import ModelRefused
    from model.registry import Registry

    try:
        version = Registry(registry_root).register(directory, by=by, why=why)
    except ModelRefused as error:
        raise click.ClickException(f"model refused: {error}") from error
    click.echo(f"registered {directory} as {version}")


@models.command("promote")
@click.argument("version")
@_snapshot_options
@click.option("--force", is_flag=True, help="Promote despite failed gates (needs --why).")
@click.option("--why", default=None, help="Why (recorded; required with --force).")
@click.option("--by", default=None, help="Who promotes (default $USER).")
@_registry_option
def models_promote(version: str, features_path: str, outcomes_path: str, as_of: dt.datetime,
                   people_path: str | None, perks_path: str | None, force: bool,
                   why: str | None, by: str | None, registry_root: str | None) -> None:
    """Make VERSION the champion if it passes the gates on a validation snapshot: AUC within
    0.005 of the champion's, score PSI against the champion's ≤ 0.25, adverse-impact ratio
    ≥ 0.8 for every group at every perk threshold, and every monotone direction kept."""
    from model.bundle import ModelRefused
    from model.evaluate import snapshot
    from model.registry import PromotionRefused, Registry

    if force and not why:
        raise click.UsageError("--force needs --why")
    registry = Registry(registry_root)
    try:
        frame, target, _ = snapshot(_table_or_none(features_path), _table_or_none(outcomes_path), as_of.date())
        result = registry.promote(version, frame=frame, target=target, people=_table_or_none(people_path),
                                  thresholds=_perk_thresholds(perks_path), as_of=as_of.date(),
                                  force=force, by=by, why=why)
    except PromotionRefused as error:
        click.echo(f"{version} not promoted; the champion is still "
                   f"{registry.champion() or 'none'}:", err=True)
        for reason in error.reasons:
            click.echo(f"  - {reason}", err=True)
        raise SystemExit(1) from error
    except ModelRefused as error:
        raise click.ClickException(f"model refused, champion unchanged: {error}") from error
    except (KeyError, LookupError, ValueError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error
    if result.forced:
        click.echo(f"{version} FORCED to champion by {by or 'you'} despite:")
        for reason in result.reasons:
            click.echo(f"  - {reason}")
    else:
        click.echo(f"{version} is the champion (was {result.previous or 'none'})")


@models.command("rollback")
@click.option("--by", default=None, help="Who rolls back (default $USER).")
@click.option("--why", default="", help="Why (recorded).")
@_registry_option
def models_rollback(by: str | None, why: str, registry_root: str | None) -> None:
    """Make the previous champion the champion again."""
    from model.bundle import ModelRefused
    from model.registry import Registry

    registry = Registry(registry_root)
    current = registry.champion()
    try:
        version = registry.rollback(by=by, why=why)
    except ModelRefused as error:
        raise click.ClickException(f"previous champion refused, {current} still serves: "
                                   f"{error}") from error
    except LookupError as error:
        raise click.ClickException(str(error.args[0])) from error
    click.echo(f"rolled back from {current} to {version}")


@models.command("export")
@click.argument("version")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@_registry_option
def models_export(version: str, out_dir: str, registry_root: str | None) -> None:
    """Write the classic scorecard (bins and points per feature) as CSV and Markdown."""
    from model.export import export_scorecard
    from model.registry import Registry

    loaded = _load_model_ref(Registry(registry_root), version)
    csv_path, md_path = export_scorecard(loaded.scorecard, out_dir)
    click.echo(f"wrote the scorecard of {version} to {csv_path} and {md_path}")
