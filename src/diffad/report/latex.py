r"""The LaTeX view: two ``table`` environments (quality, cost) to paste into a paper.

The quality table has a two-level header (``\multicolumn`` per metric over
ours / ours (<protocol>) / paper / Δ, ``\cmidrule`` under each), rows
grouped per (method, dataset) under a header row, and a ``\midrule``
before each mean row. It needs booktabs only (``graphicx`` too for a
table with more than :data:`MAX_COLUMNS` numeric columns, which is scaled to
the line width). At the default columns (I-AUROC, P-AUROC, AUPRO with
ours, paper and Δ) it fits a one-column ``article`` page without an
overfull box, for method names as long as ``latent_inversion_train_norm``.
"""

from __future__ import annotations

import re

from diffad.report.columns import HEADERS
from diffad.report.layout import NONE, Layout

#: Numeric columns that still fit the text width of a one-column article (in \footnotesize).
MAX_COLUMNS = 12
#: The paper-protocol column, short enough for a page: ours*, named in the caption.
PROTOCOL_HEADER, PROTOCOL_MARK = r"ours$^{*}$", "ours*"
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "−": "$-$", "–": "--",
            "±": r"$\pm$"}
_PATTERN = re.compile("|".join(re.escape(k) for k in _SPECIAL))


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters (and Δ, −, –, ±) written as LaTeX."""
    return _PATTERN.sub(lambda m: _SPECIAL[m.group()], str(text))


def _number(text: str) -> str:
    """Signed numbers with a real minus (and a plus of the same width)."""
    if text == NONE:
        return "--"
    if text[:1] in "+-":
        return f"${text[0]}${text[1:]}"
    return escape(text)


def latex_tables(layout: Layout) -> str:
    needs = "booktabs" + (",graphicx" if len(layout.columns) > MAX_COLUMNS else "")
    return "\n".join([
        f"% Tables of {layout.title}, written by diffad (src/diffad/report/latex.py).",
        f"% Requires \\usepackage{{{needs}}} in the preamble.",
        quality_latex(layout), "", cost_latex(layout), ""])


def quality_latex(layout: Layout) -> str:
    n = len(layout.columns)
    wide = n > MAX_COLUMNS
    size, sep = (r"\small", "4pt") if n <= 9 else (r"\footnotesize", "2pt")
    width = n + 1
    caption = escape(layout.caption_with(PROTOCOL_MARK)).replace(escape(PROTOCOL_MARK),
                                                                 PROTOCOL_HEADER)
    lines = [r"\begin{table}[t]", r"\centering", size, rf"\setlength{{\tabcolsep}}{{{sep}}}",
             rf"\caption{{{caption}}}", rf"\label{{tab:{layout.title}}}"]
    if wide:
        lines.append(r"\resizebox{\linewidth}{!}{%")
    lines += [rf"\begin{{tabular}}{{@{{}}l*{{{n}}}{{r}}@{{}}}}", r"\toprule"]
    if layout.grouped_header:
        spans, rules, start = [""], [], 2
        for metric in layout.metrics:
            k = len(layout.subcolumns(metric))
            spans.append(rf"\multicolumn{{{k}}}{{c}}{{{HEADERS[metric]}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + k - 1}}}")
            start += k
        lines += [" & ".join(spans) + r" \\", " ".join(rules)]
        names = ["Category"] + [PROTOCOL_HEADER if c.kind == "protocol" else escape(c.header)
                                for c in layout.columns]
    else:
        names = ["Category"] + [HEADERS[m] for m in layout.metrics]
    lines += [" & ".join(names) + r" \\", r"\midrule"]
    for i, group in enumerate(layout.groups):
        if i:
            lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{width}}}{{@{{}}l}}{{\textit{{{escape(group.method)}}} "
                     rf"on {escape(group.dataset)}}} \\")
        for row in group.rows:
            label = escape(row.label)
            if row.mean:
                lines.append(r"\midrule")
                if row.partial:  # short, for the page; the caption says "Partial"
                    label += f" ({row.partial[0]}/{row.partial[1]})"
            cells = [label] + [_number(cell.text) for cell in row.cells]
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if wide:
        lines.append("}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def cost_latex(layout: Layout) -> str:
    cost = layout.cost
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{escape(cost.caption)}}}", rf"\label{{tab:{layout.title}-cost}}",
             r"\begin{tabular}{@{}lrrrr@{}}", r"\toprule",
             " & ".join(["Method"] + [name for name, _ in cost.headers]) + r" \\",
             " & ".join([""] + [f"({unit})" if unit else "" for _, unit in cost.headers])
             + r" \\", r"\midrule"]
    for i, (dataset, rows) in enumerate(cost.groups):
        if i:
            lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{5}}{{@{{}}l}}{{\textit{{{escape(dataset)}}}}} \\")
        for method, cells in rows:
            lines.append(" & ".join([escape(method)] + [_number(c) for c in cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)
