"""The `--profile profiles/slurm` path against a live single-node SLURM cluster.

`.ci/run` starts the cluster (`.ci/slurm-start`, as root) before the tests;
on a machine without one these tests skip with the reason, and with
`CI=true` a skip is a failure. Jobs really go through sbatch: the plugin
prints their SLURM job ids, and each job's log records its SLURM_JOB_ID and,
for GPU rules, the (fake) GPU the scheduler gave it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
QUALITY = ["i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max"]

pytestmark = pytest.mark.slurm


def answers() -> bool:
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return state.returncode == 0 and bool(state.stdout.strip())


def cluster_problem() -> tuple[str | None, bool]:
    """Why no cluster can be used here (or None), and whether this call started one."""
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')", False
    if shutil.which("sinfo") is not None and answers():
        return None, False
    if os.geteuid() != 0:
        return "no SLURM here and no root to start one (.ci/slurm-start)", False
    started = subprocess.run(["bash", str(REPO / ".ci/slurm-start")], capture_output=True,
                             text=True, timeout=600)
    if started.returncode != 0:
        return f".ci/slurm-start failed: {started.stderr[-2000:]}", True
    return (None if answers() else "SLURM does not answer after .ci/slurm-start"), True


@pytest.fixture(scope="module")
def cluster():
    problem, started = cluster_problem()
    try:
        if problem:
            if os.environ.get("CI") == "true":
                pytest.fail(f"SLURM tests cannot run in CI: {problem}")
            pytest.skip(problem)
        yield
    finally:
        # A cluster these tests started is stopped again; one that ran before
        # (.ci/run starts and stops its own) is left as it was.
        if started:
            subprocess.run(["bash", str(REPO / ".ci/slurm-stop")], capture_output=True,
                           text=True, timeout=300)


def config(weights_root: Path, categories: list[str]) -> dict:
    small = {"cpus_per_task": 1, "runtime": 10}
    return {
        "experiment": "slurm",
        "reference_dir": str(REPO / "config/reference"),
        "datasets": {"synthetic": {
            "kind": "synthetic", "root": "data/synthetic", "image_size": 64,
            "synthetic": {"n_train": 12, "n_test_good": 5, "n_test_defect": 2},
        }},
        "methods": {
            "patchcore": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                          "coreset_ratio": 0.5},
            "li": {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
                   "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 3,
                   "batch_size": 8},
        },
        "categories": categories,
        "runtime": {"weights_dir": str(weights_root), "seed": 0},
        # The test node has 2 CPUs and a fake GPU.
        "resources": {"train": {**small, "mem_mb": 3000, "gpu": 1},
                      "infer": {**small, "mem_mb": 3000, "gpu": 1},
                      "evaluate": {**small, "mem_mb": 2000}},
    }


def snakemake(workdir: Path, *args: str, slurm: bool, check: bool = True,
              profile: str = str(REPO / "profiles/slurm"), env: dict | None = None):
    options = (["--profile", profile,
                "--workflow-profile", str(REPO / "tests/slurm/profile")] if slurm
               else ["--cores", "2"])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           *options, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir: Path, cfg: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(cfg))


def mtimes(workdir: Path, category: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*")
            if p.is_file() and f"/{category}" in str(p)}


@pytest.fixture(scope="module")
def failed_run(cluster, tmp_path_factory, weights_root):
    """Two categories on SLURM; `tiles` breaks after its manifest, `widget` must finish."""
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, config(weights_root, ["tiles", "widget"]))
    snakemake(workdir, "results/data/synthetic/tiles.parquet", slurm=False)
    manifest = pd.read_parquet(workdir / "results/data/synthetic/tiles.parquet")
    rows = manifest[manifest["split"] == "train"]
    broken = workdir / rows["image_path"].iloc[0]
    original = broken.read_bytes()
    broken.write_bytes(original[:100])
    result = snakemake(workdir, "--keep-going", slurm=True, check=False)
    return workdir, result, broken, original


def test_jobs_go_through_sbatch_and_gpu_rules_get_the_gpu(failed_run):
    workdir, result, _, _ = failed_run
    out = result.stdout + result.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    # train x 2 methods x 2 categories, and one grouped score job per widget model
    assert len(job_ids) >= 5, out[-3000:]
    for method in ("patchcore", "li"):
        train_log = (workdir / f"logs/train/{method}/synthetic/widget.log").read_text()
        context = train_log.splitlines()[0]
        assert f"rule train: method={method} dataset=synthetic category=widget" in context
        assert re.search(r"SLURM_JOB_ID=(\d+)", context).group(1) in job_ids
        assert "CUDA_VISIBLE_DEVICES=0" in context  # the node's fake GPU, given by --gpus
        evaluate_log = (workdir / f"logs/evaluate/{method}/synthetic/widget.log").read_text()
        assert "SLURM_JOB_ID=" in evaluate_log


def test_a_failing_rule_is_reported_while_the_other_category_finishes(failed_run):
    workdir, result, broken, _ = failed_run
    out = result.stdout + result.stderr
    assert result.returncode != 0
    # Snakemake names the failed rule and the SLURM job that failed.
    assert "Error in rule train" in out
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", out)
    assert str(broken.relative_to(workdir)) in (workdir / "logs/train/patchcore/synthetic/"
                                                 "tiles.log").read_text()
    for method in ("patchcore", "li"):
        assert (workdir / f"results/metrics/{method}/synthetic/widget.parquet").exists()
        assert not (workdir / f"results/models/{method}/synthetic/tiles/metadata.json").exists()


def test_metrics_equal_those_of_the_local_executor(failed_run, tmp_path, weights_root):
    workdir, _, _, _ = failed_run
    write_config(tmp_path, config(weights_root, ["widget"]))
    snakemake(tmp_path, "results/metrics/patchcore/synthetic/widget.parquet",
              "results/metrics/li/synthetic/widget.parquet", slurm=False)
    for method in ("patchcore", "li"):
        on_slurm = pd.read_parquet(workdir / f"results/metrics/{method}/synthetic/widget.parquet")
        local = pd.read_parquet(tmp_path / f"results/metrics/{method}/synthetic/widget.parquet")
        np.testing.assert_allclose(on_slurm[QUALITY].to_numpy(), local[QUALITY].to_numpy(),
                                   rtol=1e-6, err_msg=method)


def test_rerun_after_the_fix_does_only_the_missing_jobs(failed_run):
    workdir, _, broken, original = failed_run
    broken.write_bytes(original)
    widget_before = mtimes(workdir, "widget")
    # The train log said the image changed since the manifest, and how to rebuild it.
    rebuild = "--forcerun results/data/synthetic/tiles.parquet"
    assert rebuild in (workdir / "logs/train/patchcore/synthetic/tiles.log").read_text()
    planned = snakemake(workdir, "--dry-run", *rebuild.split(), slurm=True).stdout
    assert "category=widget" not in planned and "category=tiles" in planned
    snakemake(workdir, *rebuild.split(), slurm=True)
    assert mtimes(workdir, "widget") == widget_before
    for method in ("patchcore", "li"):
        assert (workdir / f"results/metrics/{method}/synthetic/tiles.parquet").exists()
    assert (workdir / "results/tables/slurm.md").exists()


def test_profile_installed_by_name_runs_as_typed(cluster, tmp_path, weights_root):
    """`snakemake --profile slurm`, as cluster users type it, after the one-time install
    into their config folder (here a temporary one)."""
    from diffad.profiles import install_profile

    config_home = tmp_path / "config-home"
    installed = install_profile(account=None, partition="debug", config_home=config_home)
    assert installed == config_home / "snakemake/slurm/config.yaml"
    assert 'slurm_partition: "debug"' in installed.read_text()
    workdir = tmp_path / "work"
    write_config(workdir, config(weights_root, ["widget"]))
    result = snakemake(workdir, "results/metrics/patchcore/synthetic/widget.parquet",
                       slurm=True, profile="slurm", env={"XDG_CONFIG_HOME": str(config_home)})
    assert re.search(r"submitted with SLURM jobid \d+", result.stdout + result.stderr)
    assert (workdir / "results/metrics/patchcore/synthetic/widget.parquet").exists()
