"""LightGBM hyperparameters for the scorecard, as a function of the training size.

Tuned in bench/quality.py against a WoE-binned logistic scorecard on public credit tables,
under one-feature-per-tree interaction constraints (the trainer adds those and the monotone
constraints). What mattered, measured by 5×5-fold CV on the German credit table (1,000 rows,
13 text columns), where plain LightGBM lost by 0.013 AUC:

- one-vs-rest category splits (`max_cat_to_onehot`): LightGBM's default many-vs-many split on
  gradient-sorted categories overfits small groups; one category per step is what a scorecard
  bin is (German: −0.013 → −0.006);
- extremely randomised thresholds (`extra_trees`) and half the features offered to each tree:
  on small tables this averages many slightly different step functions into a smoother curve
  per feature, like a scorecard's coarse bins but learnt (German: → ±0.000);
- a few leaves (4) per tree and the default learning rate; more or fewer leaves, a smaller rate,
  larger leaves, L1/L2, path smoothing or `min_gain_to_split` moved nothing beyond the noise
  (±0.003) or lost.
Together these took the margin over the WoE scorecard from +0.009 to +0.022 AUC on
CreditScoring (4,454 rows) and from +0.017 to +0.031 on HMDA (2,380 rows).
Past `LARGE` rows the greedy splits have data enough: randomisation then costs rounds and a
little AUC (Taiwan, 30,000 rows: −0.001; the 200,000-person city: −0.0008 and 4× the time), so
it is switched off and trees get 8 leaves.
Rare records and rare extremes (issue 11): `min_sum_hessian_in_leaf` = MIN_LEAF_HESSIAN. A
binary leaf's hessian is Σ p(1−p), about its expected number of defaults, so a step of the
scorecard may stand only on the evidence of about five expected defaults, the rule of thumb
of WoE binning (every bin needs goods and bads). It is asymmetric in the right way: 150 people
with an active court listing (a risky group, p near 15%) easily pass, so a 0.5% record gets its
points, while 200 heavy volunteers at a 1% default rate (two expected defaults, often none by
chance) cannot be split off and ratcheted to +80 points by a run of zeros. On the small public
tables of bench/quality.py (bad rates 20–30%) `min_data_in_leaf` binds first, so they are
unchanged. Past `LARGE` rows L2 is 10 (LARGE_L2), a prior that shrinks a leaf's step by
H/(H+10): a step resting on ten expected defaults keeps half its size per round, one resting
on hundreds nearly all. Without it the monotone steps of rare tails (volunteer hours, blood
donations) jumped from 5 to 90 points between two seeds of the same city; with it the points
of every record type moved by a few points only (issue 11, measured on the demo city under
two person keys).
Everything is seeded and `deterministic`: the same data and seed give the same model.
"""

from __future__ import annotations

CV_FOLDS = 5  # k of the k-fold lightgbm.cv that picks the number of rounds
MAX_ROUNDS = 5000  # upper bound on rounds; the CV stops well before on real data
STOPPING_ROUNDS = 100  # rounds without improvement of the CV metric before it stops
LARGE = 20_000  # training rows from which the plain (non-randomised) trees are used
LARGE_L2 = 10.0  # see lgb_params: shrinks the steps of rare groups until evidence accumulates
MIN_LEAF_HESSIAN = 5.0  # see lgb_params: a leaf must hold the evidence of about five expected defaults


def lgb_params(n_rows: int, seed: int, num_threads: int = 1) -> dict:
    """Base parameters; the trainer adds monotone and interaction constraints."""
    small = n_rows < LARGE
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": 0.05,
        "num_leaves": 4 if small else 8,
        "min_data_in_leaf": max(20, n_rows // 500),
        "lambda_l2": 1.0 if small else LARGE_L2,
        "min_sum_hessian_in_leaf": MIN_LEAF_HESSIAN,
        "extra_trees": small,
        "feature_fraction": 0.5 if small else 1.0,
        "bagging_fraction": 1.0,
        "max_bin": 255 if small else 63,
        "max_cat_to_onehot": 64,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }
