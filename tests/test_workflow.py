"""Real snakemake runs of the whole workflow: the embedded default once per test run
(``default_run``), and copies of it where a test changes a config or a file.

What the DAG decides (job counts, sharing, inputs) is tested in-process in
test_plan.py; here the rules do it for real: every contracted output, a rerun of
exactly what a change touches, a plugin kind, a killed job resuming, locks.
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open
from snakemake_runs import (
    REPO,
    copy_run,
    mtimes,
    planned_jobs,
    read_config,
    snakemake,
    write_config,
)

from diffad.io import read_provenance
from diffad.locks import lock_files, snakemake_processes, unlock_if_stale

pytestmark = pytest.mark.workflow

CATEGORIES = ("tiles", "widget")
TOY_PLUGIN = str(REPO / "tests" / "plugins" / "toy_method.py")


def planned(workdir: Path, *args: str) -> set[tuple[str, str]]:
    return set(planned_jobs(snakemake(workdir, "--dry-run", *args).stdout))


# ------------------------------------------------------- the default, as it ran


def test_the_default_writes_every_contracted_output(default_run):
    run = default_run / "results"
    for category in CATEGORIES:
        manifest = pd.read_parquet(run / f"data/synthetic/{category}.parquet")
        assert set(manifest["category"]) == {category}
        model = run / "models/patchcore/synthetic" / category
        assert {p.name for p in model.iterdir()} >= {"memory_bank.safetensors", "config.json",
                                                      "metadata.json", "loss.parquet"}
        # The folder is its train tier; inference settings come from each infer job.
        assert "patch_neighbors" not in json.loads((model / "config.json").read_text())[
            "params"]
        stem = run / "scores/patchcore/synthetic" / category
        scores = pd.read_parquet(f"{stem}.parquet")
        with safe_open(f"{stem}.maps.safetensors", framework="np") as fh:
            assert list(fh.keys()) == ["patch"]
            maps = fh.get_tensor("patch")
        assert maps.dtype.name == "float16" and maps.shape == (len(scores), 224, 224)
        assert {"label", "score_max", "score_reweighted", "latency_ms",
                "image_path"} <= set(scores.columns)
        for method in ("patchcore", "latent_inversion", "esm_sigma", "esm", "sgm", "vlmdiff",
                       "sd_img2img", "latent_unet", "clip_patch"):
            metrics = pd.read_parquet(run / f"metrics/{method}/synthetic/{category}.parquet")
            assert len(metrics) == 1
            assert {"i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max",
                    "latency_ms", "nfe", "params", "train_s", "protocol"} <= set(metrics.columns)
            assert 0.0 <= metrics["i_auroc"].iloc[0] <= 1.0 and metrics["params"].iloc[0] > 0
            # The versions that shape the numbers travel with them.
            versions = read_provenance(run / f"metrics/{method}/synthetic/{category}.parquet"
                                       )["versions"]
            assert versions["torch"] and versions["scikit-learn"] and versions["snakemake"]
            assert (default_run / f"results/figures/heatmaps/{method}/synthetic/"
                    f"{category}.png").stat().st_size > 0
    for ext in ("md", "csv", "tex", "html"):
        assert (run / f"tables/default.{ext}").stat().st_size > 0
    assert (run / "figures/default/metrics.png").stat().st_size > 0
    # Backbone features were extracted once per (backbone setting, split) and reused.
    assert list((run / "cache/features").glob("*.safetensors"))
    # Every rule wrote its log, which names the rule and the wildcards first.
    log = (default_run / "logs/train/patchcore/synthetic/tiles.log").read_text()
    assert "rule train: method=patchcore dataset=synthetic category=tiles" in log


def test_variants_share_models_and_inferences(default_run):
    run = default_run / "results"
    # esm differs from esm_sigma in its sampler only: one model; sgm trains its own.
    assert not (run / "models/esm").exists() and (run / "models/sgm").is_dir()
    for category, t_d in (("tiles", 40), ("widget", 20)):  # per_category T_d
        scores = pd.read_parquet(run / f"scores/esm_sigma/synthetic/{category}.parquet")
        assert {"score_cos", "score_re", "score_u", "score_kl"} <= set(scores.columns)
        assert (scores["nfe"] == 2 * t_d + 2).all()
    # One multi-class vlmdiff model, evaluated per category; one autoencoder per unit.
    model = run / "models/vlmdiff/synthetic"
    assert [p.name for p in model.iterdir()] == ["all"]
    meta = json.loads((model / "all/metadata.json").read_text())
    assert meta["categories"] == ["tiles", "widget"] and meta["n_train"] == 80
    assert sorted(p.name for p in (run / "models/autoencoder/tiny/synthetic").iterdir()) == [
        "all", "tiles", "widget"]
    assert json.loads((run / "models/autoencoder/tiny/synthetic/all/metadata.json")
                      .read_text())["finetuned"] is True


def test_captions_and_their_report_page(default_run):
    run = default_run / "results"
    for category in CATEGORIES:
        captions = pd.read_parquet(run / f"captions/tiny_blip2/synthetic/{category}.parquet")
        assert len(captions) == 40 and captions["caption"].str.len().min() > 0
    page = (run / "figures/captions/tiny_blip2/synthetic.html").read_text()
    assert "Describe the main object in detail." in page
    assert page.count('<th class="row">tiles</th>') == 3
    assert html.escape(captions["caption"].iloc[0]) in page
    assert (run / "figures/strengths/latent_unet/synthetic/widget.png").stat().st_size > 0


def test_a_second_run_has_nothing_to_do(default_run):
    result = snakemake(default_run, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_category_filter_writes_partial_tables_and_recomputes_nothing(default_run):
    jobs = planned(default_run, "--config", "categories=[tiles]")
    assert {rule for rule, _ in jobs} == {"build_tables", "metrics_chart"}
    assert "experiment=default.partial-tiles" in {w for _, w in jobs}


# ----------------------------------------- changes: exactly what they touch reruns


@pytest.fixture(scope="module")
def changed(default_run, tmp_path_factory):
    """A copy of the default with a train setting of patchcore, a score setting of
    esm_sigma and run settings of two more kinds changed; planned, run, then one
    category's model forced. Records what each step planned or rewrote."""
    workdir = copy_run(default_run, tmp_path_factory.mktemp("changed") / "run")
    before = mtimes(workdir)
    config = read_config(workdir)
    config["methods"]["patchcore"]["coreset_ratio"] = 0.2  # train
    config["methods"]["esm_sigma"]["weight_kl"] = 0.0  # score
    config["methods"]["latent_inversion"]["checkpoint_every"] = 7  # run settings
    config["methods"]["clip_patch"]["infer_batch_size"] = 4
    write_config(workdir, config)
    record = {
        "planned": planned(workdir),
        "one_category": planned(workdir, "results/metrics/patchcore/synthetic/widget.parquet"),
    }
    snakemake(workdir)
    record["after"] = mtimes(workdir)
    snakemake(workdir, "--forcerun", "results/models/patchcore/synthetic/tiles/metadata.json")
    record["forced"] = mtimes(workdir)
    return before, record


