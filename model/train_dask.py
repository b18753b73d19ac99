"""Training beyond one machine: the same scorecard, fit with `lightgbm.dask` on a Dask cluster.

The features table is read lazily from partitioned Parquet (`dask.dataframe`), encoded
partition by partition on the workers (the same `encode` and category lists as the local
trainer), persisted on the workers (LightGBM's data-parallel learner needs each worker's shard
in its memory, so the cluster's total memory is what must hold the table, never one machine's)
and fit by `DaskLGBMClassifier`. The driver only ever computes small things: partition
lengths, each text column's distinct values, the target's distinct values, one digest per
partition, and bounded samples. The booster it returns becomes a `Scorecard` exactly as the
local trainer's does (same feature names, categories, directions, points scale, Platt
calibration), so bundles, the registry and serving take it like any other.

Decisions:
- *Parameters.* `model.train.scorecard_params` for the whole table's row count: the same
  learning rate, size regime, monotone constraints, categorical handling, L2 and seed as the
  local trainer, with one change. LightGBM's distributed learners crash on
  `interaction_constraints` (`std::bad_array_new_length` or `bad_alloc` on the first tree, in
  the data and voting learners alike; LightGBM issue #5680, open: the data-parallel learner
  asks `ColSampler::GetByNode` for the larger leaf at the root, whose index is -1, and walks
  the tree from there). `feature_fraction` cannot stand in for them (LightGBM samples at least
  two features per tree). So the Dask fit grows stumps (`num_leaves=2`): a tree with one split
  uses one feature by construction, the model is additive exactly as the local one, and the
  points table, monotone check and explanations work unchanged. Stumps take more rounds (each
  adds one step, not up to seven) and lose nothing out of time on the city: validation AUC
  0.7289 against the local trainer's 0.7289 at 200,000 people (bench/train_dask.py), and
  0.7264 against 0.7257 at 60,000, 0.7087 against 0.7094 at 20,000 (local CV of both).
  Declared interaction pairs cannot be stumps: a model with pairs is refused here and must be
  trained locally. LightGBM's Dask interface also overrides
  `num_threads` with each worker's thread count, so threads are pinned per worker by the
  cluster (a LocalCluster here starts `threads_per_worker=num_threads`); the recorded
  `num_threads` is that per-worker figure.
- *Rounds.* `lightgbm.dask` has no early stopping (LightGBM issues #3712, #4189, #4493: eval
  sets are supported, stopping is not; #5963 and #7009 report socket errors and hangs when
  `early_stopping_rounds` is set anyway), and k-fold CV of a table that does not fit in memory
  would cost k distributed fits. So the rounds are chosen as the local trainer chooses them —
  k-fold `lightgbm.cv` with early stopping — on a uniform random sample of at most
  `SAMPLE_ROWS` training rows held in memory, with the whole table's size regime forced onto
  the sample (leaves, randomisation, bins; `min_data_in_leaf` is proportional to the rows
  already). A sample's CV stops no later than the whole table's would, so the choice errs
  towards a slightly under-fit model rather than an over-fit one. `rounds=` (`--rounds`) skips
  the CV when the modeller already knows the number.
- *Calibration.* As locally: Platt scaling on the validation snapshot when there is one — on a
  random sample of at most `CALIBRATION_ROWS` of its rows (plenty for two numbers; the
  evaluation written into the bundle uses the same sample). Without one, the local trainer uses out-of-fold CV margins, which a
  single distributed fit does not have; here a random `HOLDOUT` share of the training rows is
  kept out of the fit and a sample of it calibrates instead (`calibrated_on: "held-out"`);
  fewer than `MIN_CALIBRATION_CLASS` held-out bad rows is refused, not fitted (on five bad
  rows Platt's slope is noise, and can even come out negative).
- *Provenance.* The training-data hash is the sha256 of the per-partition digests (of each
  encoded partition's matrix and target) in partition order: computed where the data is, and
  stable for the same partitions. The training report records `engine` (dask, the scheduler,
  workers, threads per worker, partitions, rows, how the rounds were chosen), and the
  scorecard's info says `engine: dask`; both land in the bundle's metadata.json.
- *On a real cluster.* `--scheduler tcp://HOST:8786` (or `dask_client(scheduler)`) connects
  to running workers; the tables' paths must be readable by every worker (a shared file
  system, or a URL Dask reads such as s3://…), and each worker needs this package and
  LightGBM. Workers' threads are their own (`dask worker --nthreads`); LightGBM opens one
  listening port per worker for its own network, so the workers must reach each other.
- *Reproducibility.* Seeded and `deterministic` as locally, but LightGBM's data-parallel fit
  depends on which partitions each worker holds, which Dask decides at run time: two runs give
  equally good models, not byte-identical ones (the local trainer's promise of identical
  model text does not hold here; the sample CV that picks the rounds is reproducible).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl
from sklearn.metrics import roc_auc_score

from features.catalog import BY_NAME, INTERACTIONS
from model.params import CV_FOLDS, MAX_ROUNDS, STOPPING_ROUNDS
from model.scorecard import PointsScale, Scorecard, encode
from model.train import (
    ID_COLUMNS,
    _lgb_names,
    encode_target,
    fit_platt,
    scorecard_params,
    train_scorecard,
)

SAMPLE_ROWS = 200_000  # rows the in-memory CV that picks the rounds sees, at most
CALIBRATION_ROWS = 200_000  # rows Platt scaling sees, at most
HOLDOUT = 0.1  # share of training rows kept for calibration when there is no validation set
MIN_CALIBRATION_CLASS = 30  # fewest held-out bad (or good) rows Platt scaling may rest on
LABEL = "__label__"
_NETWORK = re.compile(r"^\[(?:machines|local_listen_port|machine_list_filename): [^\n]*\]\n",
                      re.MULTILINE)
# the size-regime parameters the sample's CV must share with the whole table's fit
_REGIME = ("num_leaves", "extra_trees", "feature_fraction", "max_bin")


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int = 1) -> Iterator[Any]:
    """A client of the cluster at `scheduler`, or of a LocalCluster of `workers` processes on
    127.0.0.1 (no dashboard) that is closed on exit."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers or 2, threads_per_worker=threads_per_worker,
                      processes=True, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def read_partitioned(path: str | Path) -> Any:
    """A lazy Dask frame over a Parquet file or a directory of Parquet partitions (or a URL
    that Dask reads, such as s3://bucket/features/, passed through as is)."""
    import dask.dataframe as dd

    if "://" in str(path):
        return dd.read_parquet(str(path))
    path = Path(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in (".parquet",
                                                                                 ".pq"))
        if not files:
            raise ValueError(f"{path}: no .parquet partitions in this directory")
        return dd.read_parquet(files)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"{path}: the dask engine reads Parquet (a file or a directory)")
    return dd.read_parquet(str(path))


