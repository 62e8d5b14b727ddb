"""The experiment table: mean rows, published numbers and their difference, n/a, the
paper-protocol column, partial means, integers, and the Markdown and CSV views."""

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
                     "nfe": 0, "params": 2_000_000, "train_s": 1.0, "n_test": 10,
                     "n_anomalous": 6,
                     "note": "" if not np.isnan(p_auroc) else
                     "pixel metrics n/a: anomalous test images without ground-truth masks"})
    return pd.DataFrame(rows)


def _write(tmp_path, table, **options):
    paths = {ext: tmp_path / f"t.{ext}" for ext in ("md", "csv", "tex", "html")}
    write_tables(table, title="exp", **{k: str(v) for k, v in paths.items()}, **options)
    return paths


def _row(text, first_cells):
    """The cells of the Markdown row whose first cells are ``first_cells``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:len(first_cells)] == list(first_cells):
            return cells
    raise AssertionError(f"no row {first_cells} in\n{text}")


def _header(text):
    """The cells of the first Markdown table header in ``text``."""
    line = next(line for line in text.splitlines() if line.startswith("| method"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


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
    paths = _write(tmp_path, table)
    text = paths["md"].read_text()
    cable = _row(text, ["pc", "mvtec_ad", "cable"])
    assert cable[3:6] == ["97.0", "n/a", "90.0"]  # I-AUROC, P-AUROC, AUPRO
    # The mean of a metric that is n/a in one category is n/a, and the caption says why.
    assert _row(text, ["pc", "mvtec_ad", "**mean**"])[3:5] == ["98.0", "n/a"]
    assert "n/a: cannot be defined (pixel metrics: anomalous test images without" in text
    assert pd.read_csv(paths["csv"])["i_auroc"].iloc[0] == pytest.approx(99.0)
    tex = paths["tex"].read_text()
    assert r"\begin{tabular}" in tex and "mvtec\\_ad" in tex


def test_headers_people_write_and_the_columns_a_table_chooses(tmp_path):
    table = build_table(_metrics(), read_reference([]), {})
    text = _write(tmp_path, table)["md"].read_text()
    assert _header(text) == ["method", "dataset", "category", "I-AUROC", "P-AUROC", "AUPRO"]
    assert "i_auroc" not in text and "latency" not in _header(text)
    text = _write(tmp_path, table, columns=["i_ap", "p_f1max"])["md"].read_text()
    assert _header(text)[3:] == ["I-AP", "P-F1max"]
    with pytest.raises(ConfigError, match="iauroc"):
        _write(tmp_path, table, columns=["iauroc"])


def test_cost_columns_have_their_own_table(tmp_path):
    table = build_table(_metrics(), read_reference([]), {})
    text = _write(tmp_path, table)["md"].read_text()
    cost = text[text.index("## Cost"):]
    assert _header(cost) == ["method", "dataset", "Latency (ms)", "NFE", "Params (M)",
                             "Training (s)"]
    assert _row(cost, ["pc", "mvtec_ad"])[2:] == ["10.0", "0", "2.00", "1.0"]


def test_caption_says_only_what_applies(tmp_path):
    clean = _metrics(values=((0.99, 0.95), (0.97, 0.9)))
    text = _write(tmp_path, build_table(clean, read_reference([]), {}))["md"].read_text()
    caption = text.split("\n\n")[1]
    assert caption.startswith("I-AUROC, P-AUROC and AUPRO (%) per category")
    assert "Δ" not in caption and "paper" not in caption and "n/a" not in caption
    assert "Partial" not in caption and "protocol" not in caption
    reference = _reference(tmp_path, [("pc", "mvtec_ad", "mean", "i_auroc", 99.1, "T1")])
    text = _write(tmp_path, build_table(clean, reference, {}))["md"].read_text()
    assert "Δ = ours − paper" in text.split("\n\n")[1]
    assert _header(text)[3:7] == ["I-AUROC", "I-AUROC paper", "I-AUROC Δ", "P-AUROC"]


def test_reconstruction_fidelity_sits_beside_the_metrics_of_the_kinds_that_reconstruct(
        tmp_path):
    sd = _metrics(method="sd").assign(ssim=[0.75, 0.65], mse=[0.004, 0.006],
                                      clip=[0.125, 0.075])
    table = build_table(pd.concat([_metrics(), sd]), read_reference([]), {})
    text = _write(tmp_path, table)["md"].read_text()
    assert _header(text)[3:] == ["I-AUROC", "P-AUROC", "AUPRO", "SSIM", "MSE", "CLIP dist."]
    # x 100 like the metrics; the mean row averages them; PatchCore reconstructs nothing.
    assert _row(text, ["sd", "mvtec_ad", "**mean**"])[6:] == ["70.0", "0.5", "10.0"]
    assert _row(text, ["pc", "mvtec_ad", "**mean**"])[6:] == ["–", "–", "–"]
    caption = text.split("\n\n")[1]
    assert caption.startswith("I-AUROC, P-AUROC and AUPRO (%) per category")
    assert "MSE: their squared error on [0, 1] pixels" in caption
    text = _write(tmp_path, table, columns=["mse"])["md"].read_text()
    assert _header(text)[3:] == ["MSE"] and "(%) per category" not in text


def test_counts_stay_integers_in_the_csv(tmp_path):
    metrics = _metrics()
    metrics["params"] = 2_958_848
    table = build_table(metrics, read_reference([]), {})
    lines = _write(tmp_path, table)["csv"].read_text().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        assert row["nfe"] == "0" and row["params"] == "2958848", line
        assert "." not in row["n_test"] + row["n_anomalous"]
    mean = dict(zip(header, lines[3].split(","), strict=False))
    assert mean["category"] == "mean" and mean["n_test"] == "20" and mean["n_categories"] == "2"
    # Every column is there for analysis, at full precision.
    assert {"p_ap", "i_f1max", "train_s", "note", "protocol"} <= set(header)


def test_paper_protocol_column_beside_ours(tmp_path):
    ours = _metrics("li", values=((0.90, 0.95), (0.80, 0.9)))
    ours["protocol"] = "diad"
    ours["i_auroc_protocol"] = [0.92, 0.85]
    for metric in ("p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max"):
        ours[f"{metric}_protocol"] = ours[metric]
    baseline = _metrics("pc", values=((0.99, 0.95), (0.97, 0.9)))
    baseline["protocol"] = "unified"
    metrics = pd.concat([baseline, ours], ignore_index=True)
    reference = _reference(tmp_path, [("li", "mvtec_ad", "bottle", "i_auroc", 95.0, "T1"),
                                      ("li", "mvtec_ad", "cable", "i_auroc", 93.0, "T1")])
    table = build_table(metrics, reference, {})
    li_mean = table[(table["method"] == "li") & (table["category"] == "mean")].iloc[0]
    assert li_mean["i_auroc protocol"] == pytest.approx(88.5)
    assert li_mean["i_auroc Δ"] == pytest.approx(85.0 - 94.0)  # ours (unified) - paper
    assert table.loc[table["method"] == "pc", "i_auroc protocol"].isna().all()
    text = _write(tmp_path, table)["md"].read_text()
    assert _header(text)[3:7] == ["I-AUROC", "I-AUROC ours (diad)", "I-AUROC paper",
                                  "I-AUROC Δ"]
    assert _row(text, ["li", "mvtec_ad", "bottle"])[3:7] == ["90.0", "92.0", "95.0", "-5.0"]
    # The unified baseline has no paper-protocol value: "–", not n/a.
    assert _row(text, ["pc", "mvtec_ad", "bottle"])[3:5] == ["99.0", "–"]
    assert "ours (diad): the same scores under the evaluation protocol" in text


def test_partial_run_is_marked_in_the_mean_row_and_caption(tmp_path):
    reference = _reference(tmp_path, [
        ("pc", "mvtec_ad", "bottle", "i_auroc", 100.0, "T1"),
        ("pc", "mvtec_ad", "cable", "i_auroc", 99.0, "T1"),
        ("pc", "mvtec_ad", "mean", "i_auroc", 90.0, "T1"),
    ])
    full = {"mvtec_ad": ["bottle", "cable", "capsule"]}
    table = build_table(_metrics(), reference, {}, categories=full)
    mean = table[table["category"] == "mean"].iloc[0]
    assert (mean["n_categories"], mean["total_categories"]) == (2, 3)
    # The paper's mean covers all three: a partial mean compares with its categories only.
    assert mean["i_auroc paper"] == pytest.approx(99.5)
    text = _write(tmp_path, table)["md"].read_text()
    assert _row(text, ["pc", "mvtec_ad", "**mean (partial: 2 of 3 categories)**"])
    assert "Partial: mvtec_ad, 2 of 3 categories" in text.split("\n\n")[1]
    complete = build_table(_metrics(), reference, {}, categories={"mvtec_ad": ["bottle",
                                                                               "cable"]})
    assert complete.loc[complete["category"] == "mean", "i_auroc paper"].iloc[0] == 90.0
    assert "partial" not in _write(tmp_path, complete)["md"].read_text().lower()


def test_a_category_without_any_metric_leaves_the_others_intact(tmp_path):
    metrics = _metrics(values=((0.99, 0.95), (0.97, 0.9)))
    quality = ["i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max"]
    metrics.loc[1, quality] = np.nan
    metrics.loc[1, "note"] = "metrics n/a: the test split has only normal images"
    table = build_table(metrics, read_reference([]), {})
    text = _write(tmp_path, table)["md"].read_text()
    assert _row(text, ["pc", "mvtec_ad", "bottle"])[3:6] == ["99.0", "95.0", "90.0"]
    assert _row(text, ["pc", "mvtec_ad", "cable"])[3:6] == ["n/a"] * 3
    assert "metrics: the test split has only normal images" in text


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


def test_seed_groups_show_mean_and_spread_of_repeated_runs(tmp_path):
    metrics = pd.concat([
        _metrics("esm_s0", values=((0.90, 0.95), (0.80, 0.9))),
        _metrics("esm_s1", values=((0.94, 0.97), (0.90, 0.9))),
        _metrics("pc"),
    ], ignore_index=True)
    reference = _reference(tmp_path, [("esm", "mvtec_ad", "mean", "i_auroc", 90.0, "T1")])
    table = build_table(metrics, reference, {"esm_s0": "esm", "esm_s1": "esm"},
                        seeds={"esm": ["esm_s0", "esm_s1"]})
    # The group replaces its runs; other methods keep their rows.
    assert list(dict.fromkeys(table["method"])) == ["esm", "pc"]
    esm = table[table["method"] == "esm"].set_index("category")
    assert esm.loc["bottle", "i_auroc"] == pytest.approx(92.0)
    assert esm.loc["bottle", "i_auroc sd"] == pytest.approx(np.std([90, 94], ddof=1))
    # The mean row's spread is that of the two runs' own means (85.0 and 92.0).
    assert esm.loc["mean", "i_auroc"] == pytest.approx(88.5)
    assert esm.loc["mean", "i_auroc sd"] == pytest.approx(np.std([85.0, 92.0], ddof=1))
    assert esm.loc["mean", "i_auroc Δ"] == pytest.approx(-1.5)  # the runs' reference row
    assert table["n_seeds"].dropna().astype(int).tolist() == [2, 2, 2]
    md = _write(tmp_path, table)["md"].read_text()
    assert _row(md, ["esm", "mvtec_ad", "bottle"])[3] == "92.0 ± 2.8"
    assert _row(md, ["pc", "mvtec_ad", "bottle"])[3] == "99.0"
    assert "a ± b: mean and standard deviation over 2 runs differing only in the seed" in md


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
