"""The one sort-and-count pass that every curve metric of this package is built on.

AUROC, AP, F1max and AUPRO are all functions of the operating points of a score
threshold. Between two consecutive distinct scores of *positives*, lowering the
threshold only adds negatives: the ROC and PRO curves move horizontally there,
and precision, recall and F1 are dominated by the operating point just above. So
the curves are known exactly from, at each distinct positive score ``u``:

- how many positives score exactly ``u`` (and their summed weight, for PRO),
- how many negatives score ``>= u`` and ``> u`` (the two differ by the ties,
  which enter the curve together with the positives they tie with).

That needs only the positives sorted (few) and the cumulative distribution of
all scores queried at ``u``, which is how it stays lean on a whole split:

1. Gather the positives' scores (and weights) chunk by chunk, checking mask values.
2. Build the distribution of all scores: a 65,536-bin histogram of the bit patterns
   for float16 maps (one linear pass, no sort, no copy), a sorted copy otherwise.
3. Query it at the distinct positive scores ``u`` for counts ``< u`` and ``<= u``;
   subtracting the positives' own counts leaves the negatives' counts.

Example:
    >>> import numpy as np
    >>> c = flat_rank_counts(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.4, 0.4]))
    >>> c.thresholds.tolist(), c.pos.tolist(), c.neg_ge.tolist(), c.neg_gt.tolist()
    ([0.9, 0.4], [1, 1], [0, 1], [0, 0])
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffad.metrics._checks import as_binary, require_finite

# Pixels per chunk when walking a split: bounds the temporaries (the bool mask,
# bincount's intp copy) to a few tens of MB whatever the split size.
CHUNK_PIXELS = 1 << 22


@dataclass(frozen=True)
class RankCounts:
    """Counts at each distinct score of a positive, highest score first.

    Attributes:
        thresholds: the distinct positive scores, descending, as float64.
        pos: positives scoring exactly each threshold.
        pos_weight: summed weight of those positives (equal to ``pos`` when unweighted).
        neg_ge: negatives scoring at or above each threshold.
        neg_gt: negatives scoring strictly above each threshold.
        n_pos: number of positives.
        n_neg: number of negatives.
    """

    thresholds: np.ndarray
    pos: np.ndarray
    pos_weight: np.ndarray
    neg_ge: np.ndarray
    neg_gt: np.ndarray
    n_pos: int
    n_neg: int


@dataclass(frozen=True)
class _Distribution:
    """Sorted distinct-or-repeated values with cumulative counts, queried by threshold."""

    values: np.ndarray
    # cumulative[i] = number of scores among values[:i]; None when each entry of
    # ``values`` is one score (a plain sorted copy), so that the index is the count.
    cumulative: np.ndarray | None

    def count_below(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Numbers of scores ``< t`` and ``<= t`` for each ``t`` in ``thresholds``."""
        query = thresholds.astype(self.values.dtype, copy=False)
        lt = np.searchsorted(self.values, query, side="left")
        le = np.searchsorted(self.values, query, side="right")
        if self.cumulative is not None:
            lt, le = self.cumulative[lt], self.cumulative[le]
        return lt.astype(np.int64), le.astype(np.int64)


def flat_rank_counts(labels: np.ndarray, scores: np.ndarray, name: str = "scores") -> RankCounts:
    """Rank counts of a 1-D problem (one score per image).

    Args:
        labels: bool or 0/1 vector, already checked by the caller.
        scores: real vector of the same length.
        name: argument name used in the message on non-finite scores.
    """
    labels = labels.astype(bool, copy=False)
    return _assemble(scores[labels], None, lambda: _sorted_distribution(scores, name))


