"""Figures for ``snakemake --report``: metric bar charts and example heatmaps."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # jobs run without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from diffad.data import load_image, load_mask  # noqa: E402
from diffad.io import atomic_path  # noqa: E402
from diffad.methods.base import Scored  # noqa: E402

CHART_METRICS = ("i_auroc", "p_auroc", "aupro")


def plot_metrics(metrics: pd.DataFrame, path: str | os.PathLike) -> None:
    """Grouped bars per category (one bar per method), a row per metric, a column per dataset."""
    datasets = list(dict.fromkeys(metrics["dataset"]))
    methods = list(dict.fromkeys(metrics["method"]))
    fig, axes = plt.subplots(len(CHART_METRICS), len(datasets), squeeze=False,
                             figsize=(max(5, 1.2 * metrics["category"].nunique()) * len(datasets),
                                      2.6 * len(CHART_METRICS)))
    width = 0.8 / len(methods)
    for col, dataset in enumerate(datasets):
        subset = metrics[metrics["dataset"] == dataset]
        categories = sorted(subset["category"].unique())
        x = np.arange(len(categories))
        for row, metric in enumerate(CHART_METRICS):
            ax = axes[row, col]
            for m, method in enumerate(methods):
                values = (subset[subset["method"] == method].set_index("category")[metric]
                          .reindex(categories) * 100)
                ax.bar(x + m * width - 0.4 + width / 2, values.fillna(0), width, label=method)
            ax.set_xticks(x, categories, rotation=30, ha="right", fontsize=8)
            ax.set_ylim(0, 100)
            ax.set_ylabel(f"{metric} (%)")
            if row == 0:
                ax.set_title(dataset)
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    _save(fig, path)


def plot_heatmaps(
    table: pd.DataFrame, scored: Scored, image_size: int, path: str | os.PathLike, title: str,
    per_defect: int = 1, normal: int = 1,
) -> None:
    """Input, ground truth and anomaly map for one image per defect type plus a normal one.

    ``table`` holds the test rows (image path, defect type, mask path) and
    ``scored`` the variant's scores and maps after its score tier. Maps share
    one colour scale across the panel, with a colour bar and the range in the
    title, so a bright normal image means a false alarm, as it would for a
    threshold (score scales differ from method to method).
    """
    picks = [g.index[:per_defect] for _, g in table[table["label"] == 1].groupby("defect_type")]
    picks.append(table.index[table["label"] == 0][:normal])
    rows = [i for group in picks for i in group]
    maps = scored.maps
    vmin, vmax = float(np.min(maps[rows])), float(np.max(maps[rows]))
    fig, axes = plt.subplots(len(rows), 3, figsize=(8.2, 2.5 * len(rows)), squeeze=False)
    shown = None
    for r, i in enumerate(rows):
        item = table.loc[i]
        image = load_image(item["image_path"], image_size)
        mask = (load_mask(item["mask_path"], image_size) if isinstance(item["mask_path"], str)
                else np.zeros((image_size, image_size), bool))
        axes[r, 0].imshow(image)
        axes[r, 0].set_title(f"{item['defect_type']} (score {scored.scores[i]:.3g})", fontsize=8)
        axes[r, 1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[r, 1].set_title("ground truth", fontsize=8)
        axes[r, 2].imshow(image)
        shown = axes[r, 2].imshow(np.asarray(maps[i], np.float32), cmap="jet", alpha=0.5,
                                  vmin=vmin, vmax=vmax)
        axes[r, 2].set_title("anomaly map", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle(f"{title}\nmap range {vmin:.3g} to {vmax:.3g} (shared colour scale)",
                 fontsize=9)
    fig.tight_layout()
    if shown is not None:
        fig.colorbar(shown, ax=axes[:, 2].tolist(), fraction=0.05, pad=0.02,
                     label="anomaly score")
    _save(fig, path)


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
