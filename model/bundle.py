"""A trained model as a directory that anyone can read and nobody can quietly change.

    model.txt       LightGBM's own text format (deterministic for the same data and seed)
    metadata.json   catalog hash, training-data hash, parameters, versions, metrics, points
                    scaling (the modeller's anchor: base score, base odds, PDO), calibration,
                    the timestamp (so model.txt stays byte-identical) and, for a recalibrated
                    model, its `parent` (model/recalibrate.py)
    MODEL_CARD.md   the model card (model/card.py)
    evaluation.json / evaluation.md   the evaluation on the validation snapshot, when given
    SHA256SUMS      the checksum of every other file

Loading verifies every checksum, refuses unlisted files, and refuses a catalog model whose
catalog hash differs from the code's: features computed by other code would be scored by a
model that never saw them. Nothing here is pickled; text and JSON only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import platform
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.catalog import FEATURE_NAMES, catalog_hash
from model.card import model_card
from model.evaluate import write_report

MODEL_FILE, METADATA_FILE, CARD_FILE, SUMS_FILE = (
    "model.txt", "metadata.json", "MODEL_CARD.md", "SHA256SUMS")
REQUIRED = (MODEL_FILE, METADATA_FILE, CARD_FILE)
FORMAT_VERSION = 1


class ModelRefused(Exception):
    """A model directory that must not serve: tampered, incomplete, or for another catalog."""

    def __init__(self, reason: str, directory: str | Path | None = None) -> None:
        self.reason = reason
        self.directory = str(directory) if directory is not None else None
        where = f"model {directory}: " if directory is not None else ""
        super().__init__(f"{where}{reason}")


@dataclass(frozen=True)
class LoadedModel:
    scorecard: Any
    metadata: dict[str, Any]
    directory: Path

    @property
    def digest(self) -> str:
        return self.metadata.get("_digest", "")


def sha256_file(path: Path) -> str:
    """The one file-hash helper (model files, feeds): sha256 hex, read in blocks by
    `hashlib.file_digest`, never the whole file at once."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def frame_hash(frame: pl.DataFrame, target: np.ndarray | pl.Series | None = None) -> str:
    """A stable fingerprint of a training table (and its target): sha256 of its uncompressed
    Arrow IPC bytes, so that the same rows in the same order give the same hash."""
    table = frame
    if target is not None:
        table = frame.with_columns(pl.Series("__target__", np.asarray(target)))
    buffer = io.BytesIO()
    table.write_ipc(buffer, compression="uncompressed")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def library_versions() -> dict[str, str]:
    """The versions a model's behaviour depends on."""
    versions = {"python": platform.python_version()}
    for name, dist in (("lightgbm", "lightgbm"), ("numpy", "numpy"), ("polars", "polars"),
                       ("sklearn", "scikit-learn")):
        try:
            versions[name] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _summary_metrics(report: dict[str, Any], evaluation: dict[str, Any] | None) -> dict:
    metrics = dict(report.get("metrics") or {})
    if evaluation:
        metrics["validation"] = evaluation.get("metrics")
        if "true_pd" in evaluation:
            metrics["true_pd_auc"] = evaluation["true_pd"]["auc"]
        if "stability" in evaluation and "score_psi" in evaluation["stability"]:
            metrics["score_psi"] = evaluation["stability"]["score_psi"]
    return metrics


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, dates and paths as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.date | Path):
        return str(value)
    return value


