"""Area under the per-region overlap (PRO) curve up to a false-positive rate (AUPRO).

The PRO curve (Bergmann et al., MVTec AD, IJCV 2021) weighs every ground-truth
region equally, however small, which pixel AUROC does not.

Algorithm (exact: every distinct score is a threshold; ties enter together):

1. Regions: connected components of each mask with 8-connectivity
   (``scipy.ndimage.label`` with a 3x3 structure); ``R`` regions in the whole split.
2. ``PRO(t)`` = mean over the ``R`` regions of the fraction of the region's pixels
   scoring ``>= t``: each region pixel weighs ``1 / (R * region size)``.
3. ``FPR(t)`` = negative pixels (mask 0, all images) scoring ``>= t`` / all negatives.
4. The curve starts at (0, 0) (threshold above every score) and ends at (1, 1).
   Between two distinct positive scores only negatives enter, so the curve is
   horizontal there and is fully given by the rank counts of
   :mod:`diffad.metrics._ranking`: at each distinct positive score ``u`` it runs
   horizontally to ``FPR(> u)`` and straight to ``(FPR(>= u), PRO(u))``.
5. Cut the curve at ``fpr_limit``, interpolating PRO linearly at exactly
   ``fpr_limit``; the trapezoid area divided by ``fpr_limit`` lies in [0, 1].

Example:
    >>> import numpy as np
    >>> masks = np.zeros((1, 4, 4), dtype=bool)
    >>> masks[0, 0, 0] = masks[0, 3, 2:] = True           # regions of 1 and 2 pixels
    >>> maps = np.zeros((1, 4, 4))
    >>> maps[0, 0, 0], maps[0, 3, 2], maps[0, 3, 3] = 0.9, 0.8, 0.1
    >>> maps[0, 1, 1] = 0.85                                 # one negative above B
    >>> round(aupro(masks, maps, fpr_limit=0.3), 6)  # 1 - 1/(2 * 13 * 0.3)
    0.871795
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from diffad.metrics._checks import check_masks_maps, require_two_classes
from diffad.metrics._ranking import RankCounts, pixel_rank_counts

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def aupro(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve for FPR in [0, ``fpr_limit``].

    Args:
        masks: (N, H, W) bool or 0/1 ground truth; normal images are all 0.
        maps: (N, H, W) real anomaly maps, any float dtype (float16 included).
        fpr_limit: upper end of the false-positive-rate range, in (0, 1]. Default 0.3,
            the value of the MVTec AD protocol.

    Returns:
        The area divided by ``fpr_limit``, in [0, 1].
    """
    check_fpr_limit(fpr_limit)
    masks, maps = check_masks_maps(masks, maps)
    counts = pixel_rank_counts(masks, maps, positive_weights=region_weights)
    require_two_classes(counts.n_pos, counts.n_neg, "masks", "aupro")
    return aupro_from_counts(counts, fpr_limit)


def check_fpr_limit(fpr_limit: float) -> None:
    """Raise unless ``0 < fpr_limit <= 1``."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must lie in (0, 1]; got {fpr_limit!r}")


def region_weights(mask: np.ndarray) -> np.ndarray:
    """``1 / size of its region`` for each positive pixel of one (H, W) mask, in C order.

    The weights of one region sum to 1, so the weights of a split sum to its
    number of regions ``R`` (step 2 divides by it).
    """
    labels, _ = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel())
    return 1.0 / sizes[labels[mask]]


def aupro_from_counts(counts: RankCounts, fpr_limit: float = 0.3) -> float:
    """AUPRO from rank counts weighted by :func:`region_weights` (steps 4-5)."""
    pro = np.minimum(np.cumsum(counts.pos_weight) / counts.pos_weight.sum(), 1.0)
    k = pro.size
    fpr = np.empty(2 * k + 2)
    pro_curve = np.empty(2 * k + 2)
    fpr[0], pro_curve[0] = 0.0, 0.0
    fpr[1:-1:2] = counts.neg_gt / counts.n_neg  # negatives above u enter first...
    pro_curve[1:-1:2] = np.concatenate([[0.0], pro[:-1]])
    fpr[2:-1:2] = counts.neg_ge / counts.n_neg  # ...then u's positives with their ties
    pro_curve[2:-1:2] = pro
    fpr[-1], pro_curve[-1] = 1.0, 1.0
    return float(_area_up_to(fpr, pro_curve, fpr_limit) / fpr_limit)


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under (x, y), x non-decreasing from 0, for x in [0, limit]."""
    end = int(np.searchsorted(x, limit, side="right"))  # x[:end] <= limit
    area = float(np.sum(np.diff(x[:end]) * (y[1:end] + y[: end - 1])) / 2.0)
    if end < x.size and x[end - 1] < limit:
        x0, x1, y0, y1 = x[end - 1], x[end], y[end - 1], y[end]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_limit) / 2.0
    return area
