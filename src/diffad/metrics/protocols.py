"""Named evaluation protocols: our exact metrics, or the rules of a paper's own code.

A gap between our number and a paper's is partly method and partly protocol: the
papers' evaluation code flips AUROCs, thresholds on coarse grids or bins scores
in histograms. :func:`evaluate_protocol` computes the seven metrics of
:func:`~diffad.metrics.summary.compute_all` under one named protocol, so that a
table can show both. The rules were read in the authors' repositories (paths
below; docs/evaluation_protocols.md has the full comparison); this module is our
own implementation of them, numpy/scipy only, walking a split in chunks.

Protocols (``PROTOCOLS``):

- ``unified``: :func:`compute_all` as it is (exact metrics, AUROC never flipped).
- ``diad``: DiAD (github lewandofskee/DiAD, ``utils/eval_helper.py``; VLMDiff,
  github giddyyupp/VLMDiff, uses the same file):

  1. ``i_auroc`` and ``p_auroc``: the exact AUROC (sklearn ``roc_curve`` + ``auc``
     in ``EvalImage.eval_auc`` / ``EvalPerPixelAUC.eval_auc``), replaced by
     ``1 - AUROC`` when below 0.5.
  2. ``i_ap``, ``p_ap`` (sklearn ``average_precision_score``) and ``i_f1max``,
     ``p_f1max`` (max of ``2PR / (P + R)`` over sklearn's ``precision_recall_curve``,
     ``EvalImageF1`` / ``EvalPerPixelF1``): exact, never flipped, as ours.
  3. ``aupro``: :func:`diad_aupro` (their ``compute_pro``).

- ``inversionad``: InversionAD (github SkyShunsuke/InversionAD, ``src/evaluate.py``,
  ``evaluate_inv``):

  1. ``i_auroc``, ``i_ap``, ``p_ap``: sklearn ``roc_auc_score`` and
     ``average_precision_score``: exact, as ours (AUROC not flipped).
  2. ``i_f1max``, ``p_f1max``: :func:`histogram_f1max` / :func:`pixel_histogram_f1max`
     (their ``f1_max_gpu_hist`` called with ``n_bins=1000``).
  3. ``p_auroc``, ``aupro``: :func:`adeval_pixel_metrics`, the binned curves of the
     ADEval package (github winggan/adeval, ``adeval/iterative_cuda.py`` and
     ``adeval/cuda_mem_effic.py``; their README clones it into ``src/adeval``) that
     ``evaluate_inv`` builds with ``EvalAccumulatorCuda(score_min, score_max,
     anomap_min, anomap_max)`` and its default 1000 strips.

DiAD's AUPRO (:func:`diad_aupro`):

1. ``lo``, ``hi`` = min and max of all maps of the split (one category; their maps
   are float64, so is our arithmetic). No map is normalised: a uniform grid on
   ``[lo, hi)`` is the same as a uniform grid on the split's min-max normalised maps.
2. Thresholds ``numpy.arange(lo, hi, (hi - lo) / 200)``: 200 values ``lo + k delta``
   (``arange`` may make it 201 through rounding, as theirs); a pixel is positive
   when its score is strictly greater than the threshold.
3. ``PRO(t)``: mean over the split's regions (8-connected, per image) of the
   fraction of the region above ``t``; ``FPR(t)``: negatives above ``t`` / negatives.
   Counted in one chunked pass: ``searchsorted`` gives each pixel the number of
   thresholds below it, ``bincount`` (weighted by ``1 / region size`` for positives)
   and a reversed cumulative sum give the counts above every threshold.
4. Keep the points with ``FPR < 0.3`` (strict); divide their FPRs by the largest
   kept FPR; trapezoid area over them (no (0, 0) point, no interpolation at 0.3).
   NaN where their code has no number: constant maps, fewer than two kept points,
   or a largest kept FPR of 0.

Histogram F1max (:func:`histogram_f1max`, :func:`pixel_histogram_f1max`):

1. In float32, as their tensors: ``s' = (s - min) / (max - min + 1e-8)`` over the
   split, clamped to ``[0, 1 - 1e-8]`` (which is 1.0 in float32).
2. Bin ``b = trunc(999 s')`` (``n_bins = 1000`` indexes 0..999): 999 bins of width
   ``(max - min) / 999``; bin 999 holds only scores whose ``s'`` rounds to 1: the max
   when ``max - min >= 0.25`` (the 1e-8 is then lost in float32), none below.
3. For each ``k`` in 0..999, predict positive when ``b >= k`` (a score on a bin edge
   counts as positive); ``F1 = 2 TP / (2 TP + FP + FN)``; return the maximum.
   (They add 1e-8 to the denominator and hold the counts in float32: below 1e-6.)

ADEval's binned pixel AUROC and AUPRO (:func:`adeval_pixel_metrics`):

1. ``lo``, ``hi`` = min and max of the split's maps, float32. Each pixel goes to
   ``torch.histc``'s bin ``trunc(((x - lo) * 1000) / (hi - lo))`` in float32 (1000
   when ``x = hi`` is moved to 999; PyTorch ``aten/src/ATen/native/cuda/SummaryOps.cu``,
   ``getBin``), stored at index ``bin + 1`` of 1002 cells (``_histogram_bins`` in
   ``adeval/cuda_mem_effic.py``); cell 1001 counts ``x >= hi`` again, so pixels at
   the maximum count twice, as theirs.
2. Per cell: positive and negative counts, and positives weighted by
   ``1 / region size`` (8-connected regions, per image).
3. 1001 operating points ``j = 0..1000``: predicted positive = cells ``> j``, giving
   ``(FPR_j, TPR_j)`` and ``(FPR_j, PRO_j)``; from (1, 1) at ``j = 0`` down to the
   cell of the maximum; no (0, 0) point is added.
4. ``p_auroc``: trapezoid area under all points. ``aupro``: trapezoid area for
   ``FPR <= 0.3``, the last segment interpolated linearly at 0.3, divided by 0.3
   (``EvalAccumulator._auroc`` / ``_aupro`` in ``adeval/iterative.py``).
   NaN for constant maps (their accumulator asserts ``min < max``).

Example:
    >>> labels, scores = [0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]
    >>> evaluate_protocol("unified", labels, scores)["i_auroc"]
    0.0
    >>> evaluate_protocol("diad", labels, scores)["i_auroc"]
    1.0
    >>> histogram_f1max([0, 0, 1, 1], [0.0, 0.5, 0.5004, 1.0])  # exact F1max is 1
    0.8
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike

from diffad.metrics import _ranking
from diffad.metrics._checks import (
    as_binary,
    check_labels_scores,
    check_masks_maps,
    require_finite,
    require_two_classes,
)
from diffad.metrics.aupro import _area_up_to, check_fpr_limit, region_weights
from diffad.metrics.summary import compute_all

PROTOCOLS: tuple[str, ...] = ("unified", "diad", "inversionad")

# DiAD's compute_pro(num_th=200) and its FPR cut.
DIAD_THRESHOLDS = 200
# InversionAD calls f1_max_gpu_hist(..., n_bins=1000).
INVERSIONAD_F1_BINS = 1000
# ADEval's EvalAccumulator.DEFAULT_NSTRIPS, which InversionAD keeps.
ADEVAL_STRIPS = 1000
# Their 1e-8 in the min-max normalisation of f1_max_gpu_hist, as float32.
_F1_EPS = np.float32(1e-8)


def evaluate_protocol(
    protocol: str,
    labels: ArrayLike,
    scores: ArrayLike,
    masks: ArrayLike | None = None,
    maps: ArrayLike | None = None,
) -> dict[str, float]:
    """The seven metrics of one test split under a named protocol.

    Args:
        protocol: one of ``PROTOCOLS``.
        labels: (N,) 0/1 or bool image labels, 1 = anomalous; both classes must occur.
        scores: (N,) real image scores.
        masks: (N, H, W) bool or 0/1 ground truth, or None for a dataset without masks.
        maps: (N, H, W) real anomaly maps (any float dtype), given exactly when masks are.

    Returns:
        The keys of :func:`compute_all` (``i_auroc, i_ap, i_f1max, p_auroc, p_ap,
        p_f1max, aupro``), in its order; pixel metrics NaN where it gives NaN, and a
        protocol's metric NaN where the authors' code has no number (see above).

    Raises:
        ValueError: on an unknown protocol, or on input :func:`compute_all` rejects.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown evaluation protocol {protocol!r}; known protocols: {', '.join(PROTOCOLS)}"
        )
    # compute_all checks every input and gives the exact metrics each protocol keeps.
    result = compute_all(labels, scores, masks, maps)
    if protocol == "unified":
        return result
    has_pixels = not np.isnan(result["p_auroc"])
    if protocol == "diad":
        result["i_auroc"] = _flip_below_half(result["i_auroc"])
        if has_pixels:
            result["p_auroc"] = _flip_below_half(result["p_auroc"])
            result["aupro"] = diad_aupro(masks, maps)
        return result
    # inversionad
    result["i_f1max"] = histogram_f1max(labels, scores)
    if has_pixels:
        result["p_f1max"] = pixel_histogram_f1max(masks, maps)
        result["p_auroc"], result["aupro"] = adeval_pixel_metrics(masks, maps)
    return result


