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


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 on GPUs that support it (no loss scaling needed), float16 on older ones,
    None on the CPU, where reduced precision costs accuracy for no speed on the small
    models of the embedded default."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast in :func:`mixed_precision_dtype` on CUDA; a no-op on the CPU."""
    dtype = mixed_precision_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer measures it; nothing to do on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, MB: host RSS (``ru_maxrss``) and, on a GPU, the
    most CUDA memory torch allocated (NaN without one). A job records it at its end."""
    import resource

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    cuda_mb = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
               else float("nan"))
    return {"peak_rss_mb": float(rss_mb), "cuda_peak_mb": float(cuda_mb)}
