"""Timing shared by the benchmarks: seconds per call after a warm-up, CUDA synchronised."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from diffad.device import synchronize


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean seconds of ``repeats`` calls of ``fn``, after one untimed warm-up call."""
    fn()  # warm-up: lazy initialisation and allocator growth are not the cost measured
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats
