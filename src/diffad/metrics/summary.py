"""Every metric of one test split in one call, as the evaluate stage reports them.

Algorithm:

1. Image level: one rank-count pass over the image scores gives ``i_auroc``,
   ``i_ap`` and ``i_f1max``.
2. Pixel level, when masks exist: one rank-count pass over all pixels of the split,
   weighted for AUPRO (:func:`diffad.metrics.aupro.region_weights`), gives
   ``p_auroc``, ``p_ap``, ``p_f1max`` and ``aupro`` together. Normal images take
   part with all-negative masks.
3. Pixel metrics are NaN (reported as unavailable, never 0) when the dataset has no
   masks, or when the split has no anomalous pixel at all.

Example:
    >>> import numpy as np
    >>> m = compute_all([0, 1], [0.2, 0.7])
    >>> m["i_auroc"], bool(np.isnan(m["aupro"]))
    (1.0, True)
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from diffad.metrics._checks import (
    check_labels_scores,
    check_masks_maps,
    require_two_classes,
)
from diffad.metrics._ranking import flat_rank_counts, pixel_rank_counts
from diffad.metrics.aupro import aupro_from_counts, check_fpr_limit, region_weights
from diffad.metrics.auroc import auroc_from_counts
from diffad.metrics.average_precision import ap_from_counts
from diffad.metrics.f1max import f1max_from_counts

IMAGE_KEYS = ("i_auroc", "i_ap", "i_f1max")
PIXEL_KEYS = ("p_auroc", "p_ap", "p_f1max", "aupro")


def compute_all(
    labels: ArrayLike,
    scores: ArrayLike,
    masks: ArrayLike | None = None,
    maps: ArrayLike | None = None,
    *,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """Image and pixel metrics of one test split.

    Args:
        labels: (N,) 0/1 or bool image labels, 1 = anomalous; both classes must occur.
        scores: (N,) real image scores.
        masks: (N, H, W) bool or 0/1 ground truth, or None for a dataset without masks.
        maps: (N, H, W) real anomaly maps (any float dtype), given exactly when masks are.
        fpr_limit: AUPRO's false-positive-rate limit, in (0, 1]. Default 0.3.

    Returns:
        ``{i_auroc, i_ap, i_f1max, p_auroc, p_ap, p_f1max, aupro}`` as floats; the
        pixel ones are NaN when masks is None or no pixel is anomalous.

    Raises:
        ValueError: on bad input (see the single metrics), on labels of one class,
            or on masks whose every pixel is anomalous (no negative left to rank).
    """
    check_fpr_limit(fpr_limit)
    labels, scores = check_labels_scores(labels, scores)
    image = flat_rank_counts(labels, scores)
    require_two_classes(image.n_pos, image.n_neg, "labels", "compute_all")
    result = {
        "i_auroc": auroc_from_counts(image),
        "i_ap": ap_from_counts(image),
        "i_f1max": f1max_from_counts(image),
    }
    result.update(dict.fromkeys(PIXEL_KEYS, float("nan")))
    if masks is None and maps is None:
        return result
    if masks is None or maps is None:
        missing = "masks" if masks is None else "maps"
        raise ValueError(f"masks and maps go together; got {missing}=None and the other given")
    masks, maps = check_masks_maps(masks, maps)
    if masks.shape[0] != labels.size:
        raise ValueError(
            f"masks hold {masks.shape[0]} images but labels has {labels.size} entries"
        )
    pixel = pixel_rank_counts(masks, maps, positive_weights=region_weights)
    if pixel.n_pos == 0:
        return result
    require_two_classes(pixel.n_pos, pixel.n_neg, "masks", "compute_all")
    result.update(
        p_auroc=auroc_from_counts(pixel),
        p_ap=ap_from_counts(pixel),
        p_f1max=f1max_from_counts(pixel),
        aupro=aupro_from_counts(pixel, fpr_limit),
    )
    return result