def save_model(scorecard: Any, directory: str | Path, *, report: dict[str, Any],
               evaluation: dict[str, Any] | None = None, training_data_hash: str | None = None,
               catalog: bool | None = None, created_at: str | None = None,
               description: str = "") -> Path:
    """Write `scorecard` as a model directory and return it.

    `catalog` says whether the model reads the feature catalog (its hash is then recorded and
    checked at load); by default, when its features are exactly the catalog's. `created_at`
    defaults to now and lives only in metadata.json and the card. `training_data_hash`
    defaults to the training report's (see also `frame_hash`).
    """
    training_data_hash = training_data_hash or report.get("training_data_hash")
    if not training_data_hash:
        raise ValueError("save_model needs the training data hash")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    model_text, scorecard_meta = scorecard.to_parts()
    if catalog is None:
        catalog = set(scorecard.feature_names) <= set(FEATURE_NAMES)
    meta = {
        "format": FORMAT_VERSION,
        "created_at": created_at or dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "description": description,
        "catalog_hash": catalog_hash() if catalog else None,
        "training_data_hash": training_data_hash,
        "features": list(scorecard.feature_names),
        "parameters": report.get("params") or report.get("parameters"),
        "seed": report.get("seed"),
        "library_versions": library_versions(),
        "metrics": _summary_metrics(report, evaluation),
        "points_scaling": scorecard.scale.to_dict(),
        "calibration": scorecard.calibration.to_dict(),
        "base_points": float(scorecard.base_points),  # score = this + Σ feature points
        "directions": {k: int(v) for k, v in dict(scorecard.directions).items()},
        "training_report": report,
        "scorecard": scorecard_meta,
    }
    recalibration = report.get("recalibration")
    if recalibration:  # model/recalibrate.py: the version whose trees these are
        meta["parent"] = recalibration["parent"]
    meta = _jsonable(meta)
    (directory / MODEL_FILE).write_text(model_text)
    (directory / METADATA_FILE).write_text(
        json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    (directory / CARD_FILE).write_text(model_card(meta, evaluation))
    if evaluation is not None:
        write_report(_jsonable(evaluation), directory)
    write_sums(directory)
    return directory


def write_sums(directory: Path) -> None:
    """(Re)write SHA256SUMS over every other file, in `sha256sum` format."""
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != SUMS_FILE)
    lines = [f"{sha256_file(directory / n)}  {n}" for n in names]
    (directory / SUMS_FILE).write_text("\n".join(lines) + "\n")


def bundle_digest(directory: str | Path) -> str:
    """The sha256 of a model's SHA256SUMS: one id for the whole directory's content."""
    return sha256_file(Path(directory) / SUMS_FILE)


def verify(directory: str | Path) -> dict[str, Any]:
    """Check a model directory's files and catalog; return its metadata or raise
    ModelRefused naming what failed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelRefused("no such model directory", directory)
    sums_path = directory / SUMS_FILE
    if not sums_path.is_file():
        raise ModelRefused(f"{SUMS_FILE} is missing", directory)
    listed: dict[str, str] = {}
    for line in sums_path.read_text().splitlines():
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or "/" in name or name in listed:
            raise ModelRefused(f"{SUMS_FILE} is malformed", directory)
        listed[name] = digest
    for name in REQUIRED:
        if name not in listed:
            raise ModelRefused(f"{name} is not listed in {SUMS_FILE}", directory)
    present = {p.name for p in directory.iterdir() if p.name != SUMS_FILE}
    for name in sorted(present - listed.keys()):
        raise ModelRefused(f"{name} is not listed in {SUMS_FILE} (unexpected file)", directory)
    for name, digest in sorted(listed.items()):
        path = directory / name
        if not path.is_file():
            raise ModelRefused(f"{name} is missing", directory)
        if sha256_file(path) != digest:
            raise ModelRefused(f"{name} does not match its checksum (tampered or corrupted)",
                               directory)
    try:
        meta = json.loads((directory / METADATA_FILE).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelRefused(f"{METADATA_FILE} is not valid JSON: {error}", directory) from error
    expected = meta.get("catalog_hash")
    if expected is not None and expected != catalog_hash():
        raise ModelRefused(
            "catalog changed since training: the model's catalog hash "
            f"{expected[:12]}… differs from the code's {catalog_hash()[:12]}…", directory)
    return meta


def load_model(directory: str | Path) -> LoadedModel:
    """Verify and load a model directory (see `verify`)."""
    from model.scorecard import Scorecard  # imported late: the scorecard module is heavy

    directory = Path(directory)
    meta = verify(directory)
    try:
        scorecard = Scorecard.from_parts((directory / MODEL_FILE).read_text(), meta["scorecard"])
    except Exception as error:  # a checksummed but unreadable model is still refused
        raise ModelRefused(f"{MODEL_FILE} could not be loaded: {error}", directory) from error
    meta["_digest"] = bundle_digest(directory)
    return LoadedModel(scorecard=scorecard, metadata=meta, directory=directory)
