"""The model registry: numbered versions, one champion, and gates in front of the champion.

    <root>/versions/v0001/   a model directory (model/bundle.py), never changed once written
    <root>/registry.json     the champion, the stack of past champions (for rollback), each
                             version's record (a recalibration's names its `parent`, the
                             version whose trees it keeps), and an append-only history of events
                             (registered, promoted, forced, rolled back) with who and why

Versions are numbered (`v0001`, …) so people can say them; each record also keeps the
bundle's content digest (sha256 of its SHA256SUMS), so a directory rewritten together with its
checksums is still refused. A challenger that fails to load is refused and the champion is
untouched: nothing changes until a challenger has loaded and passed every gate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.catalog import directions as catalog_directions
from model.bundle import LoadedModel, ModelRefused, bundle_digest, load_model, save_model
from model.evaluate import evaluate, psi
from model.fairness import MIN_GROUP, fairness_failures

log = logging.getLogger(__name__)

AUC_TOLERANCE = 0.005  # a challenger may lose at most this much AUC to the champion
PSI_LIMIT = 0.25  # challenger scores against champion scores on the same snapshot
VERSION = re.compile(r"^v(\d{4,})$")


class PromotionRefused(Exception):
    """A challenger that failed one or more gates; `reasons` lists every failure."""

    def __init__(self, version: str, reasons: list[str]) -> None:
        self.version, self.reasons = version, list(reasons)
        super().__init__(f"{version} not promoted: " + "; ".join(reasons))


@dataclass
class Promotion:
    version: str
    promoted: bool
    forced: bool
    reasons: list[str]
    evaluation: dict[str, Any] | None = None
    champion_evaluation: dict[str, Any] | None = None
    previous: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def default_root() -> Path:
    return Path(os.environ.get("OSMANTHUS_REGISTRY", "var/registry"))


def current_user(by: str | None = None) -> str:
    """Who is acting: `--by`, else $USER, else the login name."""
    if by:
        return by
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def monotone_violations(loaded: LoadedModel) -> list[str]:
    """Why a model breaks its monotone directions, if it does.

    A catalog model's stored directions must equal the catalog's (so nobody trains around
    a constraint), and for every feature with a direction the points table must move the
    score only that way as the feature grows. A model for a modeller's own table is held to
    the directions it was trained with.
    """
    scorecard = loaded.scorecard
    stored = {k: int(v) for k, v in dict(scorecard.directions).items()}
    reasons = []
    if loaded.metadata.get("catalog_hash") is not None:
        reference = catalog_directions()
        for name in scorecard.feature_names:
            want, have = reference.get(name, 0), stored.get(name, 0)
            if want != have:
                reasons.append(f"direction of {name} is {have:+d} in the model but {want:+d} "
                               "in the catalog")
    else:
        reference = stored
    try:
        table = scorecard.points_table()
    except ValueError:  # interactions: LightGBM's own monotone constraints are all we have
        return reasons
    for name in scorecard.feature_names:
        sign = reference.get(name, 0)
        if not sign:
            continue
        rows = table.filter(pl.col("feature") == name)
        if rows.height < 2 or not rows["lower"].dtype.is_numeric():
            continue
        lower = rows["lower"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        upper = rows["upper"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        points = rows["points"].cast(pl.Float64).to_numpy()
        keep = ~(np.isnan(lower) & np.isnan(upper))  # the missing-value bin has no order
        key = np.where(np.isnan(lower[keep]), -np.inf, lower[keep])
        order = np.lexsort((upper[keep], key))
        steps = np.diff(points[keep][order]) * sign
        if steps.size and steps.min() < -1e-9:
            reasons.append(f"points of {name} move the score {'down' if sign > 0 else 'up'} "
                           f"as it grows (direction {sign:+d}), by up to {-steps.min():.2f} "
                           "points")
    return reasons


class Registry:
    """A directory of model versions and the record of which one serves."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.versions_dir = self.root / "versions"
        self.index = self.root / "registry.json"

    # --- state ---------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        if not self.index.exists():
            return {"format": 1, "champion": None, "champions": [], "versions": {},
                    "history": []}
        return json.loads(self.index.read_text())

    def _write(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".registry.", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, self.index)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read, change and write the registry under an exclusive lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            yield state
            self._write(state)

    @staticmethod
    def _event(state: dict[str, Any], event: str, version: str | None, by: str | None,
               why: str | None, **extra: Any) -> None:
        state["history"].append({"at": _now(), "event": event, "version": version,
                                 "by": current_user(by), "why": why or "", **extra})

    # --- reading ---------------------------------------------------------------------------

    def champion(self) -> str | None:
        return self._read()["champion"]

    def history(self) -> list[dict[str, Any]]:
        return self._read()["history"]

    def record(self, version: str) -> dict[str, Any]:
        versions = self._read()["versions"]
        if version not in versions:
            raise KeyError(f"no model version {version} in {self.root}")
        return versions[version]

    def list(self) -> list[dict[str, Any]]:
        """Every version with its record, oldest first, marking the champion."""
        state = self._read()
        return [{"version": v, "champion": v == state["champion"], **rec}
                for v, rec in sorted(state["versions"].items())]

    def path(self, version: str) -> Path:
        return self.versions_dir / version

    def load(self, version: str) -> LoadedModel:
        """Load and verify a registered version (checksums, catalog, registered digest)."""
        expected = self.record(version)["digest"]
        loaded = load_model(self.path(version))
        if loaded.digest != expected:
            raise ModelRefused("SHA256SUMS differs from the digest recorded at registration "
                               "(the directory was rewritten)", self.path(version))
        return loaded

    def load_champion(self, *, fallback: bool = False) -> LoadedModel:
        """The serving model. A refused champion raises ModelRefused; with `fallback`, the
        latest earlier champion that still loads serves instead (and a warning is logged)."""
        state = self._read()
        if state["champion"] is None:
            raise LookupError(f"no champion in {self.root}: promote a version first")
        try:
            return self.load(state["champion"])
        except ModelRefused as error:
            if not fallback:
                raise
            for version in reversed(state["champions"][:-1]):
                try:
                    loaded = self.load(version)
                except ModelRefused:
                    continue
                log.warning("champion refused (%s); serving earlier champion %s", error, version)
                return loaded
            raise

    def resolve(self, ref: str | Path) -> LoadedModel:
        """A model by version (`v0003`, `champion`) or by directory."""
        ref = str(ref)
        if ref == "champion":
            return self.load_champion()
        if VERSION.match(ref) and ref in self._read()["versions"]:
            return self.load(ref)
        if Path(ref).is_dir():
            return load_model(ref)
        raise KeyError(f"{ref} is neither a registered version in {self.root} nor a directory")

    # --- changing --------------------------------------------------------------------------

    def _next_version(self, state: dict[str, Any]) -> str:
        taken = [int(m.group(1)) for v in state["versions"] if (m := VERSION.match(v))]
        if self.versions_dir.exists():
            taken += [int(m.group(1)) for p in self.versions_dir.iterdir()
                      if (m := VERSION.match(p.name))]
        return f"v{max(taken, default=0) + 1:04d}"

    @staticmethod
    def _parent_version(state: dict[str, Any], parent: dict[str, Any]) -> str | None:
        """The registered version a bundle's `parent` names: found by the parent bundle's
        digest (the version name it carries may come from another registry), else None."""
        digest = parent.get("digest")
        matches = [v for v, rec in sorted(state["versions"].items())
                   if digest and rec.get("digest") == digest]
        if parent.get("version") in matches:
            return parent["version"]
        return matches[0] if matches else None

    def register(self, source: str | Path | Any, *, by: str | None = None, why: str = "",
                 **save_kwargs: Any) -> str:
        """Add a model directory (verified first) or a Scorecard (saved with `save_kwargs`,
        see `save_model`) as a new version, and return the version."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".staging-"))
        try:
            if isinstance(source, str | Path):
                load_model(source)  # refuse a tampered directory before copying it
                shutil.rmtree(staging)
                shutil.copytree(source, staging)
            else:
                save_model(source, staging, **save_kwargs)
            loaded = load_model(staging)
            with self._locked() as state:
                version = self._next_version(state)
                os.rename(staging, self.path(version))
                meta = loaded.metadata
                state["versions"][version] = {
                    "registered_at": _now(), "by": current_user(by), "why": why,
                    "digest": bundle_digest(self.path(version)),
                    "created_at": meta.get("created_at"),
                    "catalog_hash": meta.get("catalog_hash"),
                    "training_data_hash": meta.get("training_data_hash"),
                    "metrics": meta.get("metrics"), "promotions": [], "forced": []}
                if meta.get("parent"):  # a recalibration names the version of its trees
                    parent = self._parent_version(state, meta["parent"])
                    state["versions"][version].update(
                        parent=parent, parent_digest=meta["parent"].get("digest"))
                    self._event(state, "registered", version, by, why, parent=parent)
                else:
                    self._event(state, "registered", version, by, why)
            return version
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def gates(self, challenger: LoadedModel, champion: LoadedModel | None, frame: pl.DataFrame,
              target: np.ndarray, *, people: pl.DataFrame | None = None,
              thresholds: dict[str, float] | None = None, as_of: dt.date | None = None,
              min_group: int = MIN_GROUP) -> Promotion:
        """Run every gate on one validation snapshot and collect every failure."""
        reasons = monotone_violations(challenger)
        evaluation = evaluate(challenger.scorecard, frame, target, people=people,
                              thresholds=thresholds, as_of=as_of, min_group=min_group)
        if people is None:
            reasons.append("fairness not checked: no people table (gender, birth_date, "
                           "district) was given")
        else:
            reasons += fairness_failures(evaluation)
        champion_eval = None
        if champion is not None:
            champion_scores = np.asarray(champion.scorecard.score_frame(frame).score, dtype=float)
            champion_eval = evaluate(champion.scorecard, frame, target, thresholds=thresholds,
                                     as_of=as_of)
            new, old = evaluation["metrics"]["auc"], champion_eval["metrics"]["auc"]
            if new is not None and old is not None and new < old - AUC_TOLERANCE:
                reasons.append(f"AUC {new:.4f} is worse than the champion's {old:.4f} by "
                               f"{old - new:.4f} (> {AUC_TOLERANCE})")
            challenger_scores = np.asarray(challenger.scorecard.score_frame(frame).score,
                                           dtype=float)
            shift = psi(champion_scores, challenger_scores)
            evaluation["stability"]["psi_vs_champion"] = shift
            if shift > PSI_LIMIT:
                reasons.append(f"score PSI {shift:.3f} against the champion's scores on the "
                               f"same snapshot is above {PSI_LIMIT}")
        return Promotion(version="", promoted=False, forced=False, reasons=reasons,
                         evaluation=evaluation, champion_evaluation=champion_eval)

    def promote(self, version: str, *, frame: pl.DataFrame, target: np.ndarray,
                people: pl.DataFrame | None = None, thresholds: dict[str, float] | None = None,
                as_of: dt.date | None = None, force: bool = False, by: str | None = None,
                why: str | None = None, min_group: int = MIN_GROUP) -> Promotion:
        """Make `version` the champion if it passes every gate on this snapshot; raise
        PromotionRefused listing every failed gate otherwise. `force` promotes anyway and
        writes who, why and the overridden reasons into the version's record."""
        if force and not why:
            raise ValueError("forcing a promotion needs a reason (why)")
        challenger = self.load(version)  # a refused challenger leaves everything untouched
        state = self._read()
        current = state["champion"]
        if current == version:
            raise PromotionRefused(version, [f"{version} is already the champion"])
        champion = self.load(current) if current is not None else None
        result = self.gates(challenger, champion, frame, target, people=people,
                            thresholds=thresholds, as_of=as_of, min_group=min_group)
        result.version, result.previous = version, current
        if result.reasons and not force:
            with self._locked() as state:
                self._event(state, "refused", version, by, why, reasons=result.reasons)
            raise PromotionRefused(version, result.reasons)
        metrics = result.evaluation["metrics"]
        with self._locked() as state:
            if state["champion"] != current:
                raise PromotionRefused(version, ["the champion changed during the checks; "
                                                 "run the promotion again"])
            entry = {"at": _now(), "by": current_user(by), "why": why or "",
                     "as_of": result.evaluation["as_of"], "auc": metrics["auc"],
                     "previous": current}
            state["versions"][version]["promotions"].append(entry)
            if result.reasons:
                state["versions"][version]["forced"].append({**entry, "reasons": result.reasons})
            state["champion"] = version
            state["champions"].append(version)
            self._event(state, "forced" if result.reasons else "promoted", version, by, why,
                        previous=current, reasons=result.reasons)
        result.promoted, result.forced = True, bool(result.reasons)
        return result

    def rollback(self, *, by: str | None = None, why: str = "") -> str:
        """Make the previous champion the champion again (it must still load)."""
        with self._locked() as state:
            if len(state["champions"]) < 2:
                raise LookupError("no previous champion to roll back to")
            current, previous = state["champions"][-1], state["champions"][-2]
            self.load(previous)
            state["champions"].pop()
            state["champion"] = previous
            self._event(state, "rolled back", previous, by, why, previous=current)
        return previous
