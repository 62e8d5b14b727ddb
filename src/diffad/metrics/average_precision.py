"""Average precision (AP), for image scores and for pixel maps.

AP is the step-wise area under the precision-recall curve, exactly as sklearn's
``average_precision_score`` defines it (no interpolation):
``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds, highest first.

Algorithm:

1. Rank counts (:mod:`diffad.metrics._ranking`): for each distinct positive score
   ``u``, the positives at ``u`` and the negatives at or above ``u``.
2. Recall only rises at a positive score, by ``pos(u) / n_pos``; thresholds held by
   negatives alone add nothing to the sum.
3. At ``u``: ``TP(u) = cumulative pos``, ``P(u) = TP(u) / (TP(u) + neg_ge(u))``.
4. ``AP = sum_u pos(u) * P(u) / n_pos``.

Example:
    >>> image_ap([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.8333333333333333
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from diffad.metrics._checks import check_labels_scores, check_masks_maps, require_two_classes
from diffad.metrics._ranking import RankCounts, flat_rank_counts, pixel_rank_counts


def image_ap(labels: ArrayLike, scores: ArrayLike) -> float:
    """Image-level average precision.

    Args:
        labels: (N,) 0/1 or bool, 1 = anomalous image; both classes must occur.
        scores: (N,) real anomaly scores, higher = more anomalous.

    Returns:
        The AP in [0, 1].
    """
    labels, scores = check_labels_scores(labels, scores)
    counts = flat_rank_counts(labels, scores)
    require_two_classes(counts.n_pos, counts.n_neg, "labels", "image_ap")
    return ap_from_counts(counts)


def pixel_ap(masks: ArrayLike, maps: ArrayLike) -> float:
    """Pixel-level average precision over all pixels of the split.

    Args:
        masks: (N, H, W) bool or 0/1 ground truth; normal images are all 0.
        maps: (N, H, W) real anomaly maps, any float dtype (float16 included).

    Returns:
        The AP in [0, 1].
    """
    masks, maps = check_masks_maps(masks, maps)
    counts = pixel_rank_counts(masks, maps)
    require_two_classes(counts.n_pos, counts.n_neg, "masks", "pixel_ap")
    return ap_from_counts(counts)


def ap_from_counts(counts: RankCounts) -> float:
    """AP from rank counts holding both classes (steps 2-4 of the module docstring)."""
    tp = np.cumsum(counts.pos)
    precision = tp / (tp + counts.neg_ge)
    return float(np.dot(counts.pos, precision) / counts.n_pos)
