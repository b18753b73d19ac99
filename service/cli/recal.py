"""`osmanthus recalibrate`: the same trees, a calibration (and, if asked, a scale) refit on a
newer snapshot, registered as a new version that names its parent (model/recalibrate.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from service.cli.model import (
    _load_model_ref,
    _perk_thresholds,
    _points_scale,
    _registry_option,
    _scale_options,
    _snapshot_options,
    _table_or_none,
)


def _version_of(registry: object, ref: str, digest: str) -> str | None:
    """The registered version a model reference means: itself, the champion's version, or
    the version whose bundle has this digest (a directory copied out of the registry)."""
    if ref == "champion":
        return registry.champion()  # type: ignore[attr-defined]
    rows = registry.list()  # type: ignore[attr-defined]
    if ref in {row["version"] for row in rows} and not Path(ref).is_dir():
        return ref
    return next((row["version"] for row in rows if row["digest"] == digest), None)


@click.command()
@click.argument("model_ref", metavar="MODEL")
@_snapshot_options
@_scale_options
@click.option("--by", default=None, help="Who recalibrates (default $USER).")
@click.option("--why", default="", help="Why (recorded with the new version).")
@_registry_option
def recalibrate(model_ref: str, features_path: str, outcomes_path: str, as_of: dt.datetime,
                people_path: str | None, perks_path: str | None, base_score: float | None,
                base_odds: float | None, pdo: float | None, by: str | None, why: str,
                registry_root: str | None) -> None:
    """Keep MODEL's trees; refit its Platt calibration (and, with --base-score, --base-odds
    or --pdo, its points scale) on the snapshot --as-of (calibrated on it, and evaluated on
    it for the model card), and register the result as a new version naming MODEL as its
    parent. It does not serve until `osmanthus models promote` passes it
    through the gates; `osmanthus report NEW --against champion` shows the calibration
    before and after.

    \b
      osmanthus recalibrate champion --features var/demo/features/2025-01-01.parquet \\
        --outcomes var/demo/city/outcomes.parquet --as-of 2025-01-01 \\
        --people var/demo/city/people.parquet --why "default rate drifted"
    """
    from model.evaluate import evaluate, snapshot
    from model.recalibrate import created_at
    from model.recalibrate import recalibrate as refit
    from model.registry import Registry

    registry = Registry(registry_root)
    parent = _load_model_ref(registry, model_ref)
    scale = _points_scale(parent.scorecard.scale, base_score, base_odds, pdo)
    parent_version = _version_of(registry, model_ref, parent.digest)
    day = as_of.date()
    try:
        frame, target, _ = snapshot(_table_or_none(features_path),
                                    _table_or_none(outcomes_path), day)
        card, report = refit(parent, frame, target, as_of=day, scale=scale,
                             parent_version=parent_version)
        evaluation = evaluate(card, frame, target, people=_table_or_none(people_path),
                              thresholds=_perk_thresholds(perks_path), as_of=day)
        named = parent_version or f"bundle {parent.digest[:16]}"
        version = registry.register(
            card, by=by, why=why or f"recalibrated on {day}", report=report,
            evaluation=evaluation, training_data_hash=parent.metadata["training_data_hash"],
            created_at=created_at(day),
            description=f"recalibrated from {named} on the snapshot of {day}")
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error
    entry = report["recalibration"]
    before, after = entry["calibration_before"], entry["calibration_after"]
    click.echo(f"recalibrated {model_ref} on {day} ({entry['n']} people, default rate "
               f"{entry['after']['observed_rate']:.4f}); trees unchanged")
    click.echo(f"calibration (intercept, slope): ({before['intercept']:.4f}, "
               f"{before['slope']:.4f}) -> ({after['intercept']:.4f}, {after['slope']:.4f})")
    click.echo(f"mean predicted default rate {entry['before']['mean_predicted']:.4f} -> "
               f"{entry['after']['mean_predicted']:.4f}; Brier {entry['before']['brier']:.4f} "
               f"-> {entry['after']['brier']:.4f}; base points "
               f"{entry['base_points_before']:.1f} -> {entry['base_points_after']:.1f}")
    click.echo(f"registered {version} (parent {parent_version or named}); it serves only "
               f"after `osmanthus models promote {version}` passes the gates")