# --- DiAD ----------------------------------------------------------------------


def diad_aupro(
    masks: ArrayLike,
    maps: ArrayLike,
    num_thresholds: int = DIAD_THRESHOLDS,
    fpr_limit: float = 0.3,
) -> float:
    """AUPRO as DiAD's ``compute_pro`` measures it (see the module docstring).

    Args:
        masks: (N, H, W) bool or 0/1 ground truth of one split.
        maps: (N, H, W) real anomaly maps, any float dtype.
        num_thresholds: size of the uniform threshold grid (theirs: 200).
        fpr_limit: points with FPR strictly below it are kept (theirs: 0.3).

    Returns:
        Their normalised area, or NaN where their code yields no number.
    """
    check_fpr_limit(fpr_limit)
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be at least 1; got {num_thresholds!r}")
    masks, maps = check_masks_maps(masks, maps)
    lo, hi = _finite_range(maps)
    if not hi > lo:
        return float("nan")
    thresholds = np.arange(lo, hi, (hi - lo) / num_thresholds)
    bins = thresholds.size + 1
    neg_hist = np.zeros(bins, dtype=np.int64)
    pos_hist = np.zeros(bins, dtype=np.float64)
    n_pos = 0
    for mask, chunk, weights in _walk(masks, maps, with_weights=True):
        # number of thresholds strictly below each score: above t_k  <=>  k < idx
        idx = np.searchsorted(thresholds, chunk.astype(np.float64), side="left")
        neg_hist += np.bincount(idx[~mask], minlength=bins)
        pos_hist += np.bincount(idx[mask], weights=weights, minlength=bins)
        n_pos += int(np.count_nonzero(mask))
    n_neg = int(neg_hist.sum())
    require_two_classes(n_pos, n_neg, "masks", "diad_aupro")
    fpr = _count_above(neg_hist) / n_neg
    pro = _count_above(pos_hist) / pos_hist.sum()  # weights sum to the number of regions
    keep = fpr < fpr_limit
    if np.count_nonzero(keep) < 2 or fpr[keep].max() == 0:
        return float("nan")
    x = fpr[keep] / fpr[keep].max()
    # thresholds ascend, so FPR descends: reverse for an ascending trapezoid.
    return _trapezoid(x[::-1], pro[keep][::-1])


