"""The Markdown view: the quality table, the cost table, then the method grids.

Markdown has one header row, so the columns under a metric are named
``I-AUROC`` (ours), ``I-AUROC ours (<protocol>)``, ``I-AUROC paper`` and
``I-AUROC Δ``; mean rows are set apart in bold.
"""

from __future__ import annotations

import pandas as pd

from diffad.report.columns import HEADERS
from diffad.report.grids import Grids, grid_views
from diffad.report.layout import Column, Layout


def markdown_page(layout: Layout, grids: Grids | None = None) -> str:
    parts = [f"# {layout.title}", layout.caption, quality_markdown(layout),
             "## Cost", layout.cost.caption, cost_markdown(layout)]
    for heading, view in grid_views(layout.table, grids) if grids else []:
        parts += [f"## {heading}", view.to_markdown(disable_numparse=True)]
    return "\n\n".join(parts) + "\n"


def _header(column: Column) -> str:
    name = HEADERS[column.metric]
    return name if column.kind == "ours" else f"{name} {column.header}"


def quality_markdown(layout: Layout) -> str:
    records = []
    for group in layout.groups:
        for row in group.rows:
            label = f"**{row.title}**" if row.mean else row.title
            records.append([group.method, group.dataset, label]
                           + [cell.text for cell in row.cells])
    headers = ["method", "dataset", "category"] + [_header(c) for c in layout.columns]
    frame = pd.DataFrame(records, columns=headers)
    # disable_numparse: tabulate would re-parse "97.0" and print "97".
    return frame.to_markdown(index=False, disable_numparse=True,
                             colalign=["left"] * 3 + ["right"] * len(layout.columns))


def cost_markdown(layout: Layout) -> str:
    cost = layout.cost
    headers = ["method", "dataset"] + [f"{name} ({unit})" if unit else name
                                       for name, unit in cost.headers]
    records = [[method, dataset, *cells] for dataset, rows in cost.groups
               for method, cells in rows]
    return pd.DataFrame(records, columns=headers).to_markdown(
        index=False, disable_numparse=True, colalign=["left"] * 2 + ["right"] * 4)
