"""Training: a monotone, one-feature-per-tree LightGBM scorecard, rounds by k-fold CV, Platt.

Why this shape: monotone constraints keep the score honest (more unpaid fees never raise it);
one feature per tree makes each feature's points an exact step function (a printable
scorecard, scored by table lookup); the number of rounds comes from k-fold cross-validation
on all training rows (not early stopping on one thin slice), and the final model is then fit
on all of them. Same data and seed give a byte-identical model text.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from features.catalog import BY_NAME, INTERACTIONS
from model import table_mode
from model.params import CV_FOLDS, MAX_ROUNDS, STOPPING_ROUNDS, lgb_params
from model.scorecard import Calibration, PointsScale, Scorecard, encode

ID_COLUMNS = ("person_key", "snapshot", "as_of", "records_counted")
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"]
_TEXT = (pl.String, pl.Categorical, pl.Enum)


def read_table(path: str | Path, separator: str | None = None) -> pl.DataFrame:
    """A CSV or Parquet table; common spellings of 'missing' in CSVs become nulls. `separator`
    is the CSV delimiter (default ',', tab for .tsv)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if suffix in (".csv", ".txt", ".tsv"):
        default = "\t" if suffix == ".tsv" else ","
        return pl.read_csv(path, separator=separator or default,
                           null_values=NULL_VALUES, infer_schema_length=None)
    raise ValueError(f"{path}: expected a .csv, .tsv or .parquet file")


def encode_target(values: Any, bad: Any = None) -> np.ndarray:
    """0/1 with 1 = bad. A 0/1 or boolean target is taken as is; any other two-valued target
    needs `bad`, the value meaning default."""
    series = values if isinstance(values, pl.Series) else pl.Series("target", np.asarray(values))
    if series.null_count():
        raise ValueError(f"the target has {series.null_count()} missing values")
    distinct = series.unique().to_list()
    if bad is not None:
        hit = series.cast(pl.String) == str(bad)
        if not hit.any():
            raise ValueError(f"no target value equals the bad value {bad!r}; values: {distinct}")
        y = hit.cast(pl.Int8).to_numpy()
    elif series.dtype == pl.Boolean or set(distinct) <= {0, 1}:
        y = series.cast(pl.Int8).to_numpy()
    else:
        raise ValueError(f"the target has values {sorted(map(str, distinct))[:5]}: say which one "
                         "is bad (--bad VALUE)")
    if len(np.unique(y)) != 2:
        raise ValueError("the target needs both good and bad rows")
    return y.astype(np.int64)


def infer_categories(frame: pl.DataFrame, features: list[str]) -> dict[str, list[str]]:
    """Text columns become LightGBM categoricals; their sorted values are the code list."""
    return {n: sorted(frame[n].cast(pl.String).drop_nulls().unique().to_list())
            for n in features if frame[n].dtype in _TEXT or frame[n].dtype == pl.Object}


def constraint_params(features: list[str], directions: dict[str, int],
                      interactions: tuple | list = ()) -> dict[str, Any]:
    """Monotone constraints (a feature that raises the score lowers P(bad): -direction) and
    one feature per tree, except declared pairs, which share a set."""
    index = {n: i for i, n in enumerate(features)}
    groups = [[i] for i in range(len(features))]
    for a, b in interactions:
        if a in index and b in index:
            groups.append([index[a], index[b]])
    return {"monotone_constraints": [-int(directions.get(n, 0)) for n in features],
            "monotone_constraints_method": "basic",
            "interaction_constraints": groups}