def pixel_rank_counts(
    masks: np.ndarray,
    maps: np.ndarray,
    positive_weights: Callable[[np.ndarray], np.ndarray] | None = None,
) -> RankCounts:
    """Rank counts of all pixels of a split, walking it in chunks of images.

    Args:
        masks: (N, H, W) bool or 0/1 ground truth; values are checked here.
        maps: (N, H, W) real anomaly maps, same shape (checked by the caller).
        positive_weights: optional function of one (H, W) bool mask returning one
            weight per positive pixel in C order (AUPRO's 1 / region size).
    """
    n, h, w = masks.shape
    per_chunk = max(1, CHUNK_PIXELS // max(1, h * w))
    # float16 is how the pipeline stores maps: counting its 65,536 bit patterns takes
    # ~0.6 s and no copy on 141 M pixels, where numpy needs ~10 s to sort them.
    histogram = np.zeros(1 << 16, dtype=np.int64) if maps.dtype == np.float16 else None
    pos_parts: list[np.ndarray] = []
    weight_parts: list[np.ndarray] = []
    for start in range(0, n, per_chunk):
        mask = as_binary(masks[start : start + per_chunk], "masks", offset=start)
        chunk = maps[start : start + per_chunk]
        if histogram is not None:
            histogram += np.bincount(chunk.view(np.uint16).ravel(), minlength=1 << 16)
        if not mask.any():
            continue
        pos_parts.append(chunk[mask])
        if positive_weights is not None:
            weight_parts.extend(positive_weights(m) for m in mask if m.any())
    pos = np.concatenate(pos_parts) if pos_parts else np.empty(0, dtype=maps.dtype)
    pos_parts.clear()
    weights = None
    if positive_weights is not None:
        weights = np.concatenate(weight_parts) if weight_parts else np.empty(0)
    if histogram is not None:
        return _assemble(pos, weights, lambda: _histogram_distribution(histogram, "maps"))
    return _assemble(pos, weights, lambda: _sorted_distribution(maps, "maps"))


def _assemble(
    pos: np.ndarray,
    weights: np.ndarray | None,
    distribution: Callable[[], _Distribution],
) -> RankCounts:
    """Combine the positives with the distribution of all scores, built by ``distribution``.

    The distribution is built only after the positives are reduced to their distinct
    values, so that its (possibly split-sized) sorted copy never coexists with the
    temporaries of that reduction.
    """
    # float16 sorts slowly in numpy; float32 holds every float16 value exactly.
    key = pos.astype(np.float32) if pos.dtype == np.float16 else pos
    if weights is None:
        thresholds, counts = np.unique(key, return_counts=True)
        weight_sums = counts.astype(np.float64)
    else:
        thresholds, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        weight_sums = np.bincount(inverse.ravel(), weights=weights, minlength=thresholds.size)
        del inverse
    del key
    everything = distribution()
    n_total = int(everything.values.size if everything.cumulative is None
                  else everything.cumulative[-1])
    all_lt, all_le = everything.count_below(thresholds)
    del everything
    pos_le = np.cumsum(counts, dtype=np.int64)
    pos_lt = pos_le - counts
    n_pos = int(pos.size)
    n_neg = n_total - n_pos
    return RankCounts(
        thresholds=thresholds[::-1].astype(np.float64),
        pos=counts[::-1].astype(np.int64),
        pos_weight=weight_sums[::-1],
        neg_ge=(n_neg - (all_lt - pos_lt))[::-1],
        neg_gt=(n_neg - (all_le - pos_le))[::-1],
        n_pos=n_pos,
        n_neg=n_neg,
    )


def _sorted_distribution(scores: np.ndarray, name: str) -> _Distribution:
    ordered = np.sort(scores, axis=None)
    # NaN sorts last and -inf first, so the two ends tell whether all are finite.
    if ordered.size and not (np.isfinite(ordered[0]) and np.isfinite(ordered[-1])):
        require_finite(int(np.count_nonzero(~np.isfinite(ordered))), ordered.size, name)
    return _Distribution(ordered, None)


def _histogram_distribution(histogram: np.ndarray, name: str) -> _Distribution:
    values, order, finite = _float16_table()
    require_finite(int(histogram[~finite].sum()), int(histogram.sum()), name)
    counts = histogram[order]
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    return _Distribution(values, cumulative)


@functools.cache
def _float16_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite float16 values ascending, the bit patterns in that order, and a finite flag.

    +0 and -0 are two bit patterns of one value; they stay two equal entries, which
    ``searchsorted`` counts together.
    """
    all_values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    all_values = all_values.astype(np.float64)
    finite = np.isfinite(all_values)
    patterns = np.flatnonzero(finite)
    order = patterns[np.argsort(all_values[patterns], kind="stable")]
    return all_values[order], order, finite
