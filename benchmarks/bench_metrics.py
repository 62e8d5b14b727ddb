"""Time and memory of the pixel metrics on a VisA-sized synthetic test split.

Usage:
    python benchmarks/bench_metrics.py [--n 2162 --size 256 --dtype float16]

The split (default: 2,162 maps of 256x256, the size of VisA's largest test
categories put together, float16 as the pipeline stores maps) has ~40% anomalous
images with blob-shaped masks; maps are smooth noise plus a blurred copy of the
mask, so they correlate with it and hold many ties, like real maps.

The split is written once to a temporary folder; each metric then runs in a fresh
subprocess that loads it fully into memory (np.load, no memory map) and reports:

- wall: wall-clock seconds of the metric call (first call, no tracing);
- traced peak: peak of memory allocated during the call as seen by tracemalloc
  (numpy registers its buffers there), from a second, traced call;
- rss peak: the subprocess's ru_maxrss, and its rise above the resident size
  measured right after loading the inputs (the inputs themselves excluded).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

METRICS = ("aupro", "pixel_auroc", "compute_all")


def make_split(n: int, size: int, dtype: str, seed: int, anomalous: float = 0.4):
    """Masks (n, size, size) bool, maps of ``dtype``, image labels and scores."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < anomalous
    masks = np.zeros((n, size, size), dtype=bool)
    maps = np.empty((n, size, size), dtype=dtype)
    yy, xx = np.mgrid[0:size, 0:size]
    coarse = max(2, size // 16)
    for i in range(n):
        if labels[i]:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0, size, 2)
                ry, rx = rng.uniform(2, size / 6, 2)
                angle = rng.uniform(0, np.pi)
                dy, dx = yy - cy, xx - cx
                u = dy * np.cos(angle) + dx * np.sin(angle)
                v = -dy * np.sin(angle) + dx * np.cos(angle)
                masks[i] |= (u / ry) ** 2 + (v / rx) ** 2 <= 1.0
        noise = ndimage.zoom(rng.random((coarse, coarse)), size / coarse, order=1)[:size, :size]
        signal = ndimage.gaussian_filter(masks[i].astype(np.float32), 3.0) if labels[i] else 0.0
        maps[i] = 0.5 * noise + 0.4 * signal + 0.1 * rng.standard_normal((size, size))
    scores = maps.reshape(n, -1).max(axis=1).astype(np.float64)
    return labels, scores, masks, maps


def run_one(metric: str, data: Path) -> dict:
    """Run one metric on the saved split in this process; return its measurements."""
    import diffad.metrics as m

    labels, scores = np.load(data / "labels.npy"), np.load(data / "scores.npy")
    masks, maps = np.load(data / "masks.npy"), np.load(data / "maps.npy")
    rss_loaded = _current_rss_mib()

    def call():
        if metric == "compute_all":
            return m.compute_all(labels, scores, masks, maps)
        return getattr(m, metric)(masks, maps)

    start = time.perf_counter()
    value = call()
    wall = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    call()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "metric": metric,
        "value": value,
        "wall_s": wall,
        "traced_peak_mib": traced_peak / 2**20,
        "rss_peak_mib": rss_peak,
        "rss_rise_mib": rss_peak - rss_loaded,
    }


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2162, help="number of maps (default 2162)")
    parser.add_argument("--size", type=int, default=256, help="map side in pixels (default 256)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=METRICS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(args.worker, args.data), default=float))
        return

    start = time.perf_counter()
    labels, scores, masks, maps = make_split(args.n, args.size, args.dtype, args.seed)
    made = time.perf_counter() - start
    print(f"split: {args.n} maps of {args.size}x{args.size} {args.dtype} "
          f"= {masks.size / 1e6:.1f} M pixels, {labels.sum()} anomalous images, "
          f"{masks.mean() * 100:.2f}% anomalous pixels (made in {made:.1f} s)")
    print(f"inputs in memory: masks {masks.nbytes / 2**20:.0f} MiB, "
          f"maps {maps.nbytes / 2**20:.0f} MiB")
    print("wall = first call; traced peak = tracemalloc peak of a second call (numpy "
          "buffers);\nrss = subprocess ru_maxrss, and its rise over the loaded inputs")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        for name, array in (("labels", labels), ("scores", scores),
                            ("masks", masks), ("maps", maps)):
            np.save(data / f"{name}.npy", array)
        del labels, scores, masks, maps
        print(f"{'metric':<12} {'wall s':>7} {'traced MiB':>11} {'rss MiB':>8} "
              f"{'rss rise MiB':>13}  value")
        for metric in METRICS:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", metric, "--data", str(data)],
                check=True, capture_output=True, text=True,
            )
            r = json.loads(out.stdout)
            value = r["value"]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v:.4f}" for k, v in value.items() if k[0] != "i")
            else:
                value = f"{value:.6f}"
            print(f"{metric:<12} {r['wall_s']:7.2f} {r['traced_peak_mib']:11.0f} "
                  f"{r['rss_peak_mib']:8.0f} {r['rss_rise_mib']:13.0f}  {value}")


if __name__ == "__main__":
    main()
