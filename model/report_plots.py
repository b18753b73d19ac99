"""The figures of the modeller's report (model/report.py), each drawn with matplotlib and
returned as PNG bytes.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, so no window and no
global pyplot state is involved; only the SHAP summary goes through pyplot (the `shap`
package draws on the current figure), and pyplot is set to the Agg backend unless the caller
already chose one (a notebook's inline backend stays). PNGs carry no "Software" metadata and
every random choice takes a seed, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COLOURS = ("#b5472b", "#3f6ea5", "#6b8e23", "#8e6bb5")  # challenger, champion, …
BAD, GOOD = "#c0392b", "#2e7d4f"
DPI = 100
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False}


@dataclass
class Curve:
    """One model's scores on the snapshot, for the plots that draw every model together."""

    label: str
    score: np.ndarray
    probability: np.ndarray
    target: np.ndarray
    metrics: dict[str, Any]
    calibration: list[dict[str, Any]]


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png(figure: Any) -> bytes:
    """The figure as PNG bytes (no timestamp or software metadata, so output is stable)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def roc_ks(curves: Sequence[Curve]) -> bytes:
    """ROC curves (left) and KS curves (right) of every model on the same axes."""
    from sklearn.metrics import roc_curve

    with matplotlib.rc_context(STYLE):
        figure = _figure(10, 4.2)
        roc_ax, ks_ax = figure.subplots(1, 2)
        roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
        for i, curve in enumerate(curves):
            colour = COLOURS[i % len(COLOURS)]
            if len(np.unique(curve.target)) > 1:
                fpr, tpr, _ = roc_curve(curve.target, curve.probability)
                roc_ax.plot(fpr, tpr, color=colour, linewidth=1.6,
                            linestyle="-" if i == 0 else "--",
                            label=f"{curve.label} (AUC {_fmt(curve.metrics.get('auc'))})")
            _ks_lines(ks_ax, curve, colour)
        roc_ax.set(title="ROC", xlabel="false positive rate (non-defaulters flagged)",
                   ylabel="true positive rate (defaulters flagged)", xlim=(0, 1), ylim=(0, 1))
        roc_ax.legend(loc="lower right")
        ks_ax.set(title="KS: cumulative share with score ≤ x", xlabel="score",
                  ylabel="cumulative share", ylim=(0, 1.02))
        # below the axes: inside, the legend covered the KS marker it names
        ks_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=7)
        return png(figure)


def _ks_lines(ax: Any, curve: Curve, colour: str) -> None:
    bads = np.sort(curve.score[curve.target == 1])
    goods = np.sort(curve.score[curve.target == 0])
    if not len(bads) or not len(goods):
        return
    grid = np.unique(curve.score)
    cum_bad = np.searchsorted(bads, grid, side="right") / len(bads)
    cum_good = np.searchsorted(goods, grid, side="right") / len(goods)
    ax.plot(grid, cum_bad, color=colour, linewidth=1.6, label=f"{curve.label}: defaulters")
    ax.plot(grid, cum_good, color=colour, linewidth=1.6, linestyle="--",
            label=f"{curve.label}: non-defaulters")
    at = int(np.argmax(cum_bad - cum_good))
    ax.vlines(grid[at], cum_good[at], cum_bad[at], color=colour, linewidth=2.5, alpha=0.6,
              label=f"{curve.label}: KS gap")
    ax.annotate(f"KS {_fmt(curve.metrics.get('ks'))}", (grid[at], cum_bad[at]),
                xytext=(6, -4), textcoords="offset points", color=colour, fontsize=8)


def score_distribution(curves: Sequence[Curve], thresholds: dict[str, float]) -> bytes:
    """Histograms (density) of the score of defaulters and non-defaulters, one panel per
    model on shared axes, with the perk thresholds marked."""
    low = min(float(c.score.min()) for c in curves)
    high = max(float(c.score.max()) for c in curves)
    bins = np.linspace(low, high if high > low else low + 1, 41)
    with matplotlib.rc_context(STYLE):
        figure = _figure(5 * len(curves), 3.8)
        axes = np.atleast_1d(figure.subplots(1, len(curves), sharex=True, sharey=True))
        for ax, curve in zip(axes, curves, strict=True):
            for value, colour, name, hatch in ((0, GOOD, "non-defaulters", None),
                                               (1, BAD, "defaulters", "///")):
                scores = curve.score[curve.target == value]
                if len(scores):
                    ax.hist(scores, bins=bins, density=True, histtype="stepfilled", alpha=0.35,
                            color=colour, hatch=hatch, edgecolor=colour,
                            label=f"{name} (n={len(scores)})")
            for minimum in sorted(set(thresholds.values())):
                ax.axvline(minimum, color="grey", linestyle=":", linewidth=1)
                names = ", ".join(sorted(k for k, v in thresholds.items() if v == minimum))
                ax.annotate(f"{minimum:g} {names}", (minimum, 1), xycoords=("data", "axes fraction"),
                            xytext=(2, -2), textcoords="offset points", rotation=90, va="top",
                            fontsize=6, color="#555")
            ax.set(title=curve.label, xlabel="score", ylabel="density")
            ax.legend(loc="upper left", fontsize=8)
        return png(figure)


def calibration(curves: Sequence[Curve]) -> bytes:
    """Predicted against observed default rate by decile of predicted risk, every model."""
    with matplotlib.rc_context(STYLE):
        figure = _figure(5.2, 4.6)
        ax = figure.subplots()
        top = 0.0
        for i, curve in enumerate(curves):
            predicted = [r["predicted"] for r in curve.calibration]
            observed = [r["observed"] for r in curve.calibration]
            top = max(top, *predicted, *observed)
            ax.plot(predicted, observed, marker="os^D"[i % 4], color=COLOURS[i % len(COLOURS)],
                    linewidth=1.4, linestyle="-" if i == 0 else "--",
                    label=f"{curve.label} (Brier "
                    f"{_fmt(curve.metrics.get('brier'), 4)})")
        top = top * 1.05 or 1.0
        ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1,
                label="perfectly calibrated")
        ax.set(title="Calibration by decile of predicted risk", xlim=(0, top), ylim=(0, top),
               xlabel="predicted default rate", ylabel="observed default rate")
        ax.legend(loc="upper left", fontsize=8)
        return png(figure)


def psi_bars(values: dict[str, float], title: str) -> bytes:
    """PSI per feature, largest first, with the usual 0.1 (watch) and 0.25 (shift) marks."""
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    names = [k for k, _ in ranked][::-1]
    psis = np.array([v for _, v in ranked][::-1])
    colours = [GOOD if v < 0.1 else ("#d68910" if v < 0.25 else BAD) for v in psis]
    with matplotlib.rc_context(STYLE):
        figure = _figure(7.5, max(2.5, 0.22 * len(names) + 1.2))
        ax = figure.subplots()
        ax.barh(names, psis, color=colours)
        ax.axvline(0.1, color="#d68910", linestyle="--", linewidth=1, label="0.1: watch")
        ax.axvline(0.25, color=BAD, linestyle="--", linewidth=1, label="0.25: shifted")
        ax.set(title=title, xlabel="PSI", xlim=(0, max(0.3, float(psis.max(initial=0)) * 1.1)))
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(loc="lower right", fontsize=8)
        return png(figure)


def shap_summary(points: np.ndarray, values: np.ndarray, names: list[str], title: str, *,
                 max_display: int = 20, seed: int = 0) -> bytes:
    """The `shap` package's summary (beeswarm) plot of each person's points per feature,
    coloured by the feature's value."""
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():  # shap's colour maps use calls matplotlib is deprecating
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        figure = plt.figure(figsize=(8, 0.32 * min(max_display, len(names)) + 1.6), dpi=DPI)
        try:
            shap.summary_plot(points, values, feature_names=names, max_display=max_display,
                              show=False, plot_size=None, color_bar_label="feature value",
                              rng=np.random.default_rng(seed))
            figure.axes[0].set_xlabel("points (SHAP value × points scale)")
            figure.axes[0].set_title(title)
            figure.tight_layout()
            return png(figure)
        finally:
            plt.close(figure)


