"""DAG build time and no-op rerun time of a large generated config.

5 datasets x 15 categories x 8 method variants (600 (method, dataset,
category) cells, ~2,400 jobs). Outputs are created empty, oldest stage
first, so the second measurement is Snakemake deciding that nothing is left
to do: the cost a user pays on every rerun of a full reproduction.

    python benchmarks/bench_dag.py [--datasets 5 --categories 15 --methods 8]
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


def make_config(n_datasets: int, n_categories: int, n_methods: int, weights: Path) -> dict:
    categories = [f"category{c:02d}" for c in range(n_categories)]
    return {
        "experiment": "bench",
        "reference_dir": str(REPO / "config/reference"),
        "datasets": {f"dataset{d}": {"kind": "folder", "root": f"data/dataset{d}",
                                     "categories": categories} for d in range(n_datasets)},
        "methods": {f"patchcore_{m}": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                                       "coreset_ratio": round(0.01 * (m + 1), 2)}
                    for m in range(n_methods)},
        "runtime": {"weights_dir": str(weights)},
    }


def create_outputs(workdir: Path, config: dict, weights: Path) -> int:
    """Every output of the DAG as an empty file, each stage newer than the one before."""
    stages = [[weights / "tf_efficientnet_lite0/model.safetensors",
               weights / "tf_efficientnet_lite0/config.json"]]
    stages.append([workdir / f"results/data/{d}/manifest.parquet" for d in config["datasets"]])
    cells = [(m, d, c) for m in config["methods"] for d, cfg in config["datasets"].items()
             for c in cfg["categories"]]
    stages.append([workdir / f"results/models/{m}/{d}/{c}/{f}" for m, d, c in cells
                   for f in ("model.safetensors", "loss.parquet", "metadata.json")])
    stages.append([workdir / f"results/scores/{m}/{d}/{c}{ext}" for m, d, c in cells
                   for ext in (".parquet", ".maps.npy")])
    stages.append([workdir / f"results/metrics/{m}/{d}/{c}.parquet" for m, d, c in cells]
                  + [workdir / f"results/figures/heatmaps/{m}/{d}/{c}.png" for m, d, c in cells])
    stages.append([workdir / f"results/tables/bench.{ext}" for ext in ("md", "csv", "tex")]
                  + [workdir / "results/figures/bench/metrics.png"])
    now = time.time() - 100 * len(stages)
    count = 0
    for i, files in enumerate(stages):
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (now + 100 * i, now + 100 * i))
            count += 1
    return count


def timed_snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", "1", *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--categories", type=int, default=15)
    parser.add_argument("--methods", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir, weights = Path(tmp) / "work", Path(tmp) / "weights"
        config = make_config(args.datasets, args.categories, args.methods, weights)
        (workdir / "config").mkdir(parents=True)
        (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))

        build_s, out = timed_snakemake(workdir, "--dry-run", "--quiet", "rules")
        jobs = re.search(r"^total\s+(\d+)", out, flags=re.M)
        n_files = create_outputs(workdir, config, weights)
        # --touch records Snakemake's metadata (params, code) as a real run would,
        # so the rerun below checks every rerun trigger, not just file times.
        touch_s, _ = timed_snakemake(workdir, "--touch")
        noop_s, out = timed_snakemake(workdir)
        if "Nothing to be done" not in out:
            raise SystemExit(f"expected a no-op rerun, got:\n{out[-3000:]}")
        print(f"config: {args.datasets} datasets x {args.categories} categories x "
              f"{args.methods} method variants")
        print(f"DAG build (dry run, all jobs pending): {build_s:6.1f} s for "
              f"{jobs.group(1) if jobs else '?'} jobs")
        print(f"marking outputs up to date (--touch): {touch_s:6.1f} s")
        print(f"no-op rerun (all {n_files} outputs up to date): {noop_s:6.1f} s")


if __name__ == "__main__":
    main()
