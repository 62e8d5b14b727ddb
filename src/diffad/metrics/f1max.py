"""Best F1 score over all thresholds (F1max), for image scores and for pixel maps.

``F1 = 2 P R / (P + R) = 2 TP / (TP + FP + n_pos)``, maximised over every threshold
of the precision-recall curve.

Algorithm:

1. Rank counts (:mod:`diffad.metrics._ranking`): for each distinct positive score
   ``u``, the positives at ``u`` and the negatives at or above ``u``.
2. Only these thresholds can hold the maximum: lowering the threshold from ``u`` to
   just above the next positive score adds negatives only, which lowers F1.
3. ``TP(u) = cumulative pos``, ``F1(u) = 2 TP(u) / (TP(u) + neg_ge(u) + n_pos)``.
4. ``F1max = max_u F1(u)``.

The same function serves images (``i_f1max``) and flattened pixels (``p_f1max``).

Example:
    >>> image_f1max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.8
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from diffad.metrics._checks import check_labels_scores, check_masks_maps, require_two_classes
from diffad.metrics._ranking import RankCounts, flat_rank_counts, pixel_rank_counts


def f1_max(labels: ArrayLike, scores: ArrayLike) -> float:
    """Best F1 over all thresholds of a 1-D problem (image level: ``i_f1max``).

    Args:
        labels: (N,) 0/1 or bool, 1 = positive; both classes must occur.
        scores: (N,) real scores, higher = more likely positive.

    Returns:
        The best F1 in [0, 1].
    """
    labels, scores = check_labels_scores(labels, scores)
    counts = flat_rank_counts(labels, scores)
    require_two_classes(counts.n_pos, counts.n_neg, "labels", "f1_max")
    return f1max_from_counts(counts)


# Image level is the plain 1-D case; the name pairs it with pixel_f1max.
image_f1max = f1_max


def pixel_f1max(masks: ArrayLike, maps: ArrayLike) -> float:
    """Best F1 over all thresholds of all pixels of the split (``p_f1max``).

    Args:
        masks: (N, H, W) bool or 0/1 ground truth; normal images are all 0.
        maps: (N, H, W) real anomaly maps, any float dtype (float16 included).

    Returns:
        The best F1 in [0, 1].
    """
    masks, maps = check_masks_maps(masks, maps)
    counts = pixel_rank_counts(masks, maps)
    require_two_classes(counts.n_pos, counts.n_neg, "masks", "pixel_f1max")
    return f1max_from_counts(counts)


def f1max_from_counts(counts: RankCounts) -> float:
    """F1max from rank counts holding both classes (steps 2-4 of the module docstring)."""
    tp = np.cumsum(counts.pos)
    return float(np.max(2.0 * tp / (tp + counts.neg_ge + counts.n_pos)))