def scorecard_params(n_rows: int, features: list[str], directions: dict[str, int],
                     interactions: tuple | list = (), *, seed: int = 0, num_threads: int = 1,
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full LightGBM parameters of a scorecard fit on `n_rows` rows: the size-dependent
    base (`lgb_params`), the caller's overrides, then the constraints, objective, metrics, seed
    and threads, which no override may change. Shared by the local and the Dask trainer
    (model/train_dask.py), so both fit the same model family."""
    return {**lgb_params(n_rows, seed, num_threads), **(params or {}),
            **constraint_params(features, directions, interactions),
            "objective": "binary", "metric": ["binary_logloss", "auc"], "seed": seed,
            "num_threads": num_threads}


def fit_platt(margin: np.ndarray, y: np.ndarray, iterations: int = 100) -> Calibration:
    """Unpenalised logistic regression of y on the 1-d margin (Newton's method): Platt scaling.
    A non-positive slope would flip every point's sign and break the monotone directions, so
    it is refused."""
    m, y = np.asarray(margin, dtype=np.float64), np.asarray(y, dtype=np.float64)
    beta = np.array([0.0, 1.0])
    design = np.column_stack([np.ones_like(m), m])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        w = p * (1.0 - p)
        grad = design.T @ (p - y)
        hess = (design * w[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-12:
            break
    if not beta[1] > 0:
        raise ValueError(f"calibration slope {beta[1]:.4g} ≤ 0: the model ranks the calibration "
                         "rows backwards; it must not be used")
    return Calibration(float(beta[0]), float(beta[1]))


def _lgb_names(features: list[str]) -> list[str]:
    """Names LightGBM accepts (no JSON punctuation); the scorecard keeps the originals."""
    out: list[str] = []
    for i, name in enumerate(features):
        clean = re.sub(r"[^0-9A-Za-z_]", "_", name) or f"f{i}"
        out.append(clean if clean not in out else f"{clean}_{i}")
    return out


def _tick(bar: tqdm) -> Any:
    def callback(env: lgb.callback.CallbackEnv) -> None:
        bar.update(1)
    callback.order = 100  # type: ignore[attr-defined]
    return callback


def data_hash(x: np.ndarray, y: np.ndarray, features: list[str]) -> str:
    """sha256 of the encoded training matrix, target and feature names (for the report)."""
    digest = hashlib.sha256("\0".join(features).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


def _target(frame: pl.DataFrame, target: Any, bad: Any) -> np.ndarray:
    return encode_target(frame[target] if isinstance(target, str) else target, bad)


def train_scorecard(train: pl.DataFrame, target: str | np.ndarray,
                    valid: pl.DataFrame | None = None, valid_target: Any = None, *,
                    features: list[str] | None = None, directions: dict[str, int] | None = None,
                    seed: int = 0, num_threads: int = 1, interactions: tuple | list = (),
                    progress: bool = False, bad: Any = None, nfold: int = CV_FOLDS,
                    max_rounds: int = MAX_ROUNDS, patience: int = STOPPING_ROUNDS,
                    scale: PointsScale | None = None, params: dict[str, Any] | None = None,
                    infer_directions: bool = True,
                    direction_alpha: float | None = table_mode.DIRECTION_ALPHA,
                    ) -> tuple[Scorecard, dict[str, Any]]:
    """Fit a scorecard on `train` and calibrate it on `valid` (out of time), or on out-of-fold
    CV margins when there is no `valid`. Returns (scorecard, training report).

    `target` is a column name (also used for `valid` unless `valid_target` is given) or an
    array. `features` defaults to every column but the target and id columns; `directions`
    to the catalog's for catalog features. A numeric feature `directions` does not name gets
    one inferred on these rows (model/table_mode.py: the sign of its Spearman correlation with
    the target, when significant at `direction_alpha`; None: any sign) unless
    `infer_directions` is False (then it is free); a declared 0 stays free.
    Text columns that are numbers but for stray values are read as numbers, the stray text
    missing, with a warning in the report. `params` override `lgb_params`.
    """
    started = time.perf_counter()
    if features is None:
        features = [c for c in train.columns
                    if c not in ID_COLUMNS and not (isinstance(target, str) and c == target)]
    if directions is None:
        directions = {n: BY_NAME[n].direction for n in features if n in BY_NAME}
    if interactions == () and all(n in BY_NAME for n in features):
        interactions = INTERACTIONS
    y = _target(train, target, bad)
    train, warnings = table_mode.numeric_text_to_null(train, features, "the training table")
    if valid is not None:
        valid, more = table_mode.numeric_text_to_null(valid, features, "the validation table")
        warnings += more
    categories = infer_categories(train, features)
    bent = [n for n in categories if directions.get(n, 0)]
    if bent:
        raise ValueError(f"text columns cannot have a monotone direction: {', '.join(bent)}")
    x = encode(train, features, categories)
    declared = {n: int(directions[n]) for n in features if n in directions}
    rho: dict[str, float] = {}
    p_values: dict[str, float] = {}
    if infer_directions:
        directions, rho, p_values = table_mode.infer_directions(
            x, y, features, categories, declared, alpha=direction_alpha)
    minority = int(min(y.sum(), len(y) - y.sum()))
    nfold = min(nfold, minority)
    if nfold < 2:
        raise ValueError("need at least 2 good and 2 bad rows to cross-validate")

    lgb_p = scorecard_params(len(y), features, directions, interactions, seed=seed,
                             num_threads=num_threads, params=params)
    names = _lgb_names(features)
    cat_index = [i for i, n in enumerate(features) if n in categories]

    def dataset() -> lgb.Dataset:
        return lgb.Dataset(x, label=y, feature_name=names, categorical_feature=cat_index,
                           free_raw_data=False, params={"verbosity": -1})

    folds = list(StratifiedKFold(nfold, shuffle=True, random_state=seed).split(x, y))
    with tqdm(total=max_rounds, desc=f"{nfold}-fold CV rounds", disable=not progress,
              leave=False) as bar:
        cv = lgb.cv(lgb_p, dataset(), num_boost_round=max_rounds, folds=folds,
                    callbacks=[lgb.early_stopping(patience, first_metric_only=True,
                                                  verbose=False), _tick(bar)],
                    return_cvbooster=True)
    rounds = len(cv["valid binary_logloss-mean"])
    oof = np.empty(len(y))
    for booster, (_, held) in zip(cv["cvbooster"].boosters, folds, strict=True):
        oof[held] = booster.predict(x[held], raw_score=True, num_iteration=rounds)
    with tqdm(total=rounds, desc="fit on all rows", disable=not progress, leave=False) as bar:
        booster = lgb.train(lgb_p, dataset(), num_boost_round=rounds, callbacks=[_tick(bar)])

    report: dict[str, Any] = {
        "seed": seed, "rounds": rounds, "cv_folds": nfold,
        "cv_auc": float(cv["valid auc-mean"][-1]), "cv_auc_std": float(cv["valid auc-stdv"][-1]),
        "cv_logloss": float(cv["valid binary_logloss-mean"][-1]),
        "oof_auc": float(roc_auc_score(y, oof)),
        "n_train": int(len(y)), "bad_rate_train": float(y.mean()),
        "features": list(features), "categorical": sorted(categories),
        "params": lgb_p, "lightgbm": lgb.__version__,
        "training_data_hash": data_hash(x, y, features),
        "directions": {n: int(directions.get(n, 0)) for n in features},
        "directions_declared": declared,
        "directions_inferred": {n: {"direction": int(directions[n]), "spearman": r,
                                    "p_value": p_values[n]} for n, r in rho.items()},
        "direction_alpha": direction_alpha if infer_directions else None,
        "warnings": warnings,
    }
    if valid is not None:
        vy = encode_target(valid_target, bad) if valid_target is not None else _target(
            valid, target, bad)
        vx = encode(valid, features, categories)
        valid_margin = booster.predict(vx, raw_score=True)
        calibration = fit_platt(valid_margin, vy)
        report.update(calibrated_on="validation", n_valid=int(len(vy)),
                      bad_rate_valid=float(vy.mean()),
                      valid_auc=float(roc_auc_score(vy, valid_margin)))
    else:
        calibration = fit_platt(oof, y)
        report["calibrated_on"] = "out-of-fold"
    info = {"params": lgb_p, "seed": seed, "n_rounds": rounds}
    scorecard = Scorecard(booster, features, calibration, scale or PointsScale(), directions,
                          categories, interactions=interactions, info=info)
    if scorecard.additive:
        report["direction_changes"] = table_mode.direction_changes(scorecard.points_table())
    report["calibration"] = calibration.to_dict()
    report["metrics"] = {k: report[k] for k in ("cv_auc", "oof_auc", "valid_auc") if k in report}
    report["seconds"] = round(time.perf_counter() - started, 3)
    return scorecard, report

