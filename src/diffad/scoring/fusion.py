"""Building blocks of the score tier: normalise, smooth, pool and fuse detectors.

All work on numpy arrays of a whole split, since some normalisations need the
split (min-max over the test images, as papers 001 and DiAD's code do) and
others the train split's statistics (independent of the other test images).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def minmax(values: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Scale by the range of ``values`` themselves to [0, 1], or by ``bounds`` (low, high),
    e.g. the train split's, beyond [0, 1] where ``values`` leave them (0 where flat)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = bounds if bounds is not None else (values.min(), values.max())
    span = high - low
    return (values - low) / span if span > 0 else np.zeros_like(values)


def standardize(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(values - mean) / std`` with the statistics of ``reference`` (e.g. the train split)."""
    reference = np.asarray(reference, dtype=np.float64)
    std = reference.std(ddof=1) if reference.size > 1 else 0.0
    return (np.asarray(values, dtype=np.float64) - reference.mean()) / max(std, 1e-12)


def gaussian_smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth each (H, W) map with a Gaussian of ``sigma`` pixels (0: unchanged).

    The kernel has radius ``int(4 sigma + 0.5)`` and mirror padding
    (d c b | a b c d), as torchvision's ``gaussian_blur`` and anomalib's
    PatchCore; PatchCore's reference code pads with scipy's ``reflect``
    (d c b a | a b c d), which differs in the border pixels only.
    """
    if sigma <= 0:
        return np.asarray(maps, dtype=np.float32)
    from scipy import ndimage  # here: scipy's import costs every DAG build 0.3 s

    radius = int(4 * sigma + 0.5)
    return ndimage.gaussian_filter(np.asarray(maps, dtype=np.float32), sigma=(0, sigma, sigma),
                                   mode="mirror", truncate=radius / sigma)


def top_k_mean(maps: np.ndarray, k: int) -> np.ndarray:
    """Image scores: the mean of each map's ``k`` largest pixels (``k`` = 1: the maximum)."""
    flat = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
    k = max(1, min(k, flat.shape[1]))
    if k == 1:
        return flat.max(axis=1).astype(np.float64)
    return np.partition(flat, -k, axis=1)[:, -k:].mean(axis=1, dtype=np.float64)


def avg_pool_max(maps: np.ndarray, kernel: int = 8, times: int = 8) -> np.ndarray:
    """Image scores as DiAD's and VLMDiff's code pools a map: ``times`` average poolings
    over ``kernel`` x ``kernel`` windows, stride 1, no padding (each shrinks a side by
    ``kernel - 1``: 256 -> 200 with the defaults), then the maximum. Poolings that would
    leave less than one window are skipped (small maps of the embedded default)."""
    x = np.asarray(maps, dtype=np.float64)
    for _ in range(times):
        if min(x.shape[1:]) < kernel:
            break
        # Window sums from the summed-area table: O(pixels) whatever the kernel.
        table = np.pad(x, ((0, 0), (1, 0), (1, 0))).cumsum(axis=1).cumsum(axis=2)
        k = kernel
        x = (table[:, k:, k:] - table[:, :-k, k:] - table[:, k:, :-k]
             + table[:, :-k, :-k]) / (k * k)
    return x.reshape(len(x), -1).max(axis=1)


def weighted_sum(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """``sum_d w_d * part_d`` over the detectors with a non-zero weight."""
    used = [(np.asarray(parts[name]), w) for name, w in weights.items() if w]
    if not used:
        raise ValueError(f"every detector weight is zero: {dict(weights)}")
    total = np.zeros_like(used[0][0], dtype=np.float64)
    for part, weight in used:
        total = total + weight * part
    return total


__all__ = ["avg_pool_max", "gaussian_smooth", "minmax", "standardize", "top_k_mean", "weighted_sum"]
