"""Where and how a job runs: the device, the weights cache, the image size, the seed.

Below both :mod:`diffad.models` and :mod:`diffad.methods`, so that shared
networks (feature extractors) and methods take the same object. None of it
is a hyperparameter: it never enters a model's config or a rerun decision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffad.device import pick_device


@dataclass
class Runtime:
    """Where and how a method runs; not a hyperparameter, so not in the config hash."""

    device: torch.device
    weights_root: Path  #: cache of pretrained weights written by the ``fetch_weights`` rule
    image_size: int
    seed: int = 0
    num_workers: int = 0
    cache_dir: Path | None = None  #: shared cache of derived data (backbone features)
    #: non-finite inference outputs: ``error`` (a real run) or ``record`` (a rehearsal)
    nonfinite: str = "error"


def job_cpus() -> int:
    """The CPUs this process may run on (a SLURM job's allocation, not the node's cores)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def make_runtime(settings: dict[str, Any], image_size: int) -> Runtime:
    """Runtime from the config's ``runtime:`` block and the dataset's image size.

    ``num_workers`` is capped at the job's CPUs less the main process: a config
    written for an 8-CPU node must not fork more loader workers than a 2-CPU job
    (or laptop) can run, where they only contend with the network.
    """
    return Runtime(
        device=pick_device(settings.get("device", "auto")),
        weights_root=Path(settings.get("weights_dir", "resources/weights")),
        image_size=image_size,
        seed=int(settings.get("seed", 0)),
        num_workers=min(int(settings.get("num_workers", 0)), job_cpus() - 1),
        cache_dir=Path(settings["cache_dir"]) if settings.get("cache_dir") else None,
        nonfinite=settings.get("nonfinite", "error"),
    )


__all__ = ["Runtime", "job_cpus", "make_runtime"]
