"""The experiment table: ours beside the published numbers, row by row.

1. One row per (method, dataset, category) from the metrics rows; quality
   metrics in percent.
2. A ``mean`` row per (method, dataset): the mean of each quality metric
   (n/a if any category is n/a), mean latency and training time, NFE and
   parameters rounded to integers, test images summed, and how many of the
   dataset's categories it covers (``n_categories`` of ``total_categories``).
3. Beside each quality metric (:mod:`.columns`): ``<metric> protocol``
   where a variant names a paper code's evaluation protocol, and, where
   ``config/reference/*.csv`` lists a published value, ``<metric> paper``
   and ``<metric> Δ`` (ours minus paper). The paper's mean is its own mean
   row, else the mean of its values over our categories; a partial table
   never uses the paper's full mean.

Pixel metrics of a dataset without masks are NaN ("n/a", with the reason in
``note``): unavailable, not zero. :func:`write_tables` writes the views:
Markdown and LaTeX for papers, a self-contained HTML page for the report,
and the CSV with every column at full precision for analysis.

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
from diffad.report.columns import (
    COST,
    DELTA,
    INTEGER,
    KEYS,
    MEAN,
    PAPER,
    PROTOCOL,
    QUALITY,
    SPREAD,
    UNIFIED,
    is_partial_mean,
)
from diffad.report.html import html_page
from diffad.report.latex import latex_tables
from diffad.report.layout import Layout
from diffad.report.markdown import markdown_page

REFERENCE_COLUMNS = ("method", "dataset", "category", "metric", "value", "source")
COUNTS = ("n_test", "n_anomalous")


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
            scored = group["i_auroc"].dropna()
            best = group.loc[scored.idxmax() if len(scored) else group.index[0]].copy()
            best["method"] = name
            rows.append(best)
    return pd.DataFrame(rows, columns=metrics.columns)


def over_seeds(table: pd.DataFrame, groups: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """``table`` with each group's variants (repeated runs differing only in ``seed``)
    replaced by rows named after the group: per (dataset, category) and for the mean
    row, each quality metric's mean and its sample standard deviation (``<metric> sd``)
    over the runs. The spread of a mean row is that of the runs' own means."""
    grouped = {v for variants in groups.values() for v in variants}
    quality = [m for q in QUALITY for m in (q, f"{q}{PROTOCOL}")]
    rows, placed = [], set()
    for _, row in table.iterrows():
        group = next((g for g, vs in groups.items() if row["method"] in vs), None)
        if group is None:
            rows.append(row)
            continue
        if (group, row["dataset"], row["category"]) in placed:
            continue
        placed.add((group, row["dataset"], row["category"]))
        runs = table[table["method"].isin(groups[group]) & (table["dataset"] == row["dataset"])
                     & (table["category"] == row["category"])]
        out = row.copy()
        out["method"] = group
        for column in quality:
            out[column] = runs[column].mean(skipna=False)
            out[f"{column}{SPREAD}"] = runs[column].std(ddof=1) if len(runs) > 1 else np.nan
        for column in ("latency_ms", "train_s"):
            out[column] = runs[column].mean()
        out["n_seeds"] = len(runs)
        out["note"] = "; ".join(dict.fromkeys(n for n in runs["note"] if n))
        rows.append(out)
    assert grouped.isdisjoint(r["method"] for r in rows)
    return pd.DataFrame(rows).reset_index(drop=True)


