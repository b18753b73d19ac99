"""Variants of the trainer on one table, paired fold by fold with the trainer as it is and with
the WoE-logistic scorecard: how a change to `model.params` was measured before it was kept.

    python bench/variants.py --only german --variants '{"path_smooth 5": {"params": {"path_smooth": 5}}}'
    python bench/variants.py --only german --variants FILE.json --ceiling

A variant is a JSON object with any of:
- `params`: LightGBM overrides passed to `train_scorecard(params=...)`;
- `train`: keyword arguments of `train_scorecard` (`nfold`, `patience`, `max_rounds`);
- `seeds`: k > 1 fits with seeds s, s + 7919, … (each with its own inner CV), their margins
  averaged: what one model file made of the k boosters' trees, leaves scaled 1/k, would score;
- `choose`: a list of `params` overrides; on each training fold the one with the lowest inner
  CV log loss (`report["cv_logloss"]`, the training rows only) is kept.
Folds, seeds and the baseline are bench/quality.py's (5× repeated 5-fold stratified CV, seed 0,
trainer seed = seed + fold), so "{}" reproduces its trainer column. A difference against the
trainer is paired, so its standard error is far smaller than the one against WoE: a variant
"beyond the noise" is more than two of those from zero. `--ceiling` adds bench/quality.py's
unconstrained LightGBM against WoE on the same folds: a scorecard is not expected above it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import RepeatedStratifiedKFold  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine  # noqa: E402
from bench.datasets import Dataset, shipped  # noqa: E402
from bench.quality import baseline, ceiling  # noqa: E402
from model.train import train_scorecard  # noqa: E402

SEED_STEP = 7919  # seed offset between the members of a seed average


def fit_margin(x: pd.DataFrame, y: np.ndarray, seed: int, spec: dict[str, Any],
               chosen: list[str]) -> Any:
    """Fit one variant on a training fold; returns test frame → margin (higher = riskier)."""
    frame = pl.from_pandas(x)

    def fit(s: int, params: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        return train_scorecard(frame, y, frame, y, seed=s, num_threads=1, params=params,
                               **spec.get("train", {}))

    params = spec.get("params")
    if spec.get("choose"):
        fits = [({**(params or {}), **extra}, fit(seed, {**(params or {}), **extra}))
                for extra in spec["choose"]]
        best = min(range(len(fits)), key=lambda i: fits[i][1][1]["cv_logloss"])
        chosen.append(json.dumps(spec["choose"][best], sort_keys=True))
        params = fits[best][0]
    cards = [fit(seed + SEED_STEP * j, params)[0] for j in range(int(spec.get("seeds", 1)))]
    return lambda test: np.mean([c.margin(pl.from_pandas(test)) for c in cards], axis=0)


def per_fold(data: Dataset, splits: list, fitter: Any) -> np.ndarray:
    """Test-fold AUC of `fitter(x, y, fold)` on every split."""
    out = []
    for fold, (train, test) in enumerate(splits):
        predict = fitter(data.features.iloc[train], data.target[train], fold)
        out.append(roc_auc_score(data.target[test], predict(data.features.iloc[test])))
    return np.array(out)


def paired(a: np.ndarray, b: np.ndarray) -> str:
    d = a - b
    return f"{d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(len(d)):.4f} ({(d > 0).sum()}/{len(d)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", required=True, help="one shipped table, by name")
    parser.add_argument("--variants", required=True, help="JSON {label: variant} or a file of it")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ceiling", action="store_true", help="also the unconstrained LightGBM")
    parser.add_argument("--json", help="also write every fold's AUC here")
    args = parser.parse_args(argv)
    text = args.variants
    variants = json.loads(Path(text).read_text() if Path(text).is_file() else text)
    data = shipped([args.only])[0]
    splits = list(RepeatedStratifiedKFold(n_splits=args.folds, n_repeats=args.repeats,
                                          random_state=args.seed).split(data.features,
                                                                        data.target))
    print(machine())
    print(f"{data.name}: {data.rows} rows, {args.repeats}× repeated {args.folds}-fold CV, "
          f"seed {args.seed}", flush=True)
    woe = per_fold(data, splits, lambda x, y, _: baseline(x, y, args.seed))
    current = per_fold(data, splits, lambda x, y, f: fit_margin(x, y, args.seed + f, {}, []))
    results: dict[str, list[float]] = {"woe": woe.tolist(), "trainer": current.tolist()}
    print(f"WoE-logistic {woe.mean():.4f} · trainer {current.mean():.4f}, against WoE "
          f"{paired(current, woe)}", flush=True)
    if args.ceiling:
        top = per_fold(data, splits, lambda x, y, f: ceiling(x, y, args.seed + f))
        results["ceiling"] = top.tolist()
        print(f"ceiling {top.mean():.4f}: against WoE {paired(top, woe)}, against the trainer "
              f"{paired(top, current)}", flush=True)
    for label, spec in variants.items():
        chosen: list[str] = []
        started = time.perf_counter()
        auc = per_fold(data, splits, lambda x, y, f, s=spec, c=chosen: fit_margin(
            x, y, args.seed + f, s, c))
        results[label] = auc.tolist()
        print(f"{label:<32} {auc.mean():.4f}  against WoE {paired(auc, woe)}  against the "
              f"trainer {paired(auc, current)}  {time.perf_counter() - started:.0f} s", flush=True)
        if chosen:
            print("    chosen per fold:", dict(collections.Counter(chosen)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