def test_a_change_plans_only_the_jobs_it_touches(changed):
    _, record = changed
    by_method = {}
    for rule, w in record["planned"]:
        method = dict(p.split("=") for p in w.split(", ") if "=" in p).get("method", "")
        by_method.setdefault(method, set()).add(rule)
    assert by_method.pop("patchcore") == {"train", "infer", "evaluate", "heatmaps"}
    assert by_method.pop("esm_sigma") == {"evaluate", "heatmaps"}
    assert set(by_method) == {""}  # the tables and the chart; no other variant's job
    assert {rule for rule, w in record["one_category"]} == {"train", "infer", "evaluate"}
    assert all("category=widget" in w for _, w in record["one_category"])


def test_a_run_rewrites_only_the_changed_variants_outputs(changed):
    before, record = changed
    after = record["after"]
    rewritten = {p for p in before if after[p] != before[p]}
    assert rewritten
    for path in rewritten:
        part = path.as_posix().split("/results/")[1]
        assert part.startswith(("models/patchcore/", "scores/patchcore/", "metrics/patchcore/",
                                "metrics/esm_sigma/", "figures/", "tables/")), part


def test_a_forced_rerun_of_one_category_touches_nothing_else(changed):
    _, record = changed
    after, forced = record["after"], record["forced"]
    changed_files = {p.as_posix().split("/results/")[1] for p in after if forced[p] != after[p]}
    assert changed_files - {f for f in changed_files if f.startswith(("tables/", "figures/"))} == {
        "models/patchcore/synthetic/tiles/memory_bank.safetensors",
        "models/patchcore/synthetic/tiles/config.json",
        "models/patchcore/synthetic/tiles/loss.parquet",
        "models/patchcore/synthetic/tiles/metadata.json",
        "scores/patchcore/synthetic/tiles.parquet",
        "scores/patchcore/synthetic/tiles.maps.safetensors",
        "scores/patchcore/synthetic/train/tiles.parquet",
        "metrics/patchcore/synthetic/tiles.parquet",
    }
    assert "tables/default.md" in changed_files


def test_listing_the_categories_reruns_nothing(default_run, tmp_path):
    workdir = copy_run(default_run, tmp_path / "run")
    config = read_config(workdir)
    config["datasets"]["synthetic"]["categories"] = ["tiles", "widget"]
    write_config(workdir, config)
    assert "Nothing to be done" in snakemake(workdir, "--dry-run").stdout


def test_a_changed_captioner_reruns_its_captions_and_what_reads_them(default_run, tmp_path):
    workdir = copy_run(default_run, tmp_path / "run")
    config = read_config(workdir)
    config["captioners"] = {"tiny_blip2": {"base": "tiny_blip2", "prompt": "What is this?"}}
    write_config(workdir, config)
    jobs = planned(workdir)
    rules = {}
    for rule, _ in jobs:
        rules[rule] = rules.get(rule, 0) + 1
    assert rules["captions"] == 2 and rules["train"] == 1  # vlmdiff's one model
    assert rules["infer"] == 2 and rules["evaluate"] == 2
    assert not {"autoencoder", "manifest", "fetch_weights"} & set(rules)


