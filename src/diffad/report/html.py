"""The HTML view: one self-contained page (inline CSS, no script) for ``snakemake --report``.

The report shows an HTML result in a frame, so the table reads as in the
paper: a two-level header, a header row per (method, dataset), mean rows
set apart, n/a cells with their reason as a tooltip and a numbered note
under the table; then the cost table and the method grids.
"""

from __future__ import annotations

from html import escape

from diffad.report.columns import HEADERS
from diffad.report.grids import Grids, grid_views
from diffad.report.layout import NA, Cell, Column, Layout

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 16px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-variant-numeric: tabular-nums; }
figure { margin: 0 0 8px; }
figcaption { max-width: 60em; color: #444; }
th, td { padding: 2px 9px; }
td { text-align: right; }
thead tr:first-child th { border-top: 2px solid #222; }
thead tr:last-child th { border-bottom: 1px solid #222; }
thead th { text-align: center; }
thead th.metric { border-bottom: 1px solid #999; }
th.row { text-align: left; font-weight: normal; }
tr.group th { text-align: left; font-style: italic; font-weight: 600; padding-top: 8px;
              background: #f4f6f8; }
tr.mean { border-top: 1px solid #222; font-weight: 600; }
tr.mean th.row { font-weight: 600; }
tbody:last-of-type tr:last-child { border-bottom: 2px solid #222; }
td.sub, th.sub { color: #555; }
.start { border-left: 1px solid #ddd; }
td.na { color: #888; cursor: help; }
td.pos { color: #1a7f37; }
td.neg { color: #b42318; }
ol.notes { color: #444; font-size: 13px; margin-top: 2px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
"""


def html_page(layout: Layout, grids: Grids | None = None) -> str:
    title = escape(layout.title)
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{title}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             f"<h1>{title}</h1>", quality_html(layout)]
    if layout.notes:
        parts.append('<ol class="notes">' + "".join(f"<li>n/a: {escape(n)}</li>"
                                                    for n in layout.notes) + "</ol>")
    parts += ["<h2>Cost</h2>", cost_html(layout)]
    for heading, view in grid_views(layout.table, grids) if grids else []:
        parts += [f"<h2>{escape(heading)}</h2>", _grid_html(view)]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def quality_html(layout: Layout) -> str:
    width = len(layout.columns) + 1
    head = ["<thead>"]
    if layout.grouped_header:
        head.append('<tr><th rowspan="2"></th>' + "".join(
            f'<th class="metric start" colspan="{len(layout.subcolumns(m))}">{HEADERS[m]}</th>'
            for m in layout.metrics) + "</tr>")
        head.append("<tr>" + "".join(f'<th class="{_classes(c)}">{escape(c.header)}</th>'
                                     for c in layout.columns) + "</tr>")
    else:
        head.append("<tr><th></th>" + "".join(f"<th>{HEADERS[m]}</th>" for m in layout.metrics)
                    + "</tr>")
    head.append("</thead>")
    body = []
    for group in layout.groups:
        rows = [f'<tr class="group"><th colspan="{width}">{escape(group.method)} on '
                f"{escape(group.dataset)}</th></tr>"]
        for row in group.rows:
            label = escape(row.title)
            cells = "".join(_cell(cell, column, layout.notes)
                            for cell, column in zip(row.cells, layout.columns, strict=True))
            klass = ' class="mean"' if row.mean else ""
            rows.append(f'<tr{klass}><th class="row" scope="row">{label}</th>{cells}</tr>')
        body.append("<tbody>\n" + "\n".join(rows) + "\n</tbody>")
    return "\n".join([f"<figure><figcaption>{escape(layout.caption)}</figcaption>", "<table>",
                      *head, *body, "</table></figure>"])


def _classes(column: Column) -> str:
    """"start" on ours, the first column under each metric; "sub" on the others."""
    return "start" if column.kind == "ours" else "sub"


def _cell(cell: Cell, column: Column, notes: list[str]) -> str:
    classes = [_classes(column)]
    if cell.text == NA:
        mark = notes.index(cell.note) + 1
        return (f'<td class="na {classes[0]}" title="{escape(cell.note)}">n/a<sup>{mark}</sup>'
                "</td>")
    text = cell.text
    if column.kind == "delta" and text[:1] in "+-":
        classes.append("pos" if text[0] == "+" else "neg")
        text = text.replace("-", "−", 1)
    return f'<td class="{" ".join(classes)}">{escape(text)}</td>'


def cost_html(layout: Layout) -> str:
    cost = layout.cost
    width = len(cost.headers) + 1
    head = ("<thead><tr><th></th>" + "".join(
        f"<th>{escape(name)}" + (f" ({escape(unit)})" if unit else "") + "</th>"
        for name, unit in cost.headers) + "</tr></thead>")
    body = []
    for dataset, rows in cost.groups:
        lines = [f'<tr class="group"><th colspan="{width}">{escape(dataset)}</th></tr>']
        lines += [f'<tr><th class="row" scope="row">{escape(method)}</th>'
                  + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
                  for method, cells in rows]
        body.append("<tbody>\n" + "\n".join(lines) + "\n</tbody>")
    return "\n".join([f"<figure><figcaption>{escape(cost.caption)}</figcaption>", "<table>",
                      head, *body, "</table></figure>"])


def _grid_html(view) -> str:
    head = (f"<thead><tr><th>{escape(str(view.index.name))}</th>"
            + "".join(f"<th>{escape(str(c))}</th>" for c in view.columns) + "</tr></thead>")
    rows = [f'<tr><th class="row" scope="row">{escape(str(index))}</th>'
            + "".join(f"<td>{escape(str(v))}</td>" for v in values) + "</tr>"
            for index, values in zip(view.index, view.to_numpy().tolist(), strict=True)]
    return "\n".join(["<table>", head, "<tbody>", *rows, "</tbody>", "</table>"])
