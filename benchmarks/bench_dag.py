"""DAG build time and no-op rerun time of a full reproduction config.

By default the latent inversion reproduction (config/experiments/
latent_inversion.yaml: MVTec AD + VisA, 27 categories x 44 variants sharing
27 models and 35 inferences per category). ``--generated`` instead builds a
synthetic config of D datasets x C categories x M PatchCore variants.

1. Dry run with every job pending: the cost of planning a full run.
2. Every output created empty, each stage newer than the one before, then
   ``--touch`` records Snakemake's metadata as a real run would (params,
   code, software env), so that
3. the second dry run checks every rerun trigger and finds nothing to do:
   the cost a user pays on every rerun of a full reproduction.

    python benchmarks/bench_dag.py [--configfile FILE | --generated 5 15 8]

Snakemake runs with ``--quiet`` so that printing thousands of job blocks is
not counted. On a machine where slurm's client is installed but no
controller answers, every snakemake call that loads the SLURM executor
plugin pays its import-time ``scontrol`` wait; the plugin is an extra
(``pip install -e '.[slurm]'``), so a plain install never loads it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Rules in the order their outputs are made: each stage gets a later mtime.
STAGES = ["fetch_weights", "download", "manifest", "captions", "test_captions", "autoencoder",
          "train", "infer", "evaluate", "heatmaps", "caption_samples", "build_tables",
          "metrics_chart"]


def generated_config(n_datasets: int, n_categories: int, n_methods: int) -> dict:
    categories = [f"category{c:02d}" for c in range(n_categories)]
    return {
        "experiment": "bench",
        "reference_dir": str(REPO / "config/reference"),
        "datasets": {f"dataset{d}": {"kind": "folder", "root": f"data/dataset{d}",
                                     "categories": categories} for d in range(n_datasets)},
        "methods": {f"patchcore_{m}": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                                       "coreset_ratio": round(0.01 * (m + 1), 2)}
                    for m in range(n_methods)},
    }


def timed_snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", "1", "--configfile", str(workdir / "config.yaml"), *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return elapsed, result.stdout + result.stderr


def planned_outputs(workdir: Path) -> dict[str, list[str]]:
    """rule -> its jobs' output files, from a verbose dry run."""
    _, out = timed_snakemake(workdir, "--dry-run")
    outputs: dict[str, list[str]] = {}
    rule = None
    for line in out.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"^\s+output: (.*)$", line)):
            outputs.setdefault(rule, []).extend(p.strip() for p in match.group(1).split(","))
    return outputs


def create_outputs(workdir: Path, outputs: dict[str, list[str]]) -> int:
    """Every planned output as an empty file, each stage newer than the one before."""
    now = time.time() - 100 * len(STAGES)
    count = 0
    for rank, rule in enumerate(STAGES):
        for name in outputs.get(rule, []):
            path = Path(name) if Path(name).is_absolute() else workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (now + 100 * rank, now + 100 * rank))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(REPO / "config/experiments/"
                                                       "latent_inversion.yaml"))
    parser.add_argument("--generated", type=int, nargs=3, metavar=("D", "C", "M"),
                        help="a generated config instead: datasets, categories, variants")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.generated:
            config = generated_config(*args.generated)
            label = "generated: {} datasets x {} categories x {} variants".format(
                *args.generated)
        else:
            config = yaml.safe_load(Path(args.configfile).read_text())
            label = os.path.relpath(args.configfile, REPO)
        config.setdefault("runtime", {})["weights_dir"] = str(workdir / "weights")
        # Datasets are not downloaded here: the manifests are created as outputs.
        for dataset in config["datasets"].values():
            dataset["download"] = False
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))

        build_s, out = timed_snakemake(workdir, "--dry-run", "--quiet", "rules")
        jobs = re.search(r"^total\s+(\d+)", out, flags=re.M)
        n_files = create_outputs(workdir, planned_outputs(workdir))
        touch_s, _ = timed_snakemake(workdir, "--touch", "--quiet")
        noop_s, out = timed_snakemake(workdir, "--dry-run")
        if "Nothing to be done" not in out:
            raise SystemExit(f"expected a no-op rerun, got:\n{out[-3000:]}")
        print(f"config: {label}")
        print(f"DAG build (dry run, all jobs pending): {build_s:6.1f} s for "
              f"{jobs.group(1) if jobs else '?'} jobs")
        print(f"marking outputs up to date (--touch): {touch_s:6.1f} s")
        print(f"no-op rerun (all {n_files} outputs up to date): {noop_s:6.1f} s")


if __name__ == "__main__":
    main()