def build_table(
    metrics: pd.DataFrame, reference: pd.DataFrame, reference_names: Mapping[str, str],
    best: Mapping[str, Sequence[str]] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    seeds: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Ours (percent) with mean rows, the paper code's protocol, the paper's value and Δ.

    Args:
        metrics: metrics rows (:func:`diffad.evaluation.evaluate`), quality in [0, 1].
        reference: published values (:func:`read_reference`), in percent.
        reference_names: each method variant's name in the reference CSVs (the
            config's ``reference`` key); a variant not listed uses its own name.
        best: groups of variants that get :func:`best_of` rows.
        categories: each dataset's full category list; mean rows covering
            fewer are partial. None: every mean row counts as complete.
        seeds: groups of repeated runs shown as mean ± sd (:func:`over_seeds`);
            a group compares with the published row of its first variant.
    """
    if best:
        metrics = pd.concat([metrics, best_of(metrics, best)], ignore_index=True)
    ours = _ours(metrics)
    rows = []
    for (method, dataset), group in ours.groupby(["method", "dataset"], sort=False):
        group = group.sort_values("category")
        rows.append(group)
        rows.append(pd.DataFrame([_mean_row(method, dataset, group, categories)]))
    table = pd.concat(rows, ignore_index=True)
    if seeds:
        table = over_seeds(table, seeds)
        reference_names = {**reference_names, **{
            group: reference_names.get(variants[0], variants[0])
            for group, variants in seeds.items()}}

    ref = _reference_lookup(table, reference, reference_names)
    columns = list(KEYS) + ["protocol"]
    for metric in QUALITY:
        for column in (metric, f"{metric}{PROTOCOL}"):
            if column == metric or table[column].notna().any():
                columns.append(column)
            if f"{column}{SPREAD}" in table.columns and table[f"{column}{SPREAD}"].notna().any():
                columns.append(f"{column}{SPREAD}")
        if ref[metric].notna().any():
            table[f"{metric}{PAPER}"] = ref[metric]
            table[f"{metric}{DELTA}"] = table[metric] - ref[metric]
            columns += [f"{metric}{PAPER}", f"{metric}{DELTA}"]
    columns += list(COST) + list(COUNTS) + ["n_categories", "total_categories"]
    columns += ["n_seeds", "note"] if "n_seeds" in table.columns else ["note"]
    table = table[columns].copy()
    for column in INTEGER:
        if column in table.columns:
            table[column] = _integers(table[column])
    return table


def _ours(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics rows with every column the table reads (optional ones filled), in percent."""
    ours = metrics.copy()
    defaults: dict[str, object] = {"protocol": UNIFIED, "note": "", **dict.fromkeys(COUNTS)}
    for column, value in defaults.items():
        if column not in ours.columns:
            ours[column] = value
    ours["protocol"] = ours["protocol"].fillna(UNIFIED)
    ours["note"] = ours["note"].fillna("")
    for metric in QUALITY:
        if metric not in ours.columns:  # a statistic no kind of this run reports
            ours[metric] = np.nan
        ours[metric] = ours[metric] * 100.0
        source = f"{metric}_protocol"
        ours[f"{metric}{PROTOCOL}"] = (ours[source] * 100.0 if source in ours.columns
                                       else np.nan)
        # Under the unified protocol there is nothing beside ours to show.
        ours.loc[ours["protocol"] == UNIFIED, f"{metric}{PROTOCOL}"] = np.nan
    for column in COST + COUNTS:
        ours[column] = pd.to_numeric(ours[column], errors="coerce")
    ours["n_categories"] = np.nan
    ours["total_categories"] = np.nan
    return ours


def _mean_row(method: str, dataset: str, group: pd.DataFrame,
              categories: Mapping[str, Sequence[str]] | None) -> dict[str, object]:
    quality = [m for q in QUALITY for m in (q, f"{q}{PROTOCOL}")]
    row: dict[str, object] = {"method": method, "dataset": dataset, "category": MEAN}
    row["protocol"] = "/".join(dict.fromkeys(group["protocol"]))
    # A mean over fewer categories than the others would not compare: n/a if any is.
    row.update(group[quality].mean(skipna=False).to_dict())
    row.update(group[["latency_ms", "train_s"]].mean().to_dict())
    row.update(group[["nfe", "params"]].mean().round().to_dict())
    row.update(group[list(COUNTS)].sum(min_count=len(group)).to_dict())
    row["n_categories"] = group["category"].nunique()
    total = len(categories[dataset]) if categories and dataset in categories else np.nan
    row["total_categories"] = total
    notes = dict.fromkeys(n for n in group["note"] if n)
    if len(notes) == 1 and group["note"].all():
        row["note"] = next(iter(notes))  # the same reason for every category
    elif notes:
        noted = ", ".join(group.loc[group["note"] != "", "category"])
        row["note"] = f"mean n/a: n/a in {noted}"
    else:
        row["note"] = ""
    return row


def _integers(values: pd.Series) -> pd.Series:
    """Counts as nullable integers: written 3, not 3.0, and empty where unknown."""
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


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
            key = (name, row["dataset"], row["category"], metric)
            # The paper's mean covers all its categories; a partial mean compares
            # only with the paper's values over the same categories.
            value = None if is_partial_mean(row) else published.get(key)
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


def write_tables(
    table: pd.DataFrame, md: str, csv: str, tex: str, title: str,
    grids: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
    html: str | None = None, columns: Sequence[str] | None = None,
) -> None:
    """Markdown, LaTeX and HTML as papers print them; CSV with full precision for analysis.

    ``columns`` chooses the quality metrics of the Markdown, LaTeX and HTML
    views (default: I-AUROC, P-AUROC, AUPRO); the CSV has them all. With
    ``grids``, the Markdown and HTML also show each method grid in the
    paper's layout. ``title`` names the table (its LaTeX label is
    ``tab:<title>``).
    """
    layout = Layout.of(table, title, columns)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown_page(layout, grids), encoding="utf-8")
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(tex) as tmp:
        tmp.write_text(latex_tables(layout), encoding="utf-8")
    if html is not None:
        with atomic_path(html) as tmp:
            tmp.write_text(html_page(layout, grids), encoding="utf-8")


__all__: Sequence[str] = ["best_of", "build_table", "over_seeds", "read_metrics", "read_reference",
                          "write_tables"]
