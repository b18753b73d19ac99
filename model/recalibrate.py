"""Recalibration: the same trees, a new Platt calibration (and, if asked, a new points scale)
fit on a newer snapshot.

Why a modeller does this rather than refit: the ranking of a one-feature-per-tree scorecard
ages slowly, but the default rate drifts with the economy, so the probabilities (and with them
the scores against fixed perk thresholds) drift first. Refitting the two Platt numbers on the
newest snapshot with known outcomes puts the probabilities back on the observed rate while
every tree, every split and therefore every feature's ranking stay exactly as validated:
the recalibrated model's `model.txt` is byte-identical to its parent's.

What a credit bureau would want and this module does:
- the result names its parent (registry version, when known, and bundle digest) and keeps the
  parent's training report, so the lineage of the trees is never lost;
- the calibration before and after, their Brier score and log loss on the snapshot, and the
  scale before and after are written into the new bundle (`recalibration` in metadata.json),
  so the report can show both without the parent at hand;
- it is a pure function of (parent bundle, snapshot, scale): the bundle is dated by its
  snapshot, not by the wall clock (the registry records when it was registered and by whom),
  so the same inputs give the same bundle bytes and the same registry digest;
- it promotes nowhere: the result is a challenger like any other, and only
  `Registry.promote` (`osmanthus models promote`) can make it serve, through the same gates.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from model.bundle import LoadedModel, frame_hash
from model.evaluate import calibration_table
from model.scorecard import Calibration, PointsScale, Scorecard
from model.train import fit_platt


def losses(target: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Brier score, log loss, mean predicted and observed default rate: how well the
    probabilities match the outcomes (ranking aside)."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-15, 1 - 1e-15)
    y = np.asarray(target, dtype=np.float64)
    return {"brier": float(np.mean((p - y) ** 2)),
            "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "mean_predicted": float(p.mean()), "observed_rate": float(y.mean())}


def with_calibration(scorecard: Scorecard, calibration: Calibration,
                     scale: PointsScale | None = None) -> Scorecard:
    """The same booster, features, directions and categories with another calibration (and
    scale): a new Scorecard, the trees untouched."""
    return Scorecard(scorecard.booster, scorecard.feature_names, calibration,
                     scale or scorecard.scale, scorecard.directions, scorecard.categories,
                     interactions=scorecard.interactions, info=scorecard.info,
                     num_threads=scorecard.num_threads)


def recalibrate(parent: LoadedModel, frame: pl.DataFrame, target: np.ndarray, *,
                as_of: dt.date, scale: PointsScale | None = None,
                parent_version: str | None = None) -> tuple[Scorecard, dict[str, Any]]:
    """Refit `parent`'s Platt calibration on one snapshot (`frame` and its outcomes `target`,
    1 = default, as `model.evaluate.snapshot` gives them) and put it on `scale` (default: the
    parent's). Returns (scorecard, report); the report is the parent's training report with
    a `recalibration` entry, ready for `save_model` / `Registry.register`."""
    old = parent.scorecard
    y = np.asarray(target, dtype=np.int64)
    if len(y) != frame.height:
        raise ValueError(f"{frame.height} rows but {len(y)} outcomes")
    if len(np.unique(y)) != 2:
        raise ValueError(f"the snapshot of {as_of} needs both good and bad outcomes to "
                         "recalibrate on")
    margin = old.booster.predict(old.encode(frame), raw_score=True, num_threads=1)
    calibration = fit_platt(margin, y)
    new = with_calibration(old, calibration, scale)
    before = old.score_frame(frame).probability
    after = new.score_frame(frame).probability
    parent_meta = parent.metadata
    lineage = {"version": parent_version, "digest": parent.digest,
               "created_at": parent_meta.get("created_at")}
    entry = {
        "parent": lineage, "as_of": as_of.isoformat(), "n": int(len(y)),
        "data_hash": frame_hash(frame.select(old.feature_names), y),
        "calibration_before": old.calibration.to_dict(),
        "calibration_after": calibration.to_dict(),
        "scale_before": old.scale.to_dict(), "scale_after": new.scale.to_dict(),
        "base_points_before": float(old.base_points), "base_points_after": float(new.base_points),
        "before": losses(y, before), "after": losses(y, after),
        "calibration_table_before": calibration_table(y, before),
        "calibration_table_after": calibration_table(y, after),
    }
    report = {**(parent_meta.get("training_report") or {}), "recalibration": entry,
              "calibration": calibration.to_dict()}
    report["metrics"] = {**(report.get("metrics") or {}),
                         "recalibration_brier": entry["after"]["brier"]}
    return new, report


def parent_scorecard(scorecard: Scorecard, metadata: dict[str, Any]) -> Scorecard | None:
    """The model as it was before its recalibration (same trees, the parent's calibration and
    scale, both stored in the bundle), or None when the bundle is not a recalibration."""
    entry = (metadata.get("training_report") or {}).get("recalibration")
    if not entry:
        return None
    return with_calibration(scorecard, Calibration.from_dict(entry["calibration_before"]),
                            PointsScale.from_dict(entry["scale_before"]))


def created_at(as_of: dt.date) -> str:
    """A recalibrated bundle's date: its snapshot's, at midnight UTC (see the module
    docstring: same inputs, same bytes)."""
    return dt.datetime.combine(as_of, dt.time(), dt.UTC).isoformat()



def before_and_after(scorecard: Scorecard, metadata: dict[str, Any], frame: pl.DataFrame,
                     target: np.ndarray, champion: Scorecard | None = None
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """For the report: a recalibrated model's calibration on this snapshot as its parent had
    it and as it has it (same trees, both Platt fits), and the champion's beside them; plus
    the parent's scores and probabilities for the plots. None when the model is not a
    recalibration."""
    before = parent_scorecard(scorecard, metadata)
    if before is None:
        return None
    entry = metadata["training_report"]["recalibration"]
    y = np.asarray(target, dtype=np.int64)
    numbers: dict[str, Any] = {"parent": entry["parent"], "fit_on": entry["as_of"]}
    arrays: dict[str, np.ndarray] = {}
    for side, card in (("before", before), ("after", scorecard), ("champion", champion)):
        if card is None:
            continue
        scored = card.score_frame(frame)
        probability = np.asarray(scored.probability, dtype=np.float64)
        if side == "before":
            arrays = {"score": np.asarray(scored.score, dtype=np.float64),
                      "probability": probability}
        numbers[side] = {"platt": card.calibration.to_dict(), "scale": card.scale.to_dict(),
                         **losses(y, probability),
                         "calibration": calibration_table(y, probability)}
    return numbers, arrays


COMPARED = (("Platt intercept", "platt", "intercept"), ("Platt slope", "platt", "slope"),
            ("mean predicted default rate", "mean_predicted", None),
            ("observed default rate", "observed_rate", None), ("Brier score", "brier", None),
            ("log loss", "log_loss", None))


def comparison(numbers: dict[str, Any], champion_label: str | None
               ) -> tuple[list[str], list[list[Any]]]:
    """The report's before/after/champion table as (column labels, rows of numbers)."""
    sides = [("before recalibration", numbers["before"]), ("after (this model)",
                                                            numbers["after"])]
    if numbers.get("champion") and champion_label:
        sides.append((champion_label, numbers["champion"]))
    rows = [[name, *[side[key][sub] if sub else side[key] for _, side in sides]]
            for name, key, sub in COMPARED]
    return [label for label, _ in sides], rows
