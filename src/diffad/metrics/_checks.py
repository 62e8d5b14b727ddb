"""Input checks shared by the metrics; every message names the bad value.

Checks that would need a full extra pass over a large pixel array (mask values,
non-finite scores) are done inside the pass that :mod:`diffad.metrics._ranking`
makes anyway, through :func:`as_binary` and :func:`require_finite`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def check_labels_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``labels`` as a bool vector and ``scores`` as a real vector, or raise.

    Args:
        labels: one 0/1 (or bool) label per image, 1 = anomalous.
        scores: one real score per image, higher = more anomalous.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per image); got shape {labels.shape}")
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per image); got shape {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels has {labels.size} entries but scores has {scores.size}; "
            "they must pair one to one"
        )
    check_real(scores, "scores")
    return as_binary(labels, "labels"), scores


def check_masks_maps(masks: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``masks`` and ``maps`` as (N, H, W) arrays of the same shape, or raise.

    Mask values are checked later, chunk by chunk (see :func:`as_binary`), so that a
    memory-mapped split is read once.

    Args:
        masks: (N, H, W) ground truth, bool or 0/1 numbers, 1 = anomalous pixel.
        maps: (N, H, W) real anomaly maps of any float dtype (float16 included).
    """
    masks = np.asarray(masks)
    maps = np.asarray(maps)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W); got shape {masks.shape}")
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W); got shape {maps.shape}")
    if masks.shape != maps.shape:
        raise ValueError(f"masks shape {masks.shape} does not match maps shape {maps.shape}")
    if not (masks.dtype == bool or _is_real(masks.dtype)):
        raise ValueError(f"masks must be bool or 0/1 numbers; got dtype {masks.dtype}")
    check_real(maps, "maps")
    return masks, maps


def check_real(values: np.ndarray, name: str) -> None:
    """Raise unless ``values`` holds integers or floats (not bool, complex or objects)."""
    if not _is_real(values.dtype):
        raise ValueError(f"{name} must hold real numbers; got dtype {values.dtype}")


def as_binary(values: np.ndarray, name: str, offset: int = 0) -> np.ndarray:
    """Return ``values`` as a bool array, raising if any value is not 0 or 1.

    Args:
        values: bool or numeric array.
        name: argument name for the message.
        offset: index of ``values[0]`` in the caller's array along the first axis, so
            that a chunk reports the position in the whole array.
    """
    if values.dtype == bool:
        return values
    bad = (values != 0) & (values != 1)
    if bad.any():
        local = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), values.shape))
        value = values[local].item()
        where = (local[0] + offset, *local[1:])
        hint = " (0/255 image masks must be divided by 255 first)" if value == 255 else ""
        raise ValueError(
            f"{name} must be binary (0/1 or bool); found value {value!r} at index {where}{hint}"
        )
    return values != 0


def require_finite(n_bad: int, n_total: int, name: str) -> None:
    """Raise if ``n_bad`` of the ``n_total`` values of ``name`` are NaN or infinite."""
    if n_bad:
        raise ValueError(
            f"{name} contain {n_bad} NaN or infinite value(s) out of {n_total}; "
            "a ranking metric needs finite scores"
        )


def require_two_classes(n_pos: int, n_neg: int, name: str, metric: str) -> None:
    """Raise if the ground truth ``name`` holds only positives or only negatives.

    Args:
        n_pos: number of positives (anomalous images or pixels).
        n_neg: number of negatives.
        name: the argument holding the ground truth ("labels" or "masks").
        metric: the metric asked for, named in the message.
    """
    if n_pos == 0 or n_neg == 0:
        only = "negatives (0)" if n_pos == 0 else "positives (1)"
        raise ValueError(
            f"{metric}: {name} contain only one class ({n_pos} positive, {n_neg} negative: "
            f"all {only}); the metric is undefined on a split with only one class"
        )


def _is_real(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
