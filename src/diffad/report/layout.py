"""What the Markdown, LaTeX and HTML views show, decided once for all three.

From the table of :func:`diffad.report.tables.build_table`:

1. The shown quality metrics and, under each, the columns that have
   something to show: ``ours`` always, ``ours (<protocol>)`` where a
   variant names a paper code's protocol, ``paper`` and ``Δ`` where a
   published value exists.
2. The rows, grouped per (method, dataset): the categories, then the mean
   row (marked partial where it covers fewer than the dataset's categories).
3. The cells as printed: one decimal in percent, ``n/a`` where a metric
   cannot be defined (the reason kept for a footnote or tooltip), ``–``
   where there is nothing to compare.
4. The caption, saying only what applies to this table.
5. The cost table: one row per (method, dataset) from the mean rows.

Text here is plain Unicode (Δ, −, –); each writer escapes it for its format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from diffad.report.columns import (
    DELTA,
    HEADERS,
    MEAN,
    OPTIONAL_QUALITY,
    PAPER,
    PROTOCOL,
    SPREAD,
    UNIFIED,
    is_partial_mean,
    quality_columns,
)

NA, NONE = "n/a", "–"


@dataclass(frozen=True)
class Column:
    """One printed column: a quality metric and what of it (ours, protocol, paper, Δ)."""

    metric: str
    kind: str
    source: str
    header: str


@dataclass(frozen=True)
class Cell:
    """A printed value; ``note`` is why it is n/a (empty otherwise)."""

    text: str
    note: str = ""


@dataclass
class Row:
    """A category row, or a mean row; ``partial`` = (categories, of the dataset's) if fewer."""

    label: str
    cells: list[Cell]
    mean: bool = False
    partial: tuple[int, int] | None = None

    @property
    def title(self) -> str:
        """The label with the coverage of a partial mean spelled out."""
        if not self.partial:
            return self.label
        return f"{self.label} (partial: {self.partial[0]} of {self.partial[1]} categories)"


@dataclass
class Group:
    method: str
    dataset: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class CostTable:
    headers: list[tuple[str, str]]
    groups: list[tuple[str, list[tuple[str, list[str]]]]]
    caption: str


@dataclass
class Layout:
    title: str
    metrics: tuple[str, ...]
    columns: list[Column]
    groups: list[Group]
    notes: list[str]
    cost: CostTable
    table: pd.DataFrame
    protocols: dict[str, str]

    @classmethod
    def of(cls, table: pd.DataFrame, title: str,
           columns: Sequence[str] | None = None) -> Layout:
        metrics = quality_columns(columns, table)
        protocols = _protocols(table)
        shown = _columns(table, metrics, protocols)
        notes: list[str] = []
        groups = []
        for (method, dataset), rows in table.groupby(["method", "dataset"], sort=False):
            group = Group(method, dataset)
            for _, row in rows.iterrows():
                cells = [_cell(row, c) for c in shown]
                for cell in cells:
                    if cell.note and cell.note not in notes:
                        notes.append(cell.note)
                group.rows.append(_row(row, cells))
            groups.append(group)
        return cls(title, metrics, shown, groups, notes, _cost(table), table, protocols)

    @property
    def caption(self) -> str:
        return self.caption_with(self.protocol_header)

    @property
    def protocol_header(self) -> str:
        """The header of the paper-protocol column: ``ours (<protocol>)``."""
        return _protocol_header(self.protocols)

    def caption_with(self, protocol_header: str) -> str:
        """The caption, naming the paper-protocol column ``protocol_header``."""
        return _caption(self.table, self.metrics, self.columns, self.protocols, self.groups,
                        self.notes, protocol_header)

    @property
    def grouped_header(self) -> bool:
        """Whether any metric has more than the one column ``ours``."""
        return len(self.columns) > len(self.metrics)

    def subcolumns(self, metric: str) -> list[Column]:
        return [c for c in self.columns if c.metric == metric]


def _protocols(table: pd.DataFrame) -> dict[str, str]:
    """Each method whose rows are also scored under a paper code's protocol -> its name."""
    rows = table[(table["category"] != MEAN) & (table["protocol"] != UNIFIED)]
    return dict(zip(rows["method"], rows["protocol"], strict=True))


def _columns(table: pd.DataFrame, metrics: Sequence[str],
             protocols: dict[str, str]) -> list[Column]:
    protocol_header = _protocol_header(protocols)
    out = []
    for metric in metrics:
        out.append(Column(metric, "ours", metric, "ours"))
        for kind, suffix, header in (("protocol", PROTOCOL, protocol_header),
                                     ("paper", PAPER, "paper"), ("delta", DELTA, "Δ")):
            source = f"{metric}{suffix}"
            if source in table.columns and table[source].notna().any():
                out.append(Column(metric, kind, source, header))
    return out


def _protocol_header(protocols: dict[str, str]) -> str:
    names = sorted(set(protocols.values()))
    return f"ours ({names[0]})" if len(names) == 1 else "ours (paper code)"


def _cell(row: pd.Series, column: Column) -> Cell:
    value = row[column.source]
    if not pd.isna(value):
        if column.kind == "delta":
            return Cell(f"{value:+.1f}")
        spread = row.get(f"{column.source}{SPREAD}")
        if spread is not None and not pd.isna(spread):
            return Cell(f"{value:.1f} ± {spread:.1f}")
        return Cell(f"{value:.1f}")
    # Ours is n/a only where it cannot be defined; the rest has nothing to compare, and an
    # optional statistic (SSIM) belongs to the kinds that reconstruct.
    undefined = (column.kind == "ours" and column.source not in OPTIONAL_QUALITY) or (
        column.kind == "protocol" and row["protocol"] != UNIFIED)
    if not undefined:
        return Cell(NONE)
    return Cell(NA, _reason(row["note"]) or "not computed")


def _reason(note: str) -> str:
    """"pixel metrics n/a: no masks" -> "pixel metrics: no masks" (the cell says n/a)."""
    return "; ".join(part.replace(" n/a:", ":") for part in str(note or "").split("; ")
                     if part)


def _row(row: pd.Series, cells: list[Cell]) -> Row:
    if row["category"] != MEAN:
        return Row(str(row["category"]), cells)
    partial = ((int(row["n_categories"]), int(row["total_categories"]))
               if is_partial_mean(row) else None)
    return Row(MEAN, cells, mean=True, partial=partial)


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _caption(table: pd.DataFrame, metrics: Sequence[str], shown: list[Column],
             protocols: dict[str, str], groups: list[Group], notes: list[str],
             protocol_header: str) -> str:
    kinds = {c.kind for c in shown}
    detection = [HEADERS[m] for m in metrics if m not in OPTIONAL_QUALITY]
    sentences = ([f"{_join(detection)} (%) per category and their mean over the categories"]
                 if detection else [])
    fidelity = {"ssim": "SSIM: their structural similarity",
                "mse": "MSE: their squared error on [0, 1] pixels",
                "clip": "CLIP dist.: 1 − the cosine of their CLIP embeddings"}
    shown_fidelity = [text for name, text in fidelity.items() if name in metrics]
    if shown_fidelity:
        sentences.append("For the methods that reconstruct, means over the test images and "
                         "their reconstructions (× 100): " + "; ".join(shown_fidelity))
    if "protocol" in kinds:
        names = sorted(set(protocols.values()))
        which = (f" ({', '.join(f'{m}: {p}' for m, p in protocols.items())})" if len(names) > 1
                 else "" if names[0] in protocol_header else f" ({names[0]})")
        sentences.append(f"ours: the unified evaluation protocol; {protocol_header}: the same "
                         f"scores under the evaluation protocol of the paper's code{which}")
    if "n_seeds" in table.columns and table["n_seeds"].notna().any():
        runs = [str(n) for n in sorted({int(n) for n in table["n_seeds"].dropna()})]
        sentences.append(f"a ± b: mean and standard deviation over {_join(runs)} runs "
                         "differing only in the seed")
    if "paper" in kinds:
        sentences.append("paper: the published value; Δ = ours − paper")
    partial = _partial_datasets(table)
    if partial:
        sentences.append("Partial: " + "; ".join(partial))
    if notes:
        sentences.append("n/a: cannot be defined (" + "; ".join(notes) + ")")
    compared = [i for i, c in enumerate(shown) if c.source not in OPTIONAL_QUALITY]
    if any(r.cells[i].text == NONE for g in groups for r in g.rows for i in compared):
        sentences.append("–: nothing to compare (no published value or no paper protocol)")
    return ". ".join(sentences) + "."


def _partial_datasets(table: pd.DataFrame) -> list[str]:
    means = table[table["category"] == MEAN]
    out = {}
    for _, row in means.iterrows():
        if is_partial_mean(row):
            out[row["dataset"]] = (f"{row['dataset']}, {row['n_categories']} of "
                                   f"{row['total_categories']} categories")
    return list(out.values())


def _cost(table: pd.DataFrame) -> CostTable:
    means = table[table["category"] == MEAN]
    seconds = means["train_s"].max()
    unit, scale = (("s", 1.0) if pd.isna(seconds) or seconds < 600
                   else ("min", 60.0) if seconds < 36_000 else ("h", 3600.0))
    headers = [("Latency", "ms"), ("NFE", ""), ("Params", "M"), ("Training", unit)]
    groups: dict[str, list[tuple[str, list[str]]]] = {}
    for _, row in means.iterrows():
        cells = [_number(row["latency_ms"], "{:.1f}"), _number(row["nfe"], "{:d}"),
                 _number(row["params"] / 1e6 if not pd.isna(row["params"]) else None,
                         "{:.2f}"),
                 _number(row["train_s"] / scale, "{:.1f}")]
        groups.setdefault(row["dataset"], []).append((row["method"], cells))
    caption = ("Cost, mean over each dataset's categories: latency per test image (ms), "
               "network evaluations per image (NFE), parameters (millions) and training time "
               f"({unit}) of the model that scores a category")
    return CostTable(headers, list(groups.items()), caption + ".")


def _number(value: object, pattern: str) -> str:
    if value is None or pd.isna(value):
        return NONE
    return pattern.format(int(value) if pattern == "{:d}" else float(value))
