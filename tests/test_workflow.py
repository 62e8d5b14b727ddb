"""Real snakemake runs of the whole workflow in a temporary directory.

A small synthetic dataset (two categories, 64 px) and two PatchCore variants
keep each run well under a minute on two cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.workflow


LATENT_INVERSION = {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
                    "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 3,
                    "batch_size": 8}


def small_config(weights_root: Path, **overrides) -> dict:
    config = {
        "experiment": "small",
        "reference_dir": str(REPO / "config" / "reference"),
        "datasets": {
            "synthetic": {
                "kind": "synthetic",
                "root": "data/synthetic",
                "image_size": 64,
                "synthetic": {"n_train": 12, "n_test_good": 5, "n_test_defect": 2},
            }
        },
        "methods": {
            "patchcore_a": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                            "coreset_ratio": 0.5},
            "patchcore_b": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                            "coreset_ratio": 0.25},
            "li": LATENT_INVERSION,
        },
        # li_s3 differs from li in inference settings only: it must reuse li's model.
        "method_grids": {"li_steps": {
            "name": "li_s{steps}",
            "base": {**LATENT_INVERSION, "score": "combined_train"},
            "vary": {"steps": [3]},
        }},
        "runtime": {"weights_dir": str(weights_root), "seed": 0},
    }
    config.update(overrides)
    return config


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def outputs_of(workdir: Path, method: str) -> dict[Path, int]:
    files = [p for stage in ("models", "scores", "metrics")
             for p in (workdir / "results" / stage / method).rglob("*") if p.is_file()]
    return {p: p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, weights_root):
    """One complete run, shared by the tests that only read or rerun it."""
    workdir = tmp_path_factory.mktemp("run")
    write_config(workdir, small_config(weights_root))
    snakemake(workdir)
    return workdir


def test_full_run_writes_every_contracted_output(finished_run):
    workdir = finished_run
    manifest = pd.read_parquet(workdir / "results/data/synthetic/manifest.parquet")
    categories = sorted(manifest["category"].unique())
    for method in ("patchcore_a", "patchcore_b"):
        for category in categories:
            model = workdir / "results/models" / method / "synthetic" / category
            assert {p.name for p in model.iterdir()} >= {"model.safetensors", "metadata.json",
                                                          "loss.parquet"}
            scores = pd.read_parquet(workdir / "results/scores" / method / "synthetic"
                                     / f"{category}.parquet")
            maps = np.load(workdir / "results/scores" / method / "synthetic"
                           / f"{category}.maps.npy")
            assert maps.dtype.name == "float16" and maps.shape == (len(scores), 64, 64)
            assert {"label", "score", "latency_ms", "image_path"} <= set(scores.columns)
            metrics = pd.read_parquet(workdir / "results/metrics" / method / "synthetic"
                                      / f"{category}.parquet")
            assert len(metrics) == 1
            assert {"i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max",
                    "latency_ms", "nfe", "params", "train_s"} <= set(metrics.columns)
            assert 0.0 <= metrics["i_auroc"].iloc[0] <= 1.0
            assert metrics["params"].iloc[0] > 0
    # Inference variants share the model of the first variant with their training params.
    assert not (workdir / "results/models/li_s3").exists()
    for category in categories:
        li = pd.read_parquet(workdir / f"results/scores/li_s3/synthetic/{category}.parquet")
        assert {"score_nll", "score_norm"} <= set(li.columns) and (li["nfe"] == 3).all()
        assert (workdir / f"results/metrics/li_s3/synthetic/{category}.parquet").exists()
    # Backbone features were extracted once per (category, split) and reused by both variants.
    assert len(list((workdir / "results/cache/features").glob("*.safetensors"))) == 4
    table = (workdir / "results/tables/small.md").read_text()
    assert "patchcore_a" in table and "mean" in table
    assert "## li_steps on synthetic: mean i_auroc" in table
    for ext in ("csv", "tex"):
        assert (workdir / f"results/tables/small.{ext}").stat().st_size > 0
    assert (workdir / "results/figures/small/metrics.png").stat().st_size > 0
    # Every rule wrote its log.
    assert any((workdir / "logs/train").rglob("*.log"))


def test_second_run_has_nothing_to_do(finished_run):
    result = snakemake(finished_run, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_method_reruns_only_that_method(finished_run, weights_root):
    workdir = finished_run
    before_a = outputs_of(workdir, "patchcore_a")
    before_b = outputs_of(workdir, "patchcore_b")
    config = small_config(weights_root)
    config["methods"]["patchcore_b"]["coreset_ratio"] = 0.3
    # The changed config stays: later tests on this run see it consistent with the outputs.
    write_config(workdir, config)
    snakemake(workdir)
    assert outputs_of(workdir, "patchcore_a") == before_a
    after_b = outputs_of(workdir, "patchcore_b")
    assert after_b.keys() == before_b.keys()
    assert all(after_b[p] > before_b[p] for p in before_b)


def test_forced_rerun_of_one_category_touches_nothing_else(finished_run):
    workdir = finished_run
    before = {**outputs_of(workdir, "patchcore_a"), **outputs_of(workdir, "patchcore_b")}
    table = workdir / "results/tables/small.md"
    table_before = table.stat().st_mtime_ns
    snakemake(workdir, "--forcerun", "results/models/patchcore_a/synthetic/tiles/metadata.json")
    after = {**outputs_of(workdir, "patchcore_a"), **outputs_of(workdir, "patchcore_b")}
    changed = {p.relative_to(workdir / "results").as_posix() for p in before
               if after[p] != before[p]}
    assert changed == {
        "models/patchcore_a/synthetic/tiles/model.safetensors",
        "models/patchcore_a/synthetic/tiles/loss.parquet",
        "models/patchcore_a/synthetic/tiles/metadata.json",
        "scores/patchcore_a/synthetic/tiles.parquet",
        "scores/patchcore_a/synthetic/tiles.maps.npy",
        "metrics/patchcore_a/synthetic/tiles.parquet",
    }
    assert table.stat().st_mtime_ns > table_before
    assert "widget" in table.read_text()


def test_single_category_target_builds_only_that_category(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    snakemake(tmp_path, "results/metrics/patchcore_a/synthetic/widget.parquet")
    assert (tmp_path / "results/metrics/patchcore_a/synthetic/widget.parquet").exists()
    built = {p.name for p in (tmp_path / "results/models/patchcore_a/synthetic").iterdir()}
    assert built == {"widget"}
    assert not (tmp_path / "results/models/patchcore_b").exists()


def test_category_filter_from_the_command_line(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    result = snakemake(tmp_path, "--dry-run", "--config", "categories=[tiles]")
    out = result.stdout
    assert "category=tiles" in out and "category=widget" not in out


def test_failed_category_leaves_other_categories_intact(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    snakemake(tmp_path, "results/data/synthetic/manifest.parquet")
    manifest = pd.read_parquet(tmp_path / "results/data/synthetic/manifest.parquet")
    # An image damaged after the manifest was checked (a flaky file system, a
    # half-finished copy): that category's training must fail, alone.
    broken = manifest[(manifest["category"] == "tiles") & (manifest["split"] == "train")]
    path = tmp_path / broken["image_path"].iloc[0]
    path.write_bytes(path.read_bytes()[:100])
    result = snakemake(tmp_path, "--keep-going", check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs/train/patchcore_a/synthetic/tiles.log").read_text()
    assert str(broken["image_path"].iloc[0]) in log
    for method in ("patchcore_a", "patchcore_b"):
        metrics = pd.read_parquet(tmp_path / f"results/metrics/{method}/synthetic/widget.parquet")
        assert metrics["i_auroc"].notna().all()
        assert not (tmp_path / f"results/models/{method}/synthetic/tiles/metadata.json").exists()
    assert not (tmp_path / "results/tables/small.md").exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["datasets"]["synthetic"].update(image_size="big"), "image_size"),
        (lambda c: c["methods"]["patchcore_a"].update(kind="nope"), "methods.patchcore_a.kind"),
        (lambda c: c["methods"]["patchcore_a"].update(coreset_ratio="x"),
         "methods.patchcore_a.coreset_ratio"),
        (lambda c: c["datasets"]["synthetic"].update(kind="nope"), "datasets.synthetic"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
    ],
    ids=["schema-type", "method-kind", "method-param", "dataset-kind", "schema-extra-key"],
)
def test_bad_config_fails_at_dag_build_naming_the_key(tmp_path, weights_root, mutate, message):
    config = small_config(weights_root)
    mutate(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("experiment", "variants", "train_jobs"),
    # latent_inversion: 44 variants (2 + 3 + 6 + 6 + 27 reconstruction points)
    # share one model per category of MVTec AD (15) and VisA (12).
    [("patchcore", 1, 15 + 12 + 6), ("latent_inversion", 44, 15 + 12)],
)
def test_reproduction_config_dry_runs_the_full_dag(tmp_path, experiment, variants, train_jobs):
    result = snakemake(tmp_path, "--dry-run", "--configfile",
                       str(REPO / f"config/experiments/{experiment}.yaml"))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert int(counts["train"]) == train_jobs
    assert int(counts["infer"]) == variants * train_jobs
    assert int(counts["evaluate"]) == variants * train_jobs
    assert int(counts["build_tables"]) == 1


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s",
                             str(REPO / "Snakefile"), "-d", str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
