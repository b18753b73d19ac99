"""LightGBM hyperparameters for the scorecard (tuned in bench/quality.py)."""

from __future__ import annotations


def lgb_params(n_rows: int, seed: int, num_threads: int = 1) -> dict:
    """Base parameters; the trainer adds monotone and interaction constraints."""
    return {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 8,
        "min_data_in_leaf": max(20, n_rows // 500),
        "lambda_l2": 1.0,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "max_bin": 63,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }
