"""Figures for ``snakemake --report``: metric dot plots and example heatmaps."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # jobs run without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from diffad.data import load_image, load_mask  # noqa: E402
from diffad.io import atomic_path  # noqa: E402
from diffad.methods.base import Scored  # noqa: E402
from diffad.report.columns import HEADERS  # noqa: E402

CHART_METRICS = ("i_auroc", "p_auroc", "aupro")
#: The strengths of the reconstruction figure (paper 000's Figure 4.1; its range 0.1-0.7).
STRENGTHS = (0.1, 0.2, 0.35, 0.5, 0.7)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")


def plot_metrics(
    metrics: pd.DataFrame, path: str | os.PathLike, variants: Sequence[str] | None = None,
    shown: Sequence[str] = CHART_METRICS,
) -> None:
    """Write :func:`metrics_figure` to ``path`` (PNG)."""
    _save(metrics_figure(metrics, variants, shown), path)


def metrics_figure(
    metrics: pd.DataFrame, variants: Sequence[str] | None = None,
    shown: Sequence[str] = CHART_METRICS,
) -> plt.Figure:
    """Dot plot per category: one marker per method variant, a row per (dataset, metric),
    and the variants' means at the right of each panel.

    The y-axis runs from just below the lowest value shown to 100, so that
    differences of a point are visible; the legend sits outside the axes.
    ``variants`` limits the chart to those variants (e.g. the ones named under
    ``methods:``, not every point of a method grid); None or no match: all.
    n/a values (NaN) are left out.
    """
    picked = metrics[metrics["method"].isin(variants)] if variants else metrics
    metrics = picked if len(picked) else metrics
    datasets = list(dict.fromkeys(metrics["dataset"]))
    methods = list(dict.fromkeys(metrics["method"]))
    colors = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    slots = max(metrics.groupby("dataset")["category"].nunique()) + 1
    slot = 0.25 + 0.04 * len(methods)  # inches per category
    fig = plt.figure(layout="constrained", figsize=(max(6.0, 2.5 + slots * slot),
                                                    0.6 + 2.0 * len(shown) * len(datasets)))
    # Datasets stacked (a row per metric each) keep the figure readable in width.
    panels = fig.subfigures(len(datasets), 1, squeeze=False)[:, 0]
    half = min(0.3, 0.1 * (len(methods) - 1))  # variants side by side within a category
    dodge = np.linspace(-half, half, len(methods))
    for panel, dataset in zip(panels, datasets, strict=True):
        subset = metrics[metrics["dataset"] == dataset]
        categories = sorted(subset["category"].unique())
        x = np.arange(len(categories) + 1)
        axes = panel.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
        panel.suptitle(dataset)
        for ax, metric in zip(axes, shown, strict=True):
            values = subset.pivot_table(index="category", columns="method", values=metric,
                                        aggfunc="first", dropna=False).reindex(categories) * 100
            values.loc["mean"] = values.mean(skipna=False)
            for m, method in enumerate(methods):
                if method in values.columns:
                    ax.plot(x + dodge[m], values[method].to_numpy(), linestyle="none",
                            marker=MARKERS[m % len(MARKERS)], color=colors[m % len(colors)],
                            markersize=5, label=method)
            low = _lower_limit(values.to_numpy())
            ax.set_ylim(low, 100.5)
            for i in np.flatnonzero(values.isna().all(axis=1).to_numpy()):
                ax.text(x[i], low + 0.05 * (100.5 - low), "n/a", ha="center", fontsize=7,
                        color="0.4")
            ax.axvline(len(categories) - 0.5, color="0.6", linewidth=0.8)
            ax.grid(axis="y", color="0.9")
            ax.set_axisbelow(True)
            ax.set_ylabel(f"{HEADERS[metric]} (%)", fontsize=9)
        axes[-1].set_xticks(x, categories + ["mean"], rotation=40, ha="right", fontsize=8)
        axes[-1].set_xlim(-0.6, len(categories) + 0.6)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False,
               ncol=1 if len(methods) <= 16 else 2, title="variant")
    return fig


def _lower_limit(values: np.ndarray) -> float:
    """Just below the lowest finite value, on a multiple of 5 (0 if nothing is finite)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0
    return float(max(0.0, np.floor((finite.min() - 1.0) / 5.0) * 5.0))


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


def strength_figure(images: np.ndarray, labels: Sequence[str],
                    reconstructions: dict[float, np.ndarray], title: str) -> plt.Figure:
    """A row per image (input, then its reconstruction at each strength, with the SSIM of
    each to the input): paper 000's Figure 4.1, where low strengths keep the defect and high
    ones replace the texture. ``images``: (N, H, W, 3) in [0, 1]; ``reconstructions``:
    strength -> the same shape."""
    from skimage.metrics import structural_similarity

    strengths = sorted(reconstructions)
    fig, axes = plt.subplots(len(images), 1 + len(strengths), squeeze=False,
                             figsize=(1.9 * (1 + len(strengths)), 2.1 * len(images)),
                             layout="constrained")
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title(f"input ({label})", fontsize=9)
        for j, strength in enumerate(strengths, start=1):
            recon = reconstructions[strength][i]
            ssim = structural_similarity(image, recon, channel_axis=2, data_range=1.0)
            axes[i, j].imshow(np.clip(recon, 0, 1))
            axes[i, j].set_title(f"strength {strength:g}\nSSIM {ssim:.2f}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return fig


def plot_strengths(images: np.ndarray, labels: Sequence[str],
                   reconstructions: dict[float, np.ndarray], title: str,
                   path: str | os.PathLike) -> None:
    """Write :func:`strength_figure` to ``path`` (PNG)."""
    _save(strength_figure(images, labels, reconstructions, title), path)
