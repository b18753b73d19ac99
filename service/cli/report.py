"""`osmanthus report`: the modeller's HTML report of a model, beside the champion if asked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from service.cli.model import (
    _evaluation_options,
    _load_model_ref,
    _perk_thresholds,
    _registry_option,
    _table_or_none,
)


def _label(ref: str, registry: object) -> str:
    """What to call a model in the report: its version, or its directory's name."""
    if ref == "champion":
        return f"champion {registry.champion()}"  # type: ignore[attr-defined]
    path = Path(ref)
    return path.name if path.is_dir() else ref


def _same_bundle(a: object, b: object) -> bool:
    """Two loaded bundles from the same directory, or with the same digest, are one model."""
    left, right = getattr(a, "loaded", None), getattr(b, "loaded", None)
    same_dir = getattr(left, "directory", None) is not None and (
        Path(left.directory).resolve() == Path(getattr(right, "directory", "")).resolve())
    digest = getattr(left, "digest", "")
    return same_dir or bool(digest and digest == getattr(right, "digest", None))


@click.command()
@click.argument("model_ref", metavar="MODEL")
@click.option("--against", "champion_ref", default=None,
              help="Show MODEL beside this one (a directory, a version or 'champion') on the "
              "same snapshot.")
@_evaluation_options
@click.option("--sample", default=2000, show_default=True, type=click.IntRange(min=10),
              help="People drawn for the SHAP summary plot.")
@click.option("--seed", default=0, show_default=True, type=int)
@_registry_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.html, its PNG figures and report.json.")
def report(model_ref: str, champion_ref: str | None, features_path: str, outcomes_path: str,
           as_of: dt.datetime, people_path: str | None, truth_path: str | None,
           train_path: str | None, perks_path: str | None, sample: int, seed: int,
           registry_root: str | None, out_dir: str) -> None:
    """Write a self-contained HTML report of MODEL on one snapshot: ROC and KS, score
    distribution, calibration, PSI, SHAP summary, reason codes, fairness, model card.

    \b
      osmanthus report v0002 --against champion --features var/demo/features/2025-01-01.parquet \\
        --outcomes var/demo/city/outcomes.parquet --people var/demo/city/people.parquet \\
        --as-of 2025-01-01 --out var/demo/reports/v0002
    """
    from model.evaluate import snapshot
    from model.registry import Registry
    from model.report import Model, build_report

    registry = Registry(registry_root)
    challenger = Model(_label(model_ref, registry), _load_model_ref(registry, model_ref))
    champion = None
    if champion_ref is not None:
        champion = Model(_label(champion_ref, registry), _load_model_ref(registry, champion_ref))
        if champion.label == challenger.label or _same_bundle(champion, challenger):
            click.echo(f"warning: --against {champion_ref} is the same model as {model_ref}; "
                       "the report compares it with itself", err=True)
            champion.label += " (against)"
    day = as_of.date()
    try:
        frame, target, true_pd = snapshot(_table_or_none(features_path),
                                          _table_or_none(outcomes_path), day,
                                          _table_or_none(truth_path))
        path = build_report(challenger, frame, target, out_dir, champion=champion,
                            people=_table_or_none(people_path),
                            thresholds=_perk_thresholds(perks_path), true_pd=true_pd,
                            train_frame=_table_or_none(train_path), as_of=day, sample=sample,
                            seed=seed)
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error.args[0] if error.args else error)) from error
    click.echo(f"wrote {path} ({len(list(path.parent.glob('*.png')))} figures beside it)")