def test_an_alpha_sweep_scores_one_set_of_reconstructions(default_run, tmp_path):
    workdir = copy_run(default_run, tmp_path / "run")
    config = read_config(workdir)
    base = config["methods"]["sd_img2img"]
    config["method_grids"] = {"alpha": {"name": "sd_a{alpha}", "base": base,
                                        "vary": {"alpha": [0.3, 0.9]}}}
    write_config(workdir, config)
    jobs = planned(workdir)
    assert {rule for rule, _ in jobs} == {"evaluate", "build_tables", "metrics_chart"}
    assert sum(rule == "evaluate" for rule, _ in jobs) == 4


def test_a_plugin_kind_runs_with_a_score_tier_sweep_on_one_inference(default_run, tmp_path):
    workdir = copy_run(default_run, tmp_path / "run")
    config = read_config(workdir)
    config["plugins"] = [TOY_PLUGIN]
    config["method_grids"] = {"toy": {"name": "toy_p{power}_k{top_k}", "base": {"kind": "toy"},
                                      "vary": {"power": [1.0, 2.0], "top_k": [1, 50]}}}
    write_config(workdir, config)
    snakemake(workdir)
    run = workdir / "results"
    # Four score-tier variants of one plugin kind: one model, one inference.
    assert [p.name for p in (run / "models").iterdir() if p.name.startswith("toy")] == [
        "toy_p1.0_k1"]
    assert [p.name for p in (run / "scores").iterdir() if p.name.startswith("toy")] == [
        "toy_p1.0_k1"]
    config = json.loads((run / "models/toy_p1.0_k1/synthetic/tiles/config.json").read_text())
    assert config["kind"] == "toy" and config["plugin"] == TOY_PLUGIN
    rows = {name: pd.read_parquet(run / f"metrics/{name}/synthetic/tiles.parquet")
            for name in ("toy_p1.0_k1", "toy_p2.0_k1", "toy_p1.0_k50", "toy_p2.0_k50")}
    # A monotone power keeps the ranking of max-pooled scores, not of a top-50 mean.
    assert rows["toy_p1.0_k1"]["i_auroc"].iloc[0] == rows["toy_p2.0_k1"]["i_auroc"].iloc[0]
    assert rows["toy_p1.0_k1"]["p_auroc"].iloc[0] == rows["toy_p2.0_k1"]["p_auroc"].iloc[0]
    assert len({round(float(r["i_ap"].iloc[0]), 12) for r in rows.values()}
               | {round(float(r["aupro"].iloc[0]), 12) for r in rows.values()}) > 1
    assert "toy_p2.0_k50" in (run / "tables/default.md").read_text()


# --------------------------------------------------------------- kills and locks


def test_a_killed_caption_job_resumes_without_redoing_finished_images(default_run, tmp_path):
    workdir = copy_run(default_run, tmp_path / "run")
    config = read_config(workdir)
    # One image per batch, long captions: the job runs for seconds, a batch at a time.
    config["captioners"] = {"tiny_blip2": {"base": "tiny_blip2", "batch_size": 1,
                                           "max_new_tokens": 100, "min_new_tokens": 100}}
    write_config(workdir, config)
    target = "results/captions/tiny_blip2/synthetic/tiles.parquet"
    partial = workdir / "results/captions/tiny_blip2/synthetic/.tiles.partial.parquet"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
           str(workdir), "--cores", "1", target]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if partial.is_file() and len(pd.read_parquet(partial)) >= 3:
                break
            time.sleep(0.05)
        # While snakemake runs, its lock is kept.
        assert lock_files(workdir) and process.pid in snakemake_processes(workdir)
        assert "its lock stays" in unlock_if_stale(workdir)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kept = pd.read_parquet(partial)
    assert 3 <= len(kept) < 40, "the job was not killed half-way"
    # The killed snakemake left its lock: the next call is refused until `make run`'s
    # first step removes it.
    blocked = snakemake(workdir, target, check=False)
    assert blocked.returncode != 0 and "cannot be locked" in blocked.stdout + blocked.stderr
    out = subprocess.run([sys.executable, "-m", "diffad.locks", str(workdir)],
                         capture_output=True, text=True, check=True).stdout
    assert "removed a stale snakemake lock" in out and not lock_files(workdir)
    snakemake(workdir, target, "--rerun-incomplete")
    final = pd.read_parquet(workdir / target)
    assert len(final) == 40 and not partial.exists()
    again = final.set_index("image_path").loc[kept["image_path"]]
    # The finished images were not captioned again: their rows are the killed run's.
    assert again["caption"].tolist() == kept["caption"].tolist()
    assert again["seconds"].tolist() == kept["seconds"].tolist()
    log = (workdir / "logs/captions/tiny_blip2/synthetic/tiles.log").read_text()
    assert f"resuming: {len(kept)} of 40 images already captioned" in log
    assert unlock_if_stale(workdir) == "no snakemake lock"


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s",
                             str(REPO / "Snakefile"), "-d", str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