# --- InversionAD: histogram F1max ----------------------------------------------


def histogram_f1max(
    labels: ArrayLike, scores: ArrayLike, n_bins: int = INVERSIONAD_F1_BINS
) -> float:
    """F1max from a histogram of min-max normalised float32 scores (image level).

    Args:
        labels: (N,) 0/1 or bool, 1 = positive; both classes must occur.
        scores: (N,) real scores; binned in float32, as InversionAD's tensors.
        n_bins: theirs is 1000 (bins 0..999, multiplier 999).

    Returns:
        The best F1 over the ``n_bins`` bin thresholds.
    """
    _check_bins(n_bins)
    labels, scores = check_labels_scores(labels, scores)
    values = scores.astype(np.float32)
    lo, hi = _finite_range(values)
    b = _f1_bins(values, np.float32(lo), np.float32(hi), n_bins)
    pos = np.bincount(b[labels], minlength=n_bins)
    neg = np.bincount(b[~labels], minlength=n_bins)
    require_two_classes(int(pos.sum()), int(neg.sum()), "labels", "histogram_f1max")
    return _f1max_from_bins(pos, neg)


def pixel_histogram_f1max(
    masks: ArrayLike, maps: ArrayLike, n_bins: int = INVERSIONAD_F1_BINS
) -> float:
    """F1max from a histogram of all pixels of the split (as :func:`histogram_f1max`).

    Args:
        masks: (N, H, W) bool or 0/1 ground truth.
        maps: (N, H, W) real anomaly maps; binned in float32.
        n_bins: theirs is 1000.
    """
    _check_bins(n_bins)
    masks, maps = check_masks_maps(masks, maps)
    lo, hi = _finite_range(maps)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    pos = np.zeros(n_bins, dtype=np.int64)
    neg = np.zeros(n_bins, dtype=np.int64)
    for mask, chunk, _ in _walk(masks, maps):
        b = _f1_bins(chunk.astype(np.float32), lo32, hi32, n_bins)
        pos += np.bincount(b[mask], minlength=n_bins)
        neg += np.bincount(b[~mask], minlength=n_bins)
    require_two_classes(int(pos.sum()), int(neg.sum()), "masks", "pixel_histogram_f1max")
    return _f1max_from_bins(pos, neg)


