"""The `--profile slurm` path against a live single-node SLURM cluster: the test run's one
failure-and-rerun.

`.ci/run` starts the cluster (`.ci/slurm-start`, as root) before the tests;
on a machine without one these tests skip with the reason, and with
`CI=true` a skip is a failure. Jobs really go through sbatch: the plugin
prints their SLURM job ids, and each job's log records its SLURM_JOB_ID and,
for GPU rules, the (fake) GPU the scheduler gave it. The run is a copy of
the embedded default's (``default_run``) whose PatchCore models are retrained
on the cluster after one category's image broke.
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
from snakemake_runs import copy_run, mtimes, read_config, write_config

REPO = Path(__file__).resolve().parents[1]
MODELS = [f"results/models/patchcore/synthetic/{c}/metadata.json" for c in ("tiles", "widget")]
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


def snakemake(workdir: Path, *args: str, check: bool = True, profile: str = "slurm",
              env: dict | None = None):
    """``snakemake --profile slurm`` as cluster users type it (``profile``: the installed
    profile's name), with the test cluster's overlay (squeeze the status checks, no account)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--profile", profile, "--workflow-profile", str(REPO / "tests/slurm/profile"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def failed_run(cluster, default_run, tmp_path_factory):
    """PatchCore retrained on the cluster for both categories of a copy of the default,
    one `tiles` train image broken after its manifest: `widget` must finish. The profile
    is installed by name, as `make slurm-profile` does, into a temporary config folder."""
    from diffad.profiles import install_profile

    base = tmp_path_factory.mktemp("slurm")
    config_home = base / "config-home"
    installed = install_profile(account=None, partition="debug", config_home=config_home)
    env = {"XDG_CONFIG_HOME": str(config_home)}
    workdir = copy_run(default_run, base / "run")
    config = read_config(workdir)
    # The test node has 2 CPUs and a fake GPU.
    small = {"cpus_per_task": 1, "runtime": 10}
    config["resources"] = {"train": {**small, "mem_mb": 3000, "gpu": 1},
                           "infer": {**small, "mem_mb": 3000, "gpu": 1},
                           "evaluate": {**small, "mem_mb": 2000}}
    write_config(workdir, config)
    manifest = pd.read_parquet(workdir / "results/data/synthetic/tiles.parquet")
    broken = Path(manifest.loc[manifest["split"] == "train", "image_path"].iloc[0])
    original, stat = broken.read_bytes(), broken.stat()
    broken.write_bytes(original[:100])
    try:
        targets = [f"results/metrics/patchcore/synthetic/{c}.parquet" for c in ("tiles", "widget")]
        result = snakemake(workdir, "--keep-going", "--forcerun", *MODELS, *targets, check=False,
                           env=env)
    finally:
        # The dataset is the test run's shared one: restored, file time included, as the
        # manifests of every other test saw it.
        broken.write_bytes(original)
        os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return workdir, result, broken, installed, env


def test_the_profile_is_installed_by_name(failed_run):
    _, _, _, installed, env = failed_run
    assert installed == Path(env["XDG_CONFIG_HOME"]) / "snakemake/slurm/config.yaml"
    assert 'slurm_partition: "debug"' in installed.read_text()


def test_jobs_go_through_sbatch_and_gpu_rules_get_the_gpu(failed_run):
    workdir, result, _, _, _ = failed_run
    out = result.stdout + result.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    # train x 2 categories, and one grouped score job for widget's model
    assert len(job_ids) >= 3, out[-3000:]
    train_log = (workdir / "logs/train/patchcore/synthetic/widget.log").read_text()
    context = train_log.splitlines()[0]
    assert "rule train: method=patchcore dataset=synthetic category=widget" in context
    assert re.search(r"SLURM_JOB_ID=(\d+)", context).group(1) in job_ids
    assert "CUDA_VISIBLE_DEVICES=0" in context  # the node's fake GPU, given by --gpus
    evaluate_log = (workdir / "logs/evaluate/patchcore/synthetic/widget.log").read_text()
    assert "SLURM_JOB_ID=" in evaluate_log


def test_a_failing_rule_is_reported_while_the_other_category_finishes(failed_run):
    workdir, result, broken, _, _ = failed_run
    out = result.stdout + result.stderr
    assert result.returncode != 0
    # Snakemake names the failed rule and the SLURM job that failed.
    assert "Error in rule train" in out
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", out)
    assert str(broken) in (workdir / "logs/train/patchcore/synthetic/tiles.log").read_text()
    assert not (workdir / "results/models/patchcore/synthetic/tiles/metadata.json").exists()
    assert (workdir / "results/models/patchcore/synthetic/widget/metadata.json").exists()


def test_metrics_equal_those_of_the_local_executor(failed_run, default_run):
    workdir, _, _, _, _ = failed_run
    on_slurm = pd.read_parquet(workdir / "results/metrics/patchcore/synthetic/widget.parquet")
    local = pd.read_parquet(default_run / "results/metrics/patchcore/synthetic/widget.parquet")
    np.testing.assert_allclose(on_slurm[QUALITY].to_numpy(), local[QUALITY].to_numpy(),
                               rtol=1e-6)


def test_rerun_after_the_fix_does_only_the_missing_jobs(failed_run, tmp_path):
    failed, _, _, _, env = failed_run
    # On a copy: the failed run's logs and outputs stay as the other tests read them,
    # whichever order they run in.
    workdir = copy_run(failed, tmp_path / "run")
    widget_before = mtimes(workdir, "widget")
    # The train log said the image changed since the manifest, and how to rebuild it.
    rebuild = "--forcerun results/data/synthetic/tiles.parquet"
    assert rebuild in (workdir / "logs/train/patchcore/synthetic/tiles.log").read_text()
    target = "results/metrics/patchcore/synthetic/tiles.parquet"
    # The target goes first: --forcerun takes every file name after it.
    planned = snakemake(workdir, "--dry-run", target, *rebuild.split(), env=env).stdout
    assert "category=widget" not in planned and "category=tiles" in planned
    snakemake(workdir, target, *rebuild.split(), env=env)
    assert mtimes(workdir, "widget") == widget_before
    assert (workdir / target).exists()
