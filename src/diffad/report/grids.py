"""Method grids as the papers lay them out (e.g. paper 001's Table 4: start x S).

Per grid and dataset: the dataset mean of one metric, one column per value
of the first varied parameter and one row per value of the second (a single
row for one-parameter grids). Cells: ours (paper, Δ); "–" marks points the
method leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from diffad.report.columns import MEAN, PAPER

Grids = Mapping[str, Mapping[str, Mapping[str, object]]]


def grid_views(table: pd.DataFrame, grids: Grids,
               metric: str = "i_auroc") -> list[tuple[str, pd.DataFrame]]:
    """(heading, view) per grid and dataset that has at least one computed point."""
    means = table[table["category"] == MEAN]
    views = []
    for grid, points in grids.items():
        if not points:
            continue
        keys = list(next(iter(points.values())))
        for dataset in means["dataset"].unique():
            rows = means[means["dataset"] == dataset].set_index("method")
            cells = _cells(rows, points, keys, metric)
            if not cells:
                continue
            columns = list(dict.fromkeys(c[0] for c in cells))
            if len(keys) == 1:
                view = pd.DataFrame([[cells.get((c,), "–") for c in columns]],
                                    index=[grid], columns=columns)
            else:
                index = list(dict.fromkeys(c[1] for c in cells))
                view = pd.DataFrame([[cells.get((c, r), "–") for c in columns] for r in index],
                                    index=index, columns=columns)
            view.columns = [f"{keys[0]}={c}" for c in view.columns]
            view.index.name = grid if len(keys) == 1 else f"{grid}: {keys[1]}"
            views.append((f"{grid} on {dataset}: mean {metric} (%), ours (paper, Δ)", view))
    return views


def _cells(rows: pd.DataFrame, points: Mapping[str, Mapping[str, object]], keys: list[str],
           metric: str) -> dict[tuple, str]:
    cells: dict[tuple, str] = {}
    paper = rows.get(f"{metric}{PAPER}")
    for name, point in points.items():
        if name not in rows.index:
            continue
        ours = rows.loc[name, metric]
        published = None if paper is None else paper.get(name)
        text = "n/a" if pd.isna(ours) else f"{ours:.1f}"
        if published is not None and not pd.isna(published):
            text += f" ({published:.1f}, {ours - published:+.1f})"
        cells[tuple(point[k] for k in keys)] = text
    return cells
