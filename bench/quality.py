"""Quality bar: the LightGBM scorecard against a classic WoE-logistic scorecard.

    python bench/quality.py                       # every public credit table shipped in packages
    python bench/quality.py --data FILE --target COL [--repeats 5 --folds 5]
    python bench/quality.py --city 200000         # synthetic city: model, scorecard, truth

On each table, both contenders are fitted on the same folds of a repeated stratified k-fold
(sklearn `RepeatedStratifiedKFold`, fixed seed) and scored by test-fold AUC:
- baseline: optbinning `BinningProcess` (WoE, default settings) + sklearn `LogisticRegression`;
- trainer: `model.train.train_scorecard` when it exists, else the same procedure written out
  here (parameters from `model.params`, one feature per tree, rounds by k-fold `lightgbm.cv` on
  the training fold only).
The bar: the trainer's mean AUC is at least the baseline's, on every table. The trainer infers
a monotone direction for every numeric column (model/table_mode.py) as `osmanthus train
--table` does. Beside them, on the same folds, an unconstrained LightGBM (interactions, no
monotone constraints; its tree size and rounds chosen by k-fold CV on the training fold, see
`ceiling`) is the accuracy ceiling: the scorecard's distance from it is what its printable,
monotone form costs.
Everything runs on one thread (LightGBM `num_threads=1`, one sklearn/optbinning job).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import RepeatedStratifiedKFold  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import city_records, machine  # noqa: E402
from bench.datasets import Dataset, from_file, shipped  # noqa: E402
from model.params import CV_FOLDS, MAX_ROUNDS, STOPPING_ROUNDS, lgb_params  # noqa: E402

Predictor = Callable[[pd.DataFrame], np.ndarray]
Fitter = Callable[..., Predictor]
OVERRIDES: dict[str, object] = {}  # --set key=value, applied to lgb_params (reference only)


def text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that are not numbers: both contenders treat them as categories."""
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def baseline(x: pd.DataFrame, y: np.ndarray, seed: int = 0, **_: object) -> Predictor:
    """WoE-binned logistic regression (optbinning defaults), fitted on (x, y)."""
    from optbinning import BinningProcess
    from sklearn.linear_model import LogisticRegression

    categorical = text_columns(x)

    def objects(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for column in categorical:
            frame[column] = frame[column].astype(object)
        return frame

    binning = BinningProcess(list(x.columns), categorical_variables=categorical, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        woe = binning.fit_transform(objects(x), y)
        logistic = LogisticRegression(max_iter=5000, random_state=seed).fit(woe, y)

    def predict(test: pd.DataFrame) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return logistic.predict_proba(binning.transform(objects(test)))[:, 1]

    return predict


def _as_categories(frame: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    frame = frame.copy()
    for column, categories in levels.items():
        values = frame[column].astype(object).where(frame[column].notna(), None)
        frame[column] = pd.Categorical(values.map(lambda v: None if v is None else str(v)),
                                       categories=categories)
    return frame


def reference_trainer(x: pd.DataFrame, y: np.ndarray, seed: int = 0, *,
                      directions: dict[str, int] | None = None) -> Predictor:
    """What train_scorecard does, written out: additive LightGBM, rounds by k-fold CV."""
    levels = {c: sorted(x[c].dropna().astype(str).unique()) for c in text_columns(x)}
    frame = _as_categories(x, levels)
    params = {**lgb_params(len(frame), seed, num_threads=1), **OVERRIDES}
    params["interaction_constraints"] = [[i] for i in range(frame.shape[1])]
    if directions:
        params["monotone_constraints"] = [-int(directions.get(c, 0)) for c in frame.columns]
    data = lgb.Dataset(frame, y.astype(float), categorical_feature=list(levels) or "auto",
                       free_raw_data=False, params={"verbosity": -1})
    history = lgb.cv(params, data, num_boost_round=MAX_ROUNDS, nfold=CV_FOLDS, stratified=True,
                     shuffle=True, seed=seed,
                     callbacks=[lgb.early_stopping(STOPPING_ROUNDS, verbose=False)])
    rounds = len(next(iter(history.values())))
    booster = lgb.train(params, data, num_boost_round=rounds)

    def predict(test: pd.DataFrame) -> np.ndarray:
        return booster.predict(_as_categories(test, levels))

    predict.rounds = rounds  # type: ignore[attr-defined]
    return predict


def ceiling(x: pd.DataFrame, y: np.ndarray, seed: int = 0, **_: object) -> Predictor:
    """Unconstrained LightGBM: trees over any features, no monotone constraints, native
    categories. Two settings compete by 5-fold CV log loss on the training rows only (never the
    test fold): the trainer's own size-tuned parameters without its constraints, and LightGBM's
    default tree size (31 leaves) at a 0.05 rate with row and feature bagging. The winner, at
    its CV-chosen rounds, is what a black box gets from the same data."""
    levels = {c: sorted(x[c].dropna().astype(str).unique()) for c in text_columns(x)}
    frame = _as_categories(x, levels)
    common = {"objective": "binary", "metric": "binary_logloss", "seed": seed,
              "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbosity": -1}
    candidates = [
        {**lgb_params(len(frame), seed, num_threads=1), **common},
        {**common, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
         "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0},
    ]
    best: tuple[float, dict, int] | None = None
    for params in candidates:
        data = lgb.Dataset(frame, y.astype(float), categorical_feature=list(levels) or "auto",
                           free_raw_data=False, params={"verbosity": -1})
        history = lgb.cv(params, data, num_boost_round=MAX_ROUNDS, nfold=CV_FOLDS,
                         stratified=True, shuffle=True, seed=seed,
                         callbacks=[lgb.early_stopping(STOPPING_ROUNDS, verbose=False)])
        loss = history["valid binary_logloss-mean"]
        if best is None or loss[-1] < best[0]:
            best = (loss[-1], params, len(loss))
    assert best is not None
    data = lgb.Dataset(frame, y.astype(float), categorical_feature=list(levels) or "auto",
                       free_raw_data=False, params={"verbosity": -1})
    booster = lgb.train(best[1], data, num_boost_round=best[2])
    return lambda test: booster.predict(_as_categories(test, levels))


def project_trainer() -> Fitter | None:
    """`model.train.train_scorecard` as a fold fitter, or None while it does not exist."""
    try:
        train_scorecard = importlib.import_module("model.train").train_scorecard
    except (ImportError, AttributeError):
        return None

    def fit(x: pd.DataFrame, y: np.ndarray, seed: int = 0, *,
            directions: dict[str, int] | None = None) -> Predictor:
        import polars as pl

        frame = pl.from_pandas(x)
        scorecard, report = train_scorecard(frame, y, frame, y, directions=directions, seed=seed,
                                            num_threads=1, progress=False)

        def predict(test: pd.DataFrame) -> np.ndarray:
            return np.asarray(scorecard.predict_proba(pl.from_pandas(test)), dtype=float)

        predict.rounds = (report or {}).get("rounds") if isinstance(report, dict) else None  # type: ignore[attr-defined]
        return predict

    return fit


def compare(data: Dataset, trainer: Fitter, repeats: int, folds: int, seed: int = 0) -> dict:
    """Both contenders on the same repeated stratified folds: AUC per fold and summary."""
    start = time.perf_counter()
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    base, model, rounds, top = [], [], [], []
    for fold, (train, test) in enumerate(splitter.split(data.features, data.target)):
        x_train, y_train = data.features.iloc[train], data.target[train]
        x_test, y_test = data.features.iloc[test], data.target[test]
        base.append(roc_auc_score(y_test, baseline(x_train, y_train, seed)(x_test)))
        predictor = trainer(x_train, y_train, seed=seed + fold)
        model.append(roc_auc_score(y_test, predictor(x_test)))
        rounds.append(getattr(predictor, "rounds", None) or 0)
        top.append(roc_auc_score(y_test, ceiling(x_train, y_train, seed + fold)(x_test)))
    base_auc, model_auc, top_auc = np.array(base), np.array(model), np.array(top)
    diff = model_auc - base_auc
    return {
        "dataset": data.name, "rows": data.rows, "columns": data.columns,
        "bad_rate": float(data.target.mean()),
        "baseline_mean": float(base_auc.mean()), "baseline_sd": float(base_auc.std(ddof=1)),
        "trainer_mean": float(model_auc.mean()), "trainer_sd": float(model_auc.std(ddof=1)),
        "difference": float(diff.mean()), "difference_se": float(diff.std(ddof=1) / np.sqrt(len(diff))),
        "wins": int((diff > 0).sum()), "folds": len(diff),
        "ceiling_mean": float(top_auc.mean()), "ceiling_sd": float(top_auc.std(ddof=1)),
        "below_ceiling": float((top_auc - model_auc).mean()),
        "below_ceiling_se": float((top_auc - model_auc).std(ddof=1) / np.sqrt(len(diff))),
        "ceiling_over_baseline": float((top_auc - base_auc).mean()),
        "ceiling_over_baseline_se": float((top_auc - base_auc).std(ddof=1) / np.sqrt(len(diff))),
        "median_rounds": float(np.median(rounds)), "passed": bool(diff.mean() >= 0),
        "seconds": time.perf_counter() - start,
    }


def print_row(r: dict) -> None:
    print(f"{r['dataset']:<18}{r['rows']:>7}{r['columns']:>5}{r['bad_rate']:>7.3f}  "
          f"{r['baseline_mean']:.4f} ± {r['baseline_sd']:.4f}  "
          f"{r['trainer_mean']:.4f} ± {r['trainer_sd']:.4f}  "
          f"{r['difference']:+.4f} ± {r['difference_se']:.4f}  {r['wins']:>2}/{r['folds']:<3}"
          f"{r['median_rounds']:>7.0f}  {'pass' if r['passed'] else 'FAIL':<5}"
          f"{r['ceiling_mean']:>8.4f} {r['below_ceiling']:+.4f} ± {r['below_ceiling_se']:.4f}"
          f"{r['seconds']:>7.1f}", flush=True)


HEADER = (f"{'dataset':<18}{'rows':>7}{'cols':>5}{'bad':>7}  {'WoE-logistic AUC':<17}  "
          f"{'trainer AUC':<17}  {'diff ± se':<16} {'wins':<6}{'rounds':>6}  {'bar':<5}"
          f"{'ceiling':>8} {'ceiling−trainer':<16}{'s':>7}")


def run_tables(tables: list[Dataset], trainer: Fitter, repeats: int, folds: int) -> list[dict]:
    print(HEADER, flush=True)
    results = []
    for table in tables:
        results.append(compare(table, trainer, repeats, folds))
        print_row(results[-1])
    return results


def run_city(people: int, seed: int, workdir: Path, trainer: Fitter) -> dict:
    """Synthetic city: train as of 2024-01-01, test as of 2025-01-01, against the truth."""
    import datetime as dt

    import polars as pl

    from features.build import build_features
    from features.catalog import FEATURE_NAMES, directions

    out, records = city_records(workdir, people, seed)
    outcomes = pl.read_parquet(out / "outcomes.parquet", columns=["person_key", "snapshot", "defaulted"])
    truth = pl.read_parquet(out / "truth.parquet", columns=["person_key", "snapshot", "true_pd"])

    def table(day: dt.date) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Features as of `day`, the 12-month outcome after it and the true probability."""
        labels = outcomes.filter(pl.col("snapshot").cast(pl.Date) == day).drop("snapshot")
        probs = truth.filter(pl.col("snapshot").cast(pl.Date) == day).drop("snapshot")
        feats = build_features(records, day, persons=labels.get_column("person_key"))
        joined = feats.join(labels, on="person_key").join(probs, on="person_key", how="left")
        return (joined.select(FEATURE_NAMES).to_pandas(),
                joined.get_column("defaulted").to_numpy().astype(np.int8),
                joined.get_column("true_pd").to_numpy())

    t0 = time.perf_counter()
    x_train, y_train, _ = table(dt.date(2024, 1, 1))
    x_test, y_test, p_test = table(dt.date(2025, 1, 1))
    print(f"  features built in {time.perf_counter() - t0:.1f} s: train {len(x_train):,} rows "
          f"(bad {y_train.mean():.3f}), test {len(x_test):,} (bad {y_test.mean():.3f})", flush=True)
    t0 = time.perf_counter()
    model_auc = roc_auc_score(y_test, trainer(x_train, y_train, seed, directions=directions())(x_test))
    model_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_auc = roc_auc_score(y_test, baseline(x_train, y_train, seed)(x_test))
    base_s = time.perf_counter() - t0
    truth_auc = roc_auc_score(y_test, np.nan_to_num(p_test))
    result = {"people": people, "model_auc": model_auc, "scorecard_auc": base_auc,
              "truth_auc": truth_auc, "model_seconds": model_s, "scorecard_seconds": base_s,
              "passed": bool(model_auc >= base_auc)}
    print(f"city {people:,}: model AUC {model_auc:.4f} ({model_s:.0f} s) · WoE-logistic AUC "
          f"{base_auc:.4f} ({base_s:.0f} s) · true-probability AUC {truth_auc:.4f} · "
          f"{'pass' if result['passed'] else 'FAIL'}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a CSV or Parquet table (default: every shipped table)")
    parser.add_argument("--target", help="the target column of --data")
    parser.add_argument("--only", nargs="*", help="shipped tables to run, by name")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--city", type=int, nargs="?", const=200_000, default=None,
                        help="synthetic city of N people (default 200,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "osmanthus-bench"),
                        help="where a city is generated (kept and reused)")
    parser.add_argument("--reference", action="store_true",
                        help="use the written-out trainer even if model.train exists")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one LightGBM parameter (reference trainer; tuning)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    for item in args.set:
        key, value = item.split("=", 1)
        OVERRIDES[key] = json.loads(value) if value[:1] in "-0123456789[{tf" else value

    project = None if args.reference or OVERRIDES else project_trainer()
    trainer = project or reference_trainer
    print(machine())
    print(f"trainer: {'model.train.train_scorecard' if project else 'reference (bench/quality.py)'}"
          f"{' ' + json.dumps(OVERRIDES) if OVERRIDES else ''}", flush=True)
    if args.city is not None:
        results: object = run_city(args.city, args.seed, Path(args.workdir), trainer)
        ok = results["passed"]  # type: ignore[index]
    else:
        if args.data:
            if not args.target:
                parser.error("--data needs --target")
            tables = [from_file(args.data, args.target)]
        else:
            tables = shipped(args.only)
        print(f"{args.repeats}× repeated {args.folds}-fold CV, seed {args.seed}")
        results = run_tables(tables, trainer, args.repeats, args.folds)
        ok = all(r["passed"] for r in results)  # type: ignore[union-attr]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
