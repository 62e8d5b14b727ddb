"""The columns of the experiment table: names in the data, headers as papers print them.

The table (:func:`diffad.report.tables.build_table`, also its CSV) keeps the
metric names of the metrics rows (``i_auroc``) and adds, per quality
metric, ``<metric> protocol`` (ours under the paper code's evaluation
protocol), ``<metric> paper`` (the published value), ``<metric> Δ``
(ours minus paper) and, for rows over seeds, ``<metric> sd`` (their
standard deviation). The Markdown, LaTeX and HTML views print the headers
below instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from diffad.errors import ConfigError
from diffad.methods.base import STATISTICS

#: Shown by default beside the metrics where some row has a value: the statistics a score
#: tier may report (SSIM, MSE and CLIP distance of input and reconstruction, paper 000).
OPTIONAL_QUALITY = STATISTICS
#: Quality metrics in [0, 1] in the metrics rows, in percent in the table.
QUALITY = ("i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max",
           *OPTIONAL_QUALITY)
#: The three every paper prints: the default of the Markdown, LaTeX and HTML views.
DEFAULT_QUALITY = ("i_auroc", "p_auroc", "aupro")
#: Cost columns: latency per image, network evaluations, parameters, training seconds.
COST = ("latency_ms", "nfe", "params", "train_s")
#: Counts: integers in every output (the CSV never writes them as floats).
INTEGER = ("nfe", "params", "n_test", "n_anomalous", "n_categories", "total_categories",
           "n_seeds")
KEYS = ("method", "dataset", "category")
MEAN = "mean"

#: Suffixes of the columns beside each quality metric, in the order they are shown.
PROTOCOL, PAPER, DELTA = " protocol", " paper", " Δ"
#: Suffix of a quality metric's standard deviation over seeds (``seeds:`` groups).
SPREAD = " sd"
#: The unified protocol (ours); any other names the paper code's protocol.
UNIFIED = "unified"

HEADERS = {
    "i_auroc": "I-AUROC",
    "p_auroc": "P-AUROC",
    "aupro": "AUPRO",
    "i_ap": "I-AP",
    "p_ap": "P-AP",
    "i_f1max": "I-F1max",
    "p_f1max": "P-F1max",
    "ssim": "SSIM",
    "mse": "MSE",
    "clip": "CLIP dist.",
}


def quality_columns(columns: Sequence[str] | None,
                    table: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The quality metrics a view shows, checked by name; None: the default three, and the
    optional ones some row of ``table`` has."""
    if columns is None:
        extra = tuple(c for c in OPTIONAL_QUALITY
                      if table is not None and c in table and table[c].notna().any())
        return DEFAULT_QUALITY + extra
    unknown = [c for c in columns if c not in QUALITY]
    if unknown or not columns:
        raise ConfigError(f"table columns {list(columns)}: unknown {unknown}; choose one or "
                          f"more of {list(QUALITY)}")
    return tuple(columns)


def is_partial_mean(row: Mapping[str, object]) -> bool:
    """Whether a mean row covers fewer than its dataset's categories."""
    n, total = row.get("n_categories"), row.get("total_categories")
    return (row.get("category") == MEAN and not pd.isna(total) and not pd.isna(n)
            and n < total)