def _f1_bins(values: np.ndarray, lo: np.float32, hi: np.float32, n_bins: int) -> np.ndarray:
    """Bin of each float32 score (steps 1-2 of the histogram F1max), in float32 arithmetic."""
    norm = (values - lo) / ((hi - lo) + _F1_EPS)
    np.clip(norm, np.float32(0.0), np.float32(1.0 - 1e-8), out=norm)  # upper bound is 1.0f
    norm *= np.float32(n_bins - 1)
    return norm.astype(np.int64)  # truncation, as torch's .long()


def _f1max_from_bins(pos: np.ndarray, neg: np.ndarray) -> float:
    """Max over ``k`` of F1 when bins ``>= k`` are predicted positive (step 3)."""
    tp = _count_at_or_above(pos).astype(np.float64)
    fp = _count_at_or_above(neg).astype(np.float64)
    fn = tp[0] - tp
    return float(np.max(2.0 * tp / (2.0 * tp + fp + fn)))


# --- InversionAD: ADEval's binned pixel AUROC and AUPRO ------------------------


def adeval_pixel_metrics(
    masks: ArrayLike,
    maps: ArrayLike,
    nstrips: int = ADEVAL_STRIPS,
    fpr_limit: float = 0.3,
) -> tuple[float, float]:
    """Pixel AUROC and AUPRO from ADEval's binned curves (see the module docstring).

    Args:
        masks: (N, H, W) bool or 0/1 ground truth of one split.
        maps: (N, H, W) real anomaly maps; binned in float32 between their min and max.
        nstrips: number of histogram bins (ADEval's default, kept by InversionAD: 1000).
        fpr_limit: AUPRO's FPR limit (ADEval: 0.3).

    Returns:
        ``(p_auroc, aupro)``; both NaN for constant maps.
    """
    _check_bins(nstrips)
    check_fpr_limit(fpr_limit)
    masks, maps = check_masks_maps(masks, maps)
    lo, hi = _finite_range(maps)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    binned = bool(hi32 > lo32)  # their accumulator asserts min < max
    cells = nstrips + 2
    pos = np.zeros(cells, dtype=np.int64)
    neg = np.zeros(cells, dtype=np.int64)
    pos_weight = np.zeros(cells, dtype=np.float64)
    n_pos = 0
    for mask, chunk, weights in _walk(masks, maps, with_weights=True):
        n_pos += int(np.count_nonzero(mask))
        if not binned:
            continue
        values = chunk.astype(np.float32)
        cell = _histc_bins(values, lo32, hi32, nstrips) + 1
        pos += np.bincount(cell[mask], minlength=cells)
        neg += np.bincount(cell[~mask], minlength=cells)
        pos_weight += np.bincount(cell[mask], weights=weights, minlength=cells)
        # the overflow cell counts x >= max, already in histc's last bin: the max counts twice
        top = values >= hi32
        pos[-1] += np.count_nonzero(top & mask)
        neg[-1] += np.count_nonzero(top & ~mask)
        pos_weight[-1] += weights[top[mask]].sum()
    require_two_classes(n_pos, masks.size - n_pos, "masks", "adeval_pixel_metrics")
    if not binned:
        return float("nan"), float("nan")
    # operating point j: cells j+1 .. nstrips+1 predicted positive; reversed so FPR ascends
    fpr = (_count_above(neg) / neg.sum())[::-1]
    tpr = (_count_above(pos) / pos.sum())[::-1]
    pro = (_count_above(pos_weight) / pos_weight.sum())[::-1]
    p_auroc = _trapezoid(fpr, tpr)
    if fpr[0] > fpr_limit:
        return p_auroc, float("nan")
    return p_auroc, float(_area_up_to(fpr, pro, fpr_limit) / fpr_limit)