def _on_snapshot(part: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Rows of one snapshot (as `model.evaluate._on`), for one pandas partition."""
    if "snapshot" not in part.columns:
        return part
    column = part["snapshot"]
    try:
        column = pd.to_datetime(column)  # dates, datetimes, Arrow dates, ISO strings
    except (TypeError, ValueError):
        column = pd.to_datetime(column.astype(str))
    return part[(column.dt.normalize() == pd.Timestamp(as_of)).to_numpy()]


def labelled(features: Any, outcomes: Any, as_of: dt.date) -> Any:
    """Features of one snapshot joined to their outcomes (a lazy `snapshot()`): one
    `defaulted` column; people without an outcome are left out."""
    features = features.map_partitions(_on_snapshot, as_of, meta=features._meta)
    labels = outcomes.map_partitions(_on_snapshot, as_of, meta=outcomes._meta)
    labels = labels[["person_key", "defaulted"]].drop_duplicates(subset=["person_key"])
    if "snapshot" in features.columns:
        features = features.drop(columns=["snapshot"])
    return features.merge(labels, on="person_key", how="inner")


def sample_frame(frame: Any, rows: int, seed: int, total: int | None = None) -> pl.DataFrame:
    """A uniform random sample of about `rows` rows of a Dask frame, in memory."""
    total = int(frame.map_partitions(len).sum().compute()) if total is None else total
    if total <= rows:
        part = frame.compute()
    else:
        part = frame.sample(frac=rows / total, random_state=seed).compute()
    return pl.from_pandas(part.reset_index(drop=True))


def _is_text(dtype: Any) -> bool:
    return (pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(dtype))


def _labels(values: pd.Series, bad: Any) -> np.ndarray:
    if bad is not None:
        return (values.astype(str) == str(bad)).to_numpy().astype(np.int64)
    return values.astype("int64").to_numpy()


def _encode_part(part: pd.DataFrame, features: list[str], names: list[str],
                 categories: dict[str, list[str]], target: str, bad: Any) -> pd.DataFrame:
    """One partition as LightGBM's float matrix (the local `encode`) and its 0/1 label."""
    x = encode(pl.from_pandas(part[features].reset_index(drop=True)), features, categories)
    out = pd.DataFrame(np.ascontiguousarray(x), columns=names)
    out[LABEL] = _labels(part[target], bad)
    return out


def _digest_part(part: pd.DataFrame) -> pd.Series:
    digest = hashlib.sha256(np.ascontiguousarray(part.to_numpy(dtype=np.float64)).tobytes())
    return pd.Series([digest.hexdigest()])


def _check_target(values: list[Any], nulls: int, bad: Any) -> None:
    """The local `encode_target`'s refusals, on the target's distinct values."""
    if nulls:
        raise ValueError(f"the target has {nulls} missing values")
    if bad is not None:
        if str(bad) not in {str(v) for v in values}:
            raise ValueError(f"no target value equals the bad value {bad!r}; values: {values}")
        if len(values) < 2:
            raise ValueError("the target needs both good and bad rows")
    elif not set(values) <= {0, 1} or len(set(values)) != 2:
        raise ValueError(f"the target has values {sorted(map(str, values))[:5]}: it must be 0/1 "
                         "with both present, or say which value is bad")


def train_scorecard_dask(client: Any, train: Any, target: str, *,
                         valid: pl.DataFrame | None = None, valid_target: Any = None,
                         features: list[str] | None = None,
                         directions: dict[str, int] | None = None, seed: int = 0,
                         interactions: tuple | list = (), bad: Any = None,
                         rounds: int | None = None, sample_rows: int = SAMPLE_ROWS,
                         calibration_rows: int = CALIBRATION_ROWS, holdout: float = HOLDOUT,
                         nfold: int = CV_FOLDS, max_rounds: int = MAX_ROUNDS,
                         patience: int = STOPPING_ROUNDS, scale: PointsScale | None = None,
                         params: dict[str, Any] | None = None, progress: bool = False,
                         ) -> tuple[Scorecard, dict[str, Any]]:
    """Fit a scorecard on the lazy Dask frame `train` (its `target` column, 1 = bad or the
    `bad` value) on `client`'s cluster; calibrate on `valid` (an in-memory sample of a later
    snapshot) or on held-out training rows. Returns (scorecard, training report) like
    `train_scorecard`. See the module docstring for how rounds and calibration are chosen."""
    from lightgbm.dask import DaskLGBMClassifier

    started = time.perf_counter()
    if features is None:
        features = [c for c in train.columns if c not in ID_COLUMNS and c != target]
    if directions is None:
        directions = {n: BY_NAME[n].direction for n in features if n in BY_NAME}
    if interactions == () and all(n in BY_NAME for n in features):
        interactions = INTERACTIONS
    if interactions:
        raise ValueError("declared interaction pairs need LightGBM's interaction_constraints, "
                         "which its distributed learners do not support (LightGBM #5680): "
                         "train this model with the local engine")
    missing = [n for n in [*features, target] if n not in train.columns]
    if missing:
        raise KeyError(f"missing columns: {', '.join(missing[:5])}")
    train = train[[*features, target]]
    text = [n for n in features if _is_text(train[n].dtype)]
    bent = [n for n in text if directions.get(n, 0)]
    if bent:
        raise ValueError(f"text columns cannot have a monotone direction: {', '.join(bent)}")

    import dask

    fit_rows = train
    if valid is None:
        fit_rows, held = train.random_split([1.0 - holdout, holdout], random_state=seed)
    # read 1 (small results only): the target's and each text column's distinct values and
    # the rows in each partition to fit on
    distinct = dask.compute(fit_rows.map_partitions(len), train[target].dropna().unique(),
                            train[target].isna().sum(),
                            *[train[n].dropna().astype(str).unique() for n in text])
    lengths = [int(n) for n in distinct[0]]
    _check_target(distinct[1].tolist(), int(distinct[2]), bad)
    categories = {n: sorted(v.tolist()) for n, v in zip(text, distinct[3:], strict=True)}
    kept = [i for i, n in enumerate(lengths) if n]  # LightGBM refuses an empty worker shard
    n_rows = sum(lengths)
    stages = {"distinct values": time.perf_counter() - started}

    # read 2: every partition encoded and persisted on the workers (the driver never holds
    # it), and in the same graph, so from the same read, the sample the CV sees
    names = _lgb_names(features)
    meta = pd.DataFrame({**{n: pd.Series(dtype="float64") for n in names},
                         LABEL: pd.Series(dtype="int64")})
    encoded = fit_rows.map_partitions(_encode_part, features, names, categories, target, bad,
                                      meta=meta).partitions[kept]
    sampled = (fit_rows.sample(frac=min(1.0, sample_rows / max(n_rows, 1)), random_state=seed)
               if rounds is None else None)
    if sampled is None:
        encoded = client.persist(encoded)
    else:
        encoded, sampled = client.persist([encoded, sampled])
    digests = encoded.map_partitions(_digest_part, meta=(None, object)).compute().tolist()
    training_hash = hashlib.sha256("\0".join([*features, *digests]).encode()).hexdigest()
    stages["encode, persist, digest"] = time.perf_counter() - started - sum(stages.values())

    lgb_p = stump_params(scorecard_params(n_rows, features, directions, interactions,
                                          seed=seed, num_threads=_threads_per_worker(client),
                                          params=params))
    sample_report: dict[str, Any] = {}
    if sampled is not None:
        sample = pl.from_pandas(sampled.compute().reset_index(drop=True))
        client.cancel(sampled)
        regime = {k: lgb_p[k] for k in _REGIME}  # stumps, and the whole table's regime
        sample_y = encode_target(sample[target], bad)
        _, sample_report = train_scorecard(
            sample.drop(target), sample_y, features=features, directions=directions, seed=seed,
            num_threads=lgb_p["num_threads"], interactions=interactions, nfold=nfold,
            max_rounds=max_rounds, patience=patience, params={**(params or {}), **regime},
            progress=progress, infer_directions=False)  # the cluster fit uses `directions`
        rounds = int(sample_report["rounds"])
        stages["sample and CV"] = time.perf_counter() - started - sum(stages.values())
    cat_index = [i for i, n in enumerate(features) if n in categories]
    model = DaskLGBMClassifier(client=client, n_estimators=rounds,
                               **{k: v for k, v in lgb_p.items() if k != "num_threads"})
    with warnings.catch_warnings():  # it drops n_jobs (the workers' threads rule), as meant
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(encoded[names], encoded[LABEL], categorical_feature=cat_index)
    # the workers' addresses and random ports are not the model: dropped, so that model.txt
    # names no machine and the same fit gives the same text
    booster = lgb.Booster(model_str=_NETWORK.sub("", model.booster_.model_to_string()))
    client.cancel(encoded)
    stages["distributed fit"] = time.perf_counter() - started - sum(stages.values())

    if valid is not None:
        vy = (encode_target(valid_target, bad) if valid_target is not None
              else encode_target(valid[target], bad))
        calibrated_on, cal_x, cal_y = "validation", encode(valid, features, categories), vy
    else:
        held_sample = sample_frame(held, calibration_rows, seed + 1)
        cal_y = encode_target(held_sample[target], bad)
        fewest = int(min(cal_y.sum(), len(cal_y) - cal_y.sum()))
        if fewest < MIN_CALIBRATION_CLASS:
            raise ValueError(f"only {fewest} held-out rows of one class to calibrate on (fewer "
                             f"than {MIN_CALIBRATION_CLASS}): give a validation table, or hold "
                             "out a larger share")
        calibrated_on, cal_x = "held-out", encode(held_sample, features, categories)
    margin = booster.predict(cal_x, raw_score=True)
    calibration = fit_platt(margin, cal_y)
    cal_auc = float(roc_auc_score(cal_y, margin))

    stages["calibration"] = time.perf_counter() - started - sum(stages.values())
    info = scheduler_info(client)
    engine = {"name": "dask", "scheduler": info["scheduler"], "workers": info["workers"],
              "threads_per_worker": lgb_p["num_threads"], "partitions": len(kept),
              "partitions_read": train.npartitions, "tree_learner": "data",
              "rounds_from": (f"{sample_report['cv_folds']}-fold CV on a sample of "
                              f"{sample_report['n_train']} rows" if sample_report
                              else "given")}
    report: dict[str, Any] = {
        "seed": seed, "rounds": rounds, "engine": engine, "n_train": n_rows,
        "features": list(features), "categorical": sorted(categories), "params": lgb_p,
        "lightgbm": lgb.__version__, "training_data_hash": training_hash,
        "calibrated_on": calibrated_on, "calibration": calibration.to_dict(),
        "n_calibration": int(len(cal_y)),
        ("valid_auc" if valid is not None else "holdout_auc"): cal_auc,
    }
    if sample_report:
        report.update(cv_folds=sample_report["cv_folds"], sample_rows=sample_report["n_train"],
                      cv_auc=sample_report["cv_auc"], cv_auc_std=sample_report["cv_auc_std"])
    if valid is not None:
        report.update(n_valid=int(len(cal_y)), bad_rate_valid=float(np.mean(cal_y)))
    report["metrics"] = {k: report[k] for k in ("cv_auc", "valid_auc", "holdout_auc")
                         if k in report}
    scorecard = Scorecard(booster, features, calibration, scale or PointsScale(), directions,
                          categories, interactions=interactions,
                          info={"params": lgb_p, "seed": seed, "n_rounds": rounds,
                                "engine": "dask"})
    report["stage_seconds"] = {k: round(v, 3) for k, v in stages.items()}
    report["seconds"] = round(time.perf_counter() - started, 3)
    return scorecard, report


def stump_params(params: dict[str, Any]) -> dict[str, Any]:
    """The local trainer's parameters for a distributed fit: stumps (one split, so one
    feature, per tree) instead of `interaction_constraints`, which crash LightGBM's
    distributed learners (see the module docstring)."""
    out = {k: v for k, v in params.items() if k != "interaction_constraints"}
    out["num_leaves"] = 2
    return out


def scheduler_info(client: Any) -> dict[str, Any]:
    """The scheduler's address and its workers' count and threads."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    return {"scheduler": info.get("address", ""), "workers": len(workers),
            "threads": [int(w.get("nthreads", 1)) for w in workers.values()]}


def _threads_per_worker(client: Any) -> int:
    """LightGBM uses each worker's thread count; the smallest is what every worker gets."""
    return min(scheduler_info(client)["threads"] or [1])



def train_files(*, client: Any, out_of: str | Path, target: str | None = None,
                outcomes: str | Path | None = None, train_as_of: dt.date | None = None,
                valid_of: str | Path | None = None, valid_as_of: dt.date | None = None,
                features: list[str] | None = None, exclude: tuple[str, ...] = (),
                directions: dict[str, int] | None = None, bad: Any = None,
                people: pl.DataFrame | None = None, seed: int = 0, rounds: int | None = None,
                progress: bool = False, scale: PointsScale | None = None,
                thresholds: dict[str, float] | None = None,
                ) -> tuple[Scorecard, dict[str, Any], dict | None]:
    """`osmanthus train --engine dask`: read the training table (a Parquet file or directory)
    lazily — joined to `outcomes` as of `train_as_of` in catalog mode, or with its own
    `target` column in table mode — fit on `client`'s cluster, and evaluate on a sample of
    the validation table when there is one. Returns (scorecard, report, evaluation)."""
    from model.evaluate import evaluate

    catalog = outcomes is not None
    if catalog:
        if train_as_of is None:
            raise ValueError("catalog mode needs the training snapshot date")
        labels = read_partitioned(outcomes)
        train = labelled(read_partitioned(out_of), labels, train_as_of)
        target = "defaulted"
    elif target is None:
        raise ValueError("table mode needs a target column")
    else:
        train = read_partitioned(out_of)
        if target not in train.columns:
            raise KeyError(f"no column {target!r} in {out_of}")
    if features is None:
        skip = {target, *ID_COLUMNS, *exclude}
        features = [c for c in train.columns if c not in skip]
    valid = valid_y = None
    if valid_of is not None or (catalog and valid_as_of is not None):
        source = read_partitioned(valid_of if valid_of is not None else out_of)
        if catalog:
            if valid_as_of is None:
                raise ValueError("a validation table in catalog mode needs its snapshot date")
            source = labelled(source, labels, valid_as_of)
        valid = sample_frame(source, CALIBRATION_ROWS, seed + 2)
        valid_y = encode_target(valid[target], bad)
    card, report = train_scorecard_dask(
        client, train, target, valid=valid, valid_target=valid_y, features=features,
        directions=directions, seed=seed, bad=bad, rounds=rounds, progress=progress,
        scale=scale)
    evaluation = None
    if valid is not None:
        train_sample = sample_frame(train, CALIBRATION_ROWS, seed + 3)
        evaluation = evaluate(card, valid, valid_y, train_frame=train_sample, people=people,
                              as_of=valid_as_of, thresholds=thresholds)
        evaluation["sampled"] = {"valid_rows": valid.height, "train_rows": train_sample.height}
    return card, report, evaluation
