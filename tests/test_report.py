"""The paper-ready views: LaTeX that compiles on a page, the report's HTML table, the
metrics chart, and the names of partial tables."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from diffad.report.coverage import coverage_note, table_name
from diffad.report.figures import metrics_figure
from diffad.report.tables import build_table, read_reference, write_tables

MVTEC = ["bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
         "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper"]
LONG = "latent_inversion_train_norm"
SHOWN = ("i_auroc", "p_auroc", "aupro")


def _metrics(methods=("patchcore", LONG), protocol=None):
    """Every MVTec AD category, with the widest numbers a cell can hold (100.0, -19.9)."""
    rows = []
    for method in methods:
        for i, category in enumerate(MVTEC):
            value = 1.0 if i % 2 else 0.801
            row = {"method": method, "dataset": "mvtec_ad", "category": category,
                   **dict.fromkeys(("i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max",
                                    "p_f1max"), value),
                   "latency_ms": 123.4, "nfe": 1000, "params": 123_456_789, "train_s": 7e4,
                   "n_test": 100, "n_anomalous": 60, "note": "", "protocol": "unified"}
            if protocol and method != "patchcore":
                row["protocol"] = protocol
                row.update({f"{m}_protocol": value for m in SHOWN})
            rows.append(row)
    return pd.DataFrame(rows)


def _reference(methods=("patchcore", LONG)):
    rows = [(m, "mvtec_ad", c, metric, 100.0 if i % 2 == 0 else 99.9, "T")
            for m in methods for i, c in enumerate(MVTEC) for metric in SHOWN]
    return pd.DataFrame(rows, columns=["method", "dataset", "category", "metric", "value",
                                       "source"])


def _write(tmp_path, table, title="exp"):
    paths = {ext: tmp_path / f"{title}.{ext}" for ext in ("md", "csv", "tex", "html")}
    write_tables(table, title=title, **{k: str(v) for k, v in paths.items()})
    return paths


def _latex_engine():
    for engine in ("pdflatex", "lualatex"):
        if shutil.which(engine):
            return engine
    pytest.skip("no LaTeX engine installed (apt-get install texlive-latex-recommended)")


def _compile(tmp_path, tex):
    engine = _latex_engine()
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                   f"\\begin{{document}}\n\\input{{{tex.name}}}\n\\end{{document}}\n")
    result = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    return log


@pytest.mark.parametrize("protocol", [None, "inversionad"], ids=["paper", "paper+protocol"])
def test_latex_compiles_on_an_article_page_without_overfull_boxes(tmp_path, protocol):
    table = build_table(_metrics(protocol=protocol), _reference(), {})
    tex = _write(tmp_path, table)["tex"]
    text = tex.read_text()
    assert "% Requires \\usepackage{booktabs}" in text
    assert text.count("\\begin{table}[t]") == 2  # quality, then cost
    assert "\\label{tab:exp}" in text and "\\label{tab:exp-cost}" in text
    assert "\\multicolumn{3}{c}{I-AUROC}" in text or "\\multicolumn{4}{c}{I-AUROC}" in text
    assert "\\cmidrule(lr){2-" in text and "latent\\_inversion\\_train\\_norm" in text
    lines = text.splitlines()
    means = [i for i, line in enumerate(lines) if line.startswith("mean &")]
    assert len(means) == 2 and all(lines[i - 1] == "\\midrule" for i in means)
    log = _compile(tmp_path, tex)
    assert "Overfull \\hbox" not in log, log[log.index("Overfull"):][:800]


def test_latex_of_a_seed_group_compiles(tmp_path):
    metrics = pd.concat([_metrics(methods=(f"run{i}",))
                         for i in range(2)], ignore_index=True)
    metrics.loc[metrics["method"] == "run1", "i_auroc"] -= 0.02
    table = build_table(metrics, read_reference([]), {}, seeds={"runs": ["run0", "run1"]})
    tex = _write(tmp_path, table)["tex"]
    assert "$\\pm$" in tex.read_text()
    log = _compile(tmp_path, tex)
    assert "Overfull \\hbox" not in log


def test_latex_escapes_and_marks_a_partial_mean(tmp_path):
    table = build_table(_metrics(methods=("a_b&c%",)).iloc[:2], read_reference([]), {},
                        categories={"mvtec_ad": MVTEC})
    tex = _write(tmp_path, table, title="exp.partial-bottle+cable")["tex"]
    text = tex.read_text()
    assert "a\\_b\\&c\\%" in text and "mean (2/15)" in text
    assert "Partial: mvtec\\_ad, 2 of 15 categories" in text
    assert "Overfull \\hbox" not in _compile(tmp_path, tex)


class _Cells(HTMLParser):
    """The text of every th/td cell per table, with its attributes."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[tuple[str, dict, str]]] = []
        self.captions: list[str] = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag in ("th", "td", "figcaption"):
            self._cell = (tag, dict(attrs), [])

    def handle_endtag(self, tag):
        if tag in ("th", "td", "figcaption") and self._cell:
            kind, attrs, text = self._cell
            if kind == "figcaption":
                self.captions.append("".join(text))
            else:
                self.tables[-1].append((kind, attrs, "".join(text)))
            self._cell = None

    def handle_data(self, data):
        if self._cell:
            self._cell[2].append(data)


