"""The classic scorecard on paper: every feature's bins and their points, in CSV and Markdown.

Modellers, auditors and citizens can check a score by hand: find the person's bin for each
feature, add the points to the base points, and get the score before clipping. The CSV keeps
every float exactly (shortest round-trip form), so the sum reproduces the score exactly.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from model.scorecard import Scorecard

BASE_ROW = "base_points"


def scorecard_rows(scorecard: Scorecard) -> pl.DataFrame:
    """`points_table()` with the base points as the first row (feature `base_points`)."""
    table = scorecard.points_table()
    base = pl.DataFrame({"feature": [BASE_ROW], "bin": [""], "lower": [None], "upper": [None],
                         "points": [float(scorecard.base_points)]}, schema=table.schema)
    return pl.concat([base, table])


def _markdown(scorecard: Scorecard, rows: pl.DataFrame) -> str:
    scale = scorecard.scale
    lines = [
        "# Scorecard", "",
        f"score = base points + the points of the person's bin of every feature, clipped to "
        f"{scale.min_score:g}–{scale.max_score:g}. Scale: {scale.base_score:g} points at "
        f"{scale.base_odds:g}:1 good:bad odds, {scale.pdo:g} points to double the odds. A bin "
        "(a, b] holds values above a and up to b; `missing` holds missing (or unseen) values. "
        "Points are rounded here; scorecard.csv has them exactly.", "",
        f"**Base points: {scorecard.base_points:.4f}**", "",
    ]
    for name in scorecard.feature_names:
        direction = {1: "raises the score", -1: "lowers the score"}.get(
            scorecard.directions.get(name, 0), "either way")
        lines += [f"## {name} ({direction})", "", "| bin | points |", "|---|---:|"]
        for row in rows.filter(pl.col("feature") == name).iter_rows(named=True):
            lines.append(f"| {row['bin']} | {row['points']:+.4f} |")
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
