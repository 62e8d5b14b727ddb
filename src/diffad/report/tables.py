"""The experiment table: ours beside the published numbers, row by row.

One row per (method, dataset, category) and a ``mean`` row per (method,
dataset). Quality metrics are shown in percent with one decimal, as the
papers print them. Where ``config/reference/*.csv`` lists a published value
for a row and metric, the table gets a ``<metric> paper`` column and a
``<metric> Δ`` column (ours minus paper). Pixel metrics of a dataset
without masks are "n/a": unavailable, not zero.

Reference CSV columns: ``method, dataset, category, metric, value, source``;
``value`` in percent, ``category`` may be ``mean`` for the paper's own
average row, and ``source`` names the table it was transcribed from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from diffad.errors import ConfigError
from diffad.io import atomic_path

#: Quality metrics in [0, 1], shown in percent.
QUALITY = ("i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max")
#: Cost columns, shown as they are.
COST = ("latency_ms", "nfe", "params", "train_s")
KEYS = ("method", "dataset", "category")
REFERENCE_COLUMNS = ("method", "dataset", "category", "metric", "value", "source")
MEAN = "mean"


def read_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate one-row metrics Parquet files."""
    frames = [pd.read_parquet(p) for p in paths]
    if not frames:
        raise ConfigError("no metrics to tabulate: the experiment has no (method, dataset, "
                          "category) left after the `categories` filter")
    return pd.concat(frames, ignore_index=True)