def test_html_page_shows_the_tables_with_caption_and_reasons(tmp_path):
    metrics = _metrics()
    cable = (metrics["method"] == "patchcore") & (metrics["category"] == "cable")
    metrics.loc[cable, "p_auroc"] = np.nan
    metrics.loc[cable, "note"] = "pixel metrics n/a: the masks mark no anomalous pixel"
    table = build_table(metrics, _reference(), {})
    page = _write(tmp_path, table)["html"].read_text()
    assert "<style>" in page and "<script" not in page and "http" not in page
    parser = _Cells()
    parser.feed(page)
    quality, cost = parser.tables
    texts = [text for _, _, text in quality]
    assert {"I-AUROC", "P-AUROC", "AUPRO", "ours", "paper", "Δ"} <= set(texts)
    assert "patchcore on mvtec_ad" in texts and "100.0" in texts and "−19.9" in texts
    na = [attrs["title"] for _, attrs, text in quality if text.startswith("n/a")]
    assert na == ["pixel metrics: the masks mark no anomalous pixel", "mean: n/a in cable"]
    assert parser.captions[0].startswith("I-AUROC, P-AUROC and AUPRO (%) per category")
    assert "Δ = ours − paper" in parser.captions[0]
    assert "mean" in page and 'class="mean"' in page
    assert {"Latency (ms)", "NFE", "Params (M)", "Training (h)", "123.46", "19.4"} <= {
        text for _, _, text in cost}


def test_metrics_chart_fits_its_axis_to_the_data_and_keeps_the_legend_outside():
    metrics = _metrics(methods=[f"v{i}" for i in range(12)])
    metrics["i_auroc"] = np.linspace(0.9, 1.0, len(metrics))
    figure = metrics_figure(metrics, variants=["v0", "v1", "v2", "nope"])
    axes = figure.axes
    assert len(axes) == 3
    low, high = axes[0].get_ylim()
    assert 85 <= low < 90 and high == pytest.approx(100.5)
    figure.canvas.draw()
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["v0", "v1", "v2"]
    right = max(ax.get_window_extent().x1 for ax in axes)
    assert legend.get_window_extent().x0 >= right


def test_partial_tables_are_named_for_what_they_cover():
    full = {"mvtec_ad": ["bottle", "cable", "tiles"], "visa": ["candle", "pcb1"]}
    assert table_name("exp", None, full) == "exp"
    assert table_name("exp", [], full) == "exp"
    assert table_name("exp", ["bottle", "cable", "tiles", "candle", "pcb1"], full) == "exp"
    assert table_name("exp", ["tiles"], full) == "exp.partial-tiles"
    assert table_name("exp", ["pcb1", "bottle"], full) == "exp.partial-bottle+pcb1"
    many = {"d": [f"category_{i}" for i in range(20)]}
    long_a = table_name("exp", [f"category_{i}" for i in range(8)], many)
    long_b = table_name("exp", [f"category_{i}" for i in range(1, 9)], many)
    assert long_a.startswith("exp.partial-8-categories-") and long_a != long_b
    assert coverage_note(["tiles"], full) == ("mvtec_ad: partial, 1 of 3 categories; "
                                              "visa: partial, 0 of 2 categories")
    assert coverage_note(None, full) == ""
