"""Device choice: CUDA with mixed precision where it exists, the CPU otherwise."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cpu`` or ``cuda[:i]`` force one."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Float16 autocast on CUDA; a no-op on the CPU, where bfloat16 would cost accuracy
    for no speed on the small models of the embedded default."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer measures it; nothing to do on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
