"""The experiment table: mean rows, published numbers and their difference, n/a."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffad.errors import ConfigError
from diffad.report.tables import build_table, read_reference, write_tables


def _metrics(method="pc", dataset="mvtec_ad", values=((0.99, 0.95), (0.97, np.nan))):
    rows = []
    for category, (i_auroc, p_auroc) in zip(("bottle", "cable"), values, strict=True):
        rows.append({"method": method, "dataset": dataset, "category": category,
                     "i_auroc": i_auroc, "p_auroc": p_auroc, "aupro": 0.9, "i_ap": 0.9,
                     "p_ap": 0.5, "i_f1max": 0.9, "p_f1max": 0.5, "latency_ms": 10.0,
                     "nfe": 0, "params": 2_000_000, "train_s": 1.0})
    return pd.DataFrame(rows)


def _reference(tmp_path, rows):
    path = tmp_path / "ref.csv"
    pd.DataFrame(rows, columns=["method", "dataset", "category", "metric", "value",
                                "source"]).to_csv(path, index=False)
    return read_reference([path])


def test_mean_row_and_difference_to_the_paper(tmp_path):
    reference = _reference(tmp_path, [
        ("patchcore", "mvtec_ad", "bottle", "i_auroc", 100.0, "T1"),
        ("patchcore", "mvtec_ad", "cable", "i_auroc", 99.5, "T1"),
    ])
    table = build_table(_metrics(), reference, {"pc": "patchcore"})
    mean = table[table["category"] == "mean"].iloc[0]
    assert mean["i_auroc"] == pytest.approx(98.0)
    # No published mean row: the mean of the paper's per-category values.
    assert mean["i_auroc paper"] == pytest.approx(99.75)
    assert mean["i_auroc Δ"] == pytest.approx(-1.75)
    bottle = table[table["category"] == "bottle"].iloc[0]
    assert bottle["i_auroc Δ"] == pytest.approx(-1.0)
    assert "p_auroc paper" not in table.columns


def test_published_mean_row_wins(tmp_path):
    reference = _reference(tmp_path, [
        ("pc", "mvtec_ad", "bottle", "i_auroc", 100.0, "T1"),
        ("pc", "mvtec_ad", "mean", "i_auroc", 99.1, "T1"),
    ])
    table = build_table(_metrics(), reference, {})
    assert table.loc[table["category"] == "mean", "i_auroc paper"].iloc[0] == pytest.approx(99.1)
    assert np.isnan(table.loc[table["category"] == "cable", "i_auroc paper"].iloc[0])


def test_unavailable_pixel_metrics_print_as_na(tmp_path):
    table = build_table(_metrics(), read_reference([]), {})
    md, csv, tex = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.tex"
    write_tables(table, md=str(md), csv=str(csv), tex=str(tex), title="exp")
    text = md.read_text()
    cable = next(line for line in text.splitlines() if "| cable" in line)
    assert "n/a" in cable
    assert "| 97.0" in cable
    assert pd.read_csv(csv)["i_auroc"].iloc[0] == pytest.approx(99.0)
    assert r"\begin{tabular}" in tex.read_text() and "mvtec\\_ad" in tex.read_text()


def test_reference_with_bad_metric_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("method,dataset,category,metric,value,source\npc,d,c,iauroc,1,T\n")
    with pytest.raises(ConfigError, match="bad.csv: unknown metric"):
        read_reference([path])


def test_shipped_reference_files_parse():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "config/reference").glob("*.csv"))
    reference = read_reference(files)
    assert len(reference) > 0 and reference["value"].between(0, 100).all()


def test_best_of_picks_the_best_variant_per_category(tmp_path):
    metrics = pd.concat([
        _metrics("s2", values=((0.90, 0.95), (0.97, 0.9))),
        _metrics("s3", values=((0.95, 0.80), (0.93, 0.8))),
    ], ignore_index=True)
    table = build_table(metrics, read_reference([]), {}, best={"tuned": ["s2", "s3"]})
    tuned = table[table["method"] == "tuned"].set_index("category")
    assert tuned.loc["bottle", "i_auroc"] == pytest.approx(95.0)
    assert tuned.loc["bottle", "p_auroc"] == pytest.approx(80.0)  # the chosen variant's row
    assert tuned.loc["cable", "i_auroc"] == pytest.approx(97.0)
    assert tuned.loc["mean", "i_auroc"] == pytest.approx(96.0)


def test_grid_view_lays_out_a_two_parameter_grid_like_the_paper(tmp_path):
    rows = []
    for steps in (3, 5):
        for start in (20, 40):
            if steps == 3 and start == 20:
                continue  # not applicable, as in the paper's "-" cell
            m = _metrics(f"r_s{steps}_p{start}", values=((0.5 + steps / 100 + start / 1000,
                                                         0.9),) * 2)
            rows.append(m)
    metrics = pd.concat(rows, ignore_index=True)
    reference = _reference(tmp_path, [("r_s5_p40", "mvtec_ad", "mean", "i_auroc", 50.0, "T4")])
    table = build_table(metrics, reference, {})
    grids = {"recon": {f"r_s{s}_p{p}": {"steps": s, "start_percent": p}
                       for s in (3, 5) for p in (20, 40) if (s, p) != (3, 20)}}
    md, csv, tex = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.tex"
    write_tables(table, md=str(md), csv=str(csv), tex=str(tex), title="exp", grids=grids)
    text = md.read_text()
    assert "## recon on mvtec_ad: mean i_auroc (%)" in text
    lines = text.splitlines()
    header = next(line for line in lines if "steps=3" in line)
    assert header.index("steps=3") < header.index("steps=5")
    row20 = next(line for line in lines if line.startswith("| 20"))
    row40 = next(line for line in lines if line.startswith("| 40"))
    assert "–" in row20 and "57.0" in row20  # s3 p20 left out; s5 p20 = 0.5+0.05+0.02
    assert "59.0 (50.0, +9.0)" in row40