def read_reference(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Published numbers from reference CSVs, checked for their columns and metric names."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path, comment="#", dtype={"category": str})
        missing = set(REFERENCE_COLUMNS) - set(frame.columns)
        if missing:
            raise ConfigError(f"{path}: missing column(s) {sorted(missing)}; "
                              f"expected {list(REFERENCE_COLUMNS)}")
        unknown = set(frame["metric"]) - set(QUALITY)
        if unknown:
            raise ConfigError(f"{path}: unknown metric(s) {sorted(unknown)}; "
                              f"known: {list(QUALITY)}")
        frames.append(frame[list(REFERENCE_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(REFERENCE_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def best_of(metrics: pd.DataFrame, groups: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Rows named after each group: per (dataset, category), its variant with the best I-AUROC.

    This is how papers report a hyperparameter "tuned per category" (e.g. paper
    001's Ours*, S in {2, 3, 4, 5}); the choice is made on the test split, as there.
    """
    rows = []
    for name, variants in groups.items():
        members = metrics[metrics["method"].isin(variants)]
        for _, group in members.groupby(["dataset", "category"], sort=False):
            best = group.loc[group["i_auroc"].idxmax()].copy()
            best["method"] = name
            rows.append(best)
    return pd.DataFrame(rows, columns=metrics.columns)


def build_table(
    metrics: pd.DataFrame, reference: pd.DataFrame, reference_names: Mapping[str, str],
    best: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Ours (percent) with mean rows, and the paper's value and the difference where known.

    ``reference_names`` maps each method variant to its name in the reference
    CSVs (the config's ``reference`` key, by default the variant name);
    ``best`` adds :func:`best_of` rows.
    """
    if best:
        metrics = pd.concat([metrics, best_of(metrics, best)], ignore_index=True)
    ours = metrics.copy()
    ours[list(QUALITY)] = ours[list(QUALITY)] * 100.0
    rows = []
    for (method, dataset), group in ours.groupby(["method", "dataset"], sort=False):
        group = group.sort_values("category")
        mean = group[list(QUALITY) + list(COST)].mean(numeric_only=True, skipna=False)
        rows.append(group)
        rows.append(pd.DataFrame([{"method": method, "dataset": dataset, "category": MEAN,
                                   **mean.to_dict()}]))
    table = pd.concat(rows, ignore_index=True)[list(KEYS) + list(QUALITY) + list(COST)]

    ref = _reference_lookup(table, reference, reference_names)
    for metric in QUALITY:
        if ref[metric].notna().any():
            position = table.columns.get_loc(metric) + 1
            table.insert(position, f"{metric} paper", ref[metric])
            table.insert(position + 1, f"{metric} Δ", table[metric] - ref[metric])
    return table


def _reference_lookup(
    table: pd.DataFrame, reference: pd.DataFrame, reference_names: Mapping[str, str]
) -> pd.DataFrame:
    """The published value of every (row, metric), NaN where the paper has none."""
    published = {
        (r.method, r.dataset, str(r.category), r.metric): float(r.value)
        for r in reference.itertuples()
    }
    out = pd.DataFrame(index=table.index, columns=list(QUALITY), dtype=float)
    for i, row in table.iterrows():
        name = reference_names.get(row["method"], row["method"])
        for metric in QUALITY:
            value = published.get((name, row["dataset"], row["category"], metric))
            if value is None and row["category"] == MEAN:
                value = _mean_of_categories(table, published, name, row, metric)
            out.loc[i, metric] = np.nan if value is None else value
    return out


def _mean_of_categories(table, published, name, row, metric) -> float | None:
    """The paper's average over our categories, when it lists every one of them."""
    mask = ((table["method"] == row["method"]) & (table["dataset"] == row["dataset"])
            & (table["category"] != MEAN))
    values = [published.get((name, row["dataset"], c, metric)) for c in table.loc[mask, "category"]]
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Strings as printed: one decimal for percent, 'n/a' for unavailable metrics."""
    out = table.copy().astype(object)
    for column in table.columns:
        if column in KEYS:
            continue
        values = table[column]
        if column.endswith(" Δ"):
            out[column] = [_fmt(v, "{:+.1f}", "") for v in values]
        elif column.endswith(" paper"):
            out[column] = [_fmt(v, "{:.1f}", "") for v in values]
        elif column in QUALITY:
            out[column] = [_fmt(v, "{:.1f}", "n/a") for v in values]
        elif column == "params":
            out[column] = [_fmt(v / 1e6, "{:.2f}M", "") for v in values]
        elif column == "nfe":
            out[column] = [_fmt(v, "{:.0f}", "") for v in values]
        else:
            out[column] = [_fmt(v, "{:.1f}", "") for v in values]
    return out


def _fmt(value: float, pattern: str, missing: str) -> str:
    return missing if value is None or pd.isna(value) else pattern.format(value)


def grid_views(
    table: pd.DataFrame, grids: Mapping[str, Mapping[str, Mapping[str, object]]],
    metric: str = "i_auroc",
) -> str:
    """Each method grid as the papers lay it out: the dataset mean of ``metric``, one
    column per value of the first varied parameter and one row per value of the
    second (a single row for one-parameter grids). Cells: ours (paper, Δ); "–" marks
    points the method leaves out.
    """
    means = table[table["category"] == MEAN]
    sections = []
    for grid, points in grids.items():
        if not points:
            continue
        keys = list(next(iter(points.values())))
        for dataset in means["dataset"].unique():
            rows = means[means["dataset"] == dataset].set_index("method")
            cells: dict[tuple, str] = {}
            for name, point in points.items():
                if name not in rows.index:
                    continue
                ours, paper = rows.loc[name, metric], rows.get(f"{metric} paper")
                paper = None if paper is None else paper.get(name)
                text = _fmt(ours, "{:.1f}", "n/a")
                if paper is not None and not pd.isna(paper):
                    text += f" ({paper:.1f}, {ours - paper:+.1f})"
                cells[tuple(point[k] for k in keys)] = text
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
            sections.append(f"## {grid} on {dataset}: mean {metric} (%), ours (paper, Δ)\n\n"
                            + view.to_markdown(disable_numparse=True) + "\n")
    return "\n".join(sections)


def write_tables(table: pd.DataFrame, md: str, csv: str, tex: str, title: str,
                 grids: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None) -> None:
    """Markdown and LaTeX formatted for papers; CSV with full precision for analysis.

    With ``grids``, the Markdown also shows each method grid in the paper's layout.
    """
    shown = format_table(table)
    with atomic_path(md) as tmp:
        # disable_numparse: tabulate would re-parse "97.0" and print "97".
        markdown = shown.to_markdown(index=False, disable_numparse=True)
        views = grid_views(table, grids) if grids else ""
        tmp.write_text(f"# {title}\n\nMetrics in %; Δ = ours − paper; n/a = unavailable "
                       f"(no ground-truth masks).\n\n{markdown}\n"
                       + (f"\n{views}" if views else ""))
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(tex) as tmp:
        tmp.write_text(_latex(shown, title))


def _latex(shown: pd.DataFrame, title: str) -> str:
    escaped = shown.rename(columns=lambda c: c.replace("_", r"\_").replace("Δ", r"$\Delta$"))
    escaped = escaped.map(lambda v: str(v).replace("_", r"\_"))
    body = escaped.to_latex(index=False, escape=False, column_format="lll" + "r" * (
        len(shown.columns) - 3))
    return f"% {title}: metrics in %, Δ = ours - paper\n" + body



__all__: Sequence[str] = ["build_table", "format_table", "read_metrics", "read_reference",
                          "write_tables"]
