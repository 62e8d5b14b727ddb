"""Seconds of PatchCore's greedy k-center coreset, new implementation against the old loop.

Usage:
    python benchmarks/bench_coreset.py [--n 163840 --dim 1024 --ratio 0.1 --projection 128
                                        --old-steps 300 --repeat 3]

The default bank is what PatchCore collects from 160 train images at 256 px
(32 x 32 patches of 1,024 dims each): 163,840 random Gaussian rows, 16,384 of
them kept at ratio 0.1, distances on a random projection to 128 dims.

- new: wall-clock seconds of a full ``greedy_coreset`` call (projection included);
- old: the loop ``greedy_coreset`` had before (one pass over the projected bank
  per step), run for ``--old-steps`` steps only; its total is extrapolated as
  projection seconds + k / (steps per second). The old loop's first indices are
  compared with the new selection's.

New and old runs alternate ``--repeat`` times, so both see the same load: on a
shared machine, look at the spread, not one number.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from diffad.methods.patchcore.coreset import greedy_coreset


def old_coreset(features: torch.Tensor, ratio: float, projection_dim: int, seed: int,
                steps: int) -> tuple[torch.Tensor, float, float]:
    """The old loop, stopped after ``steps`` steps: (indices, setup s, steps per s)."""
    start_time = time.perf_counter()
    n, dim = features.shape
    k = max(1, min(n, math.ceil(n * ratio)))
    generator = torch.Generator().manual_seed(seed)
    reduced = features
    if 0 < projection_dim < dim:
        projection = torch.randn(dim, projection_dim, generator=generator)
        reduced = features @ (projection / math.sqrt(projection_dim)).to(features.device)
    start = int(torch.randint(n, (1,), generator=generator))
    steps = min(steps, k)
    selected = torch.empty(steps, dtype=torch.long)
    min_dist = torch.full((n,), float("inf"), device=features.device)
    index = start
    loop_time = time.perf_counter()
    for i in range(steps):
        selected[i] = index
        dist = (reduced - reduced[index]).pow(2).sum(dim=1)
        min_dist = torch.minimum(min_dist, dist)
        index = int(min_dist.argmax())
    end = time.perf_counter()
    return selected, loop_time - start_time, steps / (end - loop_time)


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.1f}, "
            f"min {min(values):.1f}, max {max(values):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=163840, help="rows (default 163840)")
    parser.add_argument("--dim", type=int, default=1024, help="feature size (default 1024)")
    parser.add_argument("--ratio", type=float, default=0.1, help="coreset ratio (default 0.1)")
    parser.add_argument("--projection", type=int, default=128,
                        help="projection dims, 0 for none (default 128)")
    parser.add_argument("--old-steps", type=int, default=300,
                        help="steps of the old loop to time (default 300)")
    parser.add_argument("--repeat", type=int, default=3, help="new/old rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    k = max(1, min(args.n, math.ceil(args.n * args.ratio)))
    print(f"bank: {args.n} x {args.dim} random float32 rows, k = {k}, "
          f"projection {args.projection}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    features = torch.randn(args.n, args.dim,
                           generator=torch.Generator().manual_seed(args.seed))
    new_s, old_s, identical = [], [], True
    for round_ in range(1, args.repeat + 1):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        new = greedy_coreset(features, args.ratio, args.projection, args.seed)
        new_s.append(time.perf_counter() - start)
        old, setup, rate = old_coreset(features, args.ratio, args.projection, args.seed,
                                       args.old_steps)
        old_s.append(setup + k / rate)
        identical &= torch.equal(new[:len(old)], old)
        print(f"round {round_} (load {load:.1f}): new {new_s[-1]:.1f} s | old {rate:.1f} steps/s "
              f"over {len(old)} steps -> {old_s[-1]:.0f} s for {k} (projection {setup:.1f} s) "
              f"| speed-up {old_s[-1] / new_s[-1]:.0f}x | first {len(old)} indices "
              f"{'identical' if torch.equal(new[:len(old)], old) else 'DIFFERENT'}")
    print(f"new seconds: {spread(new_s)}")
    print(f"old seconds (extrapolated): {spread(old_s)}")
    print(f"speed-up per round: {spread([o / n for o, n in zip(old_s, new_s, strict=True)])}; "
          f"median/median {statistics.median(old_s) / statistics.median(new_s):.0f}x; "
          f"first indices {'identical' if identical else 'DIFFERENT'} in every round")


if __name__ == "__main__":
    main()