def reason_bars(frequencies: dict[str, dict[str, float]], top: int = 15) -> bytes:
    """How often each feature is among a person's top lowering reasons, per model."""
    labels = list(frequencies)
    most = {n: max(f.get(n, 0.0) for f in frequencies.values())
            for n in set().union(*[set(f) for f in frequencies.values()])}
    names = sorted((n for n in most if most[n] > 0), key=lambda n: (-most[n], n))[:top][::-1]
    names = names or sorted(most)[:top]
    height = 0.8 / len(labels)
    y = np.arange(len(names))
    with matplotlib.rc_context(STYLE):
        figure = _figure(7.5, max(2.5, 0.28 * len(names) * len(labels) + 1.2))
        ax = figure.subplots()
        for i, label in enumerate(labels):
            shares = [frequencies[label].get(n, 0.0) for n in names]
            ax.barh(y + (len(labels) - 1 - i) * height - 0.4 + height / 2, shares, height,
                    color=COLOURS[i % len(COLOURS)], label=label)
        ax.set_yticks(y, names, fontsize=7)
        ax.set(title="Share of people with the feature among their top lowering reasons",
               xlabel="share of people")
        ax.legend(loc="lower right", fontsize=8)
        return png(figure)


def fairness_bars(perk: str, entries: list[tuple[str, dict[str, Any]]], floor: float) -> bytes:
    """Approval rate of each group at one perk threshold, one panel per attribute, every
    model's bars side by side; the dashed line is `floor` × the best counted group's rate."""
    attributes = list(entries[0][1]["attributes"])
    threshold = entries[0][1]["threshold"]
    with matplotlib.rc_context(STYLE):
        figure = _figure(max(4.0, 3.6 * len(attributes)), 3.6)
        axes = np.atleast_1d(figure.subplots(1, len(attributes), sharey=True))
        width = 0.8 / len(entries)
        for ax, attribute in zip(axes, attributes, strict=True):
            groups = [g["group"] for g in entries[0][1]["attributes"][attribute]["groups"]]
            x = np.arange(len(groups))
            airs = []
            for i, (label, entry) in enumerate(entries):
                detail = entry["attributes"].get(attribute) or {"groups": [], "air": None}
                rates = {g["group"]: g["rate"] or 0.0 for g in detail["groups"]}
                ax.bar(x - 0.4 + width * (i + 0.5), [rates.get(g, 0.0) for g in groups], width,
                       color=COLOURS[i % len(COLOURS)], label=label,
                       hatch=None if i == 0 else "..", edgecolor="white")
                airs.append(f"{label} {_fmt(detail['air'])}")
                counted = [g["rate"] for g in detail["groups"] if g["in_ratio"] and g["rate"]]
                if i == 0 and counted:
                    ax.axhline(floor * max(counted), color="grey", linestyle="--", linewidth=1)
            ax.set_xticks(x, groups, rotation=30 if len(groups) > 4 else 0, fontsize=8)
            ax.set(title=f"{attribute} — AIR: " + ", ".join(airs), ylim=(0, 1.05))
            ax.title.set_fontsize(8)
        axes[0].set_ylabel("approval rate")
        axes[0].legend(loc="lower left", fontsize=7)
        figure.suptitle(f"{perk}: score ≥ {threshold:g} (dashed: {floor} × highest rate)",
                        fontsize=10)
        return png(figure)
