"""The classic scorecard on paper: every feature's bins and their points, in CSV and Markdown.

Modellers, auditors and citizens can check a score by hand: find the person's bin for each
feature, add the points to the base points, and get the score before clipping. The CSV keeps
every float exactly (shortest round-trip form), so the sum reproduces the score exactly.

Whole points, as a citizen's page shows them (model/shown.py). The base is `floor(base
points)`, the very number on every page. A bin's whole points are its exact points rounded to
the nearest whole number (a half up). A page shows each feature's exact points rounded down or
up so that the page adds up exactly to the score (largest remainder): that is the card's whole
number except in as few features as the sum needs (on random people about 1 feature in 30,
those nearest a half), where it is the other whole number next to the exact points. Both
numbers are within 1 of the exact points; the page gives the exact points beside them.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from model.scorecard import Scorecard

BASE_ROW = "base_points"


def whole(points: float) -> int:
    """A bin's whole points on the card: the nearest whole number, a half up."""
    return math.floor(points + 0.5)


def scorecard_rows(scorecard: Scorecard) -> pl.DataFrame:
    """`points_table()` with the base points as the first row (feature `base_points`), and
    `points_whole`: the card's whole points (the base: its floor, as every page shows it)."""
    table = scorecard.points_table()
    base = pl.DataFrame({"feature": [BASE_ROW], "bin": [""], "lower": [None], "upper": [None],
                         "points": [float(scorecard.base_points)]}, schema=table.schema)
    rows = pl.concat([base, table])
    wholes = [math.floor(scorecard.base_points)] + [whole(p) for p in table["points"]]
    return rows.with_columns(points_whole=pl.Series(wholes, dtype=pl.Int64))


def _markdown(scorecard: Scorecard, rows: pl.DataFrame) -> str:
    scale = scorecard.scale
    lines = [
        "# Scorecard", "",
        f"score = base points + the points of the person's bin of every feature, clipped to "
        f"{scale.min_score:g}–{scale.max_score:g}. Scale: {scale.base_score:g} points at "
        f"{scale.base_odds:g}:1 good:bad odds, {scale.pdo:g} points to double the odds. A bin "
        "(a, b] holds values above a and up to b; `missing` holds missing (or unseen) values. "
        "Exact points are rounded to 4 places here; scorecard.csv has them exactly.", "",
        "A citizen's page shows whole points that add up exactly to the whole score (the "
        "exact score cut, never rounded up): the base below, each feature's exact points "
        "rounded down or up (largest remainder), and a clip line if the score left the "
        "scale. A feature's whole points are the ones printed here except in as few features "
        "as the sum needs (those nearest a half), where they are the other whole number next "
        "to the exact points.", "",
        f"**Base points: {math.floor(scorecard.base_points)}** "
        f"(exact {scorecard.base_points:.4f})", "",
    ]
    for name in scorecard.feature_names:
        direction = {1: "raises the score", -1: "lowers the score"}.get(
            scorecard.directions.get(name, 0), "either way")
        lines += [f"## {name} ({direction})", "", "| bin | points | exact |", "|---|---:|---:|"]
        for row in rows.filter(pl.col("feature") == name).iter_rows(named=True):
            lines.append(f"| {row['bin']} | {row['points_whole']:+d} | {row['points']:+.4f} |")
        lines.append("")
    return "\n".join(lines)


def export_scorecard(scorecard: Scorecard, directory: str | Path) -> tuple[Path, Path]:
    """Write scorecard.csv and scorecard.md into `directory`; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = scorecard_rows(scorecard)
    csv_path, md_path = directory / "scorecard.csv", directory / "scorecard.md"
    rows.write_csv(csv_path)
    md_path.write_text(_markdown(scorecard, rows) + "\n")
    return csv_path, md_path
