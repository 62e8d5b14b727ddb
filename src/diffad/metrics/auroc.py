"""Area under the ROC curve, for image scores and for pixel maps.

Algorithm (exact, one sort; ties count one half, as in the Mann-Whitney statistic
and in sklearn's ``roc_auc_score``):

1. Rank counts (:mod:`diffad.metrics._ranking`): for each distinct score ``u`` of a
   positive, the positives scoring ``u`` and the negatives scoring ``>= u``, ``> u``.
2. Each positive at ``u`` beats the negatives below it and ties with those at ``u``:
   ``wins(u) = n_neg - (neg_ge(u) + neg_gt(u)) / 2``.
3. ``AUROC = sum_u pos(u) * wins(u) / (n_pos * n_neg)``.

An AUROC below 0.5 is returned as it is (never flipped): it means the scores rank
anomalies *lower* than normal data, which a report must show.

Example:
    >>> import numpy as np
    >>> image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> masks = np.array([[[0, 1], [0, 0]]])
    >>> pixel_auroc(masks, np.array([[[0.1, 0.9], [0.9, 0.2]]], dtype=np.float16))
    0.8333333333333334
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from diffad.metrics._checks import check_labels_scores, check_masks_maps, require_two_classes
from diffad.metrics._ranking import RankCounts, flat_rank_counts, pixel_rank_counts


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Image-level AUROC.

    Args:
        labels: (N,) 0/1 or bool, 1 = anomalous image; both classes must occur.
        scores: (N,) real anomaly scores, higher = more anomalous.

    Returns:
        The AUROC in [0, 1].
    """
    labels, scores = check_labels_scores(labels, scores)
    counts = flat_rank_counts(labels, scores)
    require_two_classes(counts.n_pos, counts.n_neg, "labels", "image_auroc")
    return auroc_from_counts(counts)


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """Pixel-level AUROC over all pixels of the split.

    Args:
        masks: (N, H, W) bool or 0/1 ground truth; normal images are all 0.
        maps: (N, H, W) real anomaly maps, any float dtype (float16 included).

    Returns:
        The AUROC in [0, 1].
    """
    masks, maps = check_masks_maps(masks, maps)
    counts = pixel_rank_counts(masks, maps)
    require_two_classes(counts.n_pos, counts.n_neg, "masks", "pixel_auroc")
    return auroc_from_counts(counts)


def auroc_from_counts(counts: RankCounts) -> float:
    """AUROC from rank counts holding both classes (step 2-3 of the module docstring)."""
    wins = counts.n_neg - 0.5 * (counts.neg_ge + counts.neg_gt)
    return float(np.dot(counts.pos, wins) / (float(counts.n_pos) * float(counts.n_neg)))