def _histc_bins(values: np.ndarray, lo: np.float32, hi: np.float32, nbins: int) -> np.ndarray:
    """``torch.histc``'s CUDA bin of each float32 value in ``[lo, hi]`` (step 1)."""
    scaled = (values - lo) * np.float32(nbins)
    scaled /= hi - lo
    b = scaled.astype(np.int64)
    b[b == nbins] = nbins - 1
    return b


# --- shared helpers ------------------------------------------------------------


def _flip_below_half(auroc: float) -> float:
    """DiAD's rule: an AUROC below 0.5 is reported as ``1 - AUROC``."""
    return 1.0 - auroc if auroc < 0.5 else auroc


def _walk(
    masks: np.ndarray, maps: np.ndarray, with_weights: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Chunks of images as ``(bool mask, map chunk, positive weights or None)``.

    The weights are :func:`region_weights` of each image, in the C order of
    ``chunk[mask]``. Chunks hold about a quarter of ``_ranking.CHUNK_PIXELS`` pixels:
    the passes here make float64/int64 temporaries of a chunk (about 25 MB in all).
    """
    n, h, w = masks.shape
    per_chunk = max(1, _ranking.CHUNK_PIXELS // 4 // max(1, h * w))
    for start in range(0, n, per_chunk):
        mask = as_binary(masks[start : start + per_chunk], "masks", offset=start)
        weights = None
        if with_weights:
            parts = [region_weights(m) for m in mask if m.any()]
            weights = np.concatenate(parts) if parts else np.empty(0)
        yield mask, maps[start : start + per_chunk], weights


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of ``values`` as floats, raising if any value is NaN or infinite."""
    if values.size == 0:
        raise ValueError("cannot evaluate an empty split")
    lo, hi = float(values.min()), float(values.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        require_finite(bad, int(values.size), "scores" if values.ndim == 1 else "maps")
    return lo, hi


def _count_above(hist: np.ndarray) -> np.ndarray:
    """``out[k] = sum(hist[k + 1:])`` for ``k`` in ``0 .. len(hist) - 2``."""
    cumulative = np.cumsum(hist)
    return cumulative[-1] - cumulative[:-1]


def _count_at_or_above(hist: np.ndarray) -> np.ndarray:
    """``out[k] = sum(hist[k:])``."""
    return np.cumsum(hist[::-1])[::-1]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under (x, y), x non-decreasing."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


def _check_bins(n_bins: int) -> None:
    if int(n_bins) != n_bins or n_bins < 2:
        raise ValueError(f"the number of bins must be an integer of at least 2; got {n_bins!r}")
