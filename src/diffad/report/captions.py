"""Sample captions per category for the report: what the vision-language model wrote.

A reader of a VLMDiff run wants to see the text that conditioned the model
(paper 003's Sec. 4.5 discusses what InternVL2 and BLIP-2 write). One HTML
page per (captioner, dataset): the prompt, then a few captions of each
category's images with their file names, and how long the captioning took.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from diffad.report.html import STYLE


def sample_captions(tables: list[pd.DataFrame], per_category: int = 3) -> pd.DataFrame:
    """The first ``per_category`` rows of each category (tables in category order)."""
    rows = [table.head(per_category) for table in tables if not table.empty]
    if not rows:
        raise ValueError("no captions to show: every caption table is empty")
    return pd.concat(rows, ignore_index=True)


def captions_page(captioner: str, dataset: str, tables: list[pd.DataFrame],
                  per_category: int = 3) -> str:
    """A self-contained HTML page of sample captions (inline CSS, no script)."""
    samples = sample_captions(tables, per_category)
    total = sum(len(t) for t in tables)
    seconds = sum(float(t["seconds"].sum()) for t in tables)
    prompts = sorted(set(samples["prompt"]))
    title = f"Captions by {captioner} on {dataset}"
    body = [f"<h1>{escape(title)}</h1>",
            "<p>Prompt: " + "; ".join(f"<q>{escape(p)}</q>" for p in prompts) + "<br>"
            f"{total} images, {seconds:.0f} s of generation "
            f"({seconds / max(total, 1):.2f} s per image).</p>",
            "<table><thead><tr><th>category</th><th>image</th><th>caption</th></tr></thead>",
            "<tbody>"]
    for row in samples.itertuples():
        body.append(f'<tr><th class="row">{escape(row.category)}</th>'
                    f'<td style="text-align:left">{escape(Path(row.image_path).name)}</td>'
                    f'<td style="text-align:left;max-width:50em">{escape(row.caption)}</td></tr>')
    body += ["</tbody></table>"]
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>",
                      '<meta charset="utf-8">', f"<title>{escape(title)}</title>",
                      f"<style>{STYLE}</style>", "</head>", "<body>", *body, "</body>",
                      "</html>", ""])


__all__ = ["captions_page", "sample_captions"]
