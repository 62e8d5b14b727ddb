"""Tests of diffad.metrics.protocols: each paper's rule by hand, against slow references."""

from __future__ import annotations

import doctest
import subprocess
import sys
from itertools import pairwise

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as skimage_label
from sklearn.metrics import auc as sklearn_auc

from diffad.metrics import PROTOCOLS, _ranking, aupro, compute_all, evaluate_protocol
from diffad.metrics import protocols as proto
from diffad.metrics.protocols import (
    adeval_pixel_metrics,
    diad_aupro,
    histogram_f1max,
    pixel_histogram_f1max,
)

EXACT = {"rel": 1e-12, "abs": 1e-12}


# --- helpers -------------------------------------------------------------------


def blob_masks(rng: np.random.Generator, n: int, size: int, normal: int = 2) -> np.ndarray:
    """Random masks of irregular regions (some touching only diagonally); first ``normal`` empty."""
    smooth = ndimage.gaussian_filter(rng.random((n, size, size)), sigma=(0, 1.2, 1.2))
    masks = smooth > np.quantile(smooth, 0.85)
    masks[:normal] = False
    return masks


def noisy_maps(rng: np.random.Generator, masks: np.ndarray, decimals: int | None = None):
    maps = rng.standard_normal(masks.shape) + 1.5 * masks
    return maps if decimals is None else np.round(maps, decimals)


def skimage_regions(masks: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(image index, bool region) for every 8-connected region, labelled by skimage."""
    out = []
    for i, mask in enumerate(masks):
        lab = skimage_label(mask, connectivity=2)
        out += [(i, lab == k) for k in range(1, lab.max() + 1)]
    return out


def reference_diad_aupro(masks: np.ndarray, maps: np.ndarray) -> float:
    """DiAD's rule step by step: one full binarisation of the split per threshold."""
    maps = maps.astype(np.float64)
    lo, hi = maps.min(), maps.max()
    regions = skimage_regions(masks)
    negatives = ~masks.astype(bool)
    fprs, pros = [], []
    for t in np.arange(lo, hi, (hi - lo) / 200):
        above = maps > t
        pros.append(np.mean([above[i][r].mean() for i, r in regions]))
        fprs.append((above & negatives).sum() / negatives.sum())
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < 0.3
    return float(sklearn_auc(fprs[keep] / fprs[keep].max(), pros[keep]))


def reference_histogram_f1max(labels, scores, n_bins: int = 1000) -> float:
    """Bin every score on its own in float32 scalars, then count per threshold bin."""
    scores = [np.float32(s) for s in scores]
    lo, hi = min(scores), max(scores)
    bins = []
    for s in scores:
        norm = (s - lo) / ((hi - lo) + np.float32(1e-8))
        norm = min(max(norm, np.float32(0.0)), np.float32(1.0))  # float32(1 - 1e-8) == 1
        bins.append(int(norm * np.float32(n_bins - 1)))
    best = 0.0
    for k in range(n_bins):
        tp = sum(1 for b, y in zip(bins, labels, strict=True) if b >= k and y)
        fp = sum(1 for b, y in zip(bins, labels, strict=True) if b >= k and not y)
        fn = sum(1 for b, y in zip(bins, labels, strict=True) if b < k and y)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def reference_adeval(masks: np.ndarray, maps: np.ndarray, nstrips: int) -> tuple[float, float]:
    """ADEval's binned ROC / PRO pixel by pixel; the maximum enters two cells."""
    values = maps.astype(np.float32)
    lo, hi = values.min(), values.max()
    weight = np.zeros(masks.shape)
    for i, region in skimage_regions(masks):
        weight[i][region] = 1.0 / region.sum()
    cells = []  # (cell, is_positive, pro weight), one entry per count
    for x, positive, w in zip(values.ravel(), masks.ravel().astype(bool), weight.ravel(),
                              strict=True):
        b = int(((x - lo) * np.float32(nstrips)) / (hi - lo))
        cells.append((min(b, nstrips - 1) + 1, positive, w))
        if x >= hi:
            cells.append((nstrips + 1, positive, w))
    n_pos = sum(1 for _, p, _ in cells if p)
    n_neg = len(cells) - n_pos
    w_pos = sum(w for _, p, w in cells if p)
    points = []  # (fpr, tpr, pro) for j = nstrips .. 0
    for j in range(nstrips, -1, -1):
        tp = sum(1 for c, p, _ in cells if c > j and p)
        fp = sum(1 for c, p, _ in cells if c > j and not p)
        wtp = sum(w for c, p, w in cells if c > j and p)
        points.append((fp / n_neg, tp / n_pos, wtp / w_pos))
    roc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0, _), (x1, y1, _) in pairwise(points))
    area = 0.0
    for (x0, _, y0), (x1, _, y1) in pairwise(points):
        if x0 >= 0.3:
            break
        if x1 > 0.3:
            y1 = y0 + (y1 - y0) * (0.3 - x0) / (x1 - x0)
            x1 = 0.3
        area += (x1 - x0) * (y0 + y1) / 2
    return roc, area / 0.3


# --- protocol names ------------------------------------------------------------


def test_protocol_names_and_unknown_protocol():
    assert PROTOCOLS == ("unified", "diad", "inversionad")
    with pytest.raises(ValueError, match="'ader'; known protocols: unified, diad, inversionad"):
        evaluate_protocol("ader", [0, 1], [0.1, 0.9])


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_unified_is_compute_all(dtype):
    rng = np.random.default_rng(0)
    masks = blob_masks(rng, 8, 20)
    maps = noisy_maps(rng, masks, decimals=2).astype(dtype)
    labels, scores = masks.any(axis=(1, 2)), maps.max(axis=(1, 2)).astype(np.float64)
    assert evaluate_protocol("unified", labels, scores, masks, maps) == compute_all(
        labels, scores, masks, maps
    )
    without_masks = evaluate_protocol("unified", labels, scores)
    expected = compute_all(labels, scores)
    assert list(without_masks) == list(expected)
    for key, value in expected.items():  # NaN pixel metrics: NaN != NaN, compare bits
        assert np.array(without_masks[key]).tobytes() == np.array(value).tobytes()


# --- DiAD ----------------------------------------------------------------------


def test_diad_flips_auroc_below_half_and_nothing_else():
    labels, scores = [0, 0, 1, 1], [0.9, 0.3, 0.4, 0.1]  # AUROC 1/4
    unified = evaluate_protocol("unified", labels, scores)
    diad = evaluate_protocol("diad", labels, scores)
    assert unified["i_auroc"] == 0.25
    assert diad["i_auroc"] == 0.75
    assert diad["i_ap"] == unified["i_ap"] and diad["i_f1max"] == unified["i_f1max"]
    # above one half nothing changes
    assert evaluate_protocol("diad", [0, 1], [0.1, 0.9])["i_auroc"] == 1.0

    masks = np.zeros((2, 2, 2), dtype=bool)
    masks[1, 0, 0] = True
    inverted = 1.0 - masks  # every anomalous pixel scores lowest
    unified = evaluate_protocol("unified", [0, 1], [0.2, 0.8], masks, inverted)
    diad = evaluate_protocol("diad", [0, 1], [0.2, 0.8], masks, inverted)
    assert unified["p_auroc"] == 0.0 and diad["p_auroc"] == 1.0
    assert diad["p_ap"] == unified["p_ap"] < 0.5  # AP and F1max are not flipped
    assert diad["p_f1max"] == unified["p_f1max"]


def _diad_case_stretch():
    # One region of two pixels: a = 1.0 (the max), b = 0.6025. Negatives: c = 0.7025
    # and seven zeros (the min). Grid t_k = 0.005 k, k = 0..199; positive means > t_k.
    #   FPR = 1/8 for k <= 140 (c), 0 above.  PRO = 1 for k <= 120 (b), 1/2 above.
    # All FPR < 0.3 are kept and divided by 1/8: points (1, 1), (1, 1/2), (0, 1/2):
    # area 1/2. Exact curve: (0,0) (0,1/2) [a] (1/8,1/2) [c] (1/8,1) [b]: the area to
    # 0.3 is 1/16 + 0.175 = 0.2375, / 0.3 = 19/24.
    masks = np.zeros((1, 2, 5), dtype=bool)
    masks[0, 0, :2] = True
    maps = np.zeros((1, 2, 5))
    maps[0, 0, 0], maps[0, 0, 1], maps[0, 1, 4] = 1.0, 0.6025, 0.7025
    return masks, maps


def test_diad_aupro_by_hand_stretches_the_kept_fprs():
    masks, maps = _diad_case_stretch()
    assert diad_aupro(masks, maps) == pytest.approx(0.5, **EXACT)
    assert aupro(masks, maps) == pytest.approx(19 / 24, **EXACT)


def test_diad_aupro_by_hand_cuts_fpr_strictly_below_limit_and_joins_grid_neighbours():
    # One region: a = 1.0, b = 0.7013. Negatives (10): c = 0.7012, d = 0.5012 twice,
    # e = 0.2012, six zeros. On the 0.005 grid b and c fall between t_140 and t_141.
    #   k <= 40: FPR 0.4; 41..100: FPR 0.3 (cut: strictly below 0.3 is kept);
    #   101..140: FPR 0.1, PRO 1; k >= 141: FPR 0, PRO 1/2.
    # Kept and divided by 0.1: (1, 1) and (0, 1/2): one diagonal, area 3/4.
    # Exact: b is above c, so PRO reaches 1 at FPR 0: AUPRO 1.
    masks = np.zeros((1, 3, 4), dtype=bool)
    masks[0, 0, :2] = True
    maps = np.zeros((1, 3, 4))
    maps[0, 0, 0], maps[0, 0, 1] = 1.0, 0.7013
    maps[0, 1, 0], maps[0, 1, 1], maps[0, 1, 2], maps[0, 1, 3] = 0.7012, 0.5012, 0.5012, 0.2012
    assert diad_aupro(masks, maps) == pytest.approx(0.75, **EXACT)
    assert aupro(masks, maps) == 1.0


def test_diad_aupro_is_nan_where_their_code_has_no_number():
    masks = np.zeros((1, 3, 4), dtype=bool)
    masks[0, 0, 0] = True
    assert np.isnan(diad_aupro(masks, np.ones((1, 3, 4))))  # constant maps: no grid
    # a perfect map: every kept point has FPR 0, so the division by the largest is 0/0
    assert np.isnan(diad_aupro(masks, masks.astype(float)))
    # with unified the same map is perfect
    assert aupro(masks, masks.astype(float)) == 1.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_diad_aupro_matches_slow_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    masks = blob_masks(rng, 6, 18)
    maps = noisy_maps(rng, masks, decimals=None if seed % 2 else 1).astype(dtype)
    expected = reference_diad_aupro(masks, maps)
    assert diad_aupro(masks, maps) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert diad_aupro(masks, maps) != pytest.approx(aupro(masks, maps), abs=1e-6)


def test_diad_protocol_combines_the_rules():
    rng = np.random.default_rng(9)
    masks = blob_masks(rng, 10, 20)
    maps = -noisy_maps(rng, masks).astype(np.float16)  # inverted: pixel AUROC below 1/2
    labels, scores = masks.any(axis=(1, 2)), -maps.astype(np.float64).mean(axis=(1, 2))
    unified = compute_all(labels, scores, masks, maps)
    diad = evaluate_protocol("diad", labels, scores, masks, maps)
    assert list(diad) == list(unified)
    assert unified["p_auroc"] < 0.5
    assert diad["p_auroc"] == pytest.approx(1.0 - unified["p_auroc"], **EXACT)
    assert diad["i_auroc"] == max(unified["i_auroc"], 1.0 - unified["i_auroc"])
    assert diad["aupro"] == diad_aupro(masks, maps)
    for key in ("i_ap", "i_f1max", "p_ap", "p_f1max"):
        assert diad[key] == unified[key]


# --- InversionAD: histogram F1max ----------------------------------------------


def test_histogram_f1max_by_hand_merges_a_positive_with_a_negative():
    # Normalised scores 0, 0.5, 0.5004, 1: bins 0, 499, 499, 999 (trunc(999 s)).
    # k = 999: TP 1 -> F1 2/3; k = 499: TP 2, FP 1 -> 4/5; k = 0: 4/6.
    # Exact: thresholding between 0.5 and 0.5004 separates the classes: F1 = 1.
    labels, scores = [0, 0, 1, 1], [0.0, 0.5, 0.5004, 1.0]
    assert histogram_f1max(labels, scores) == pytest.approx(0.8, **EXACT)
    assert compute_all(labels, scores)["i_f1max"] == 1.0
    assert evaluate_protocol("inversionad", labels, scores)["i_f1max"] == pytest.approx(0.8)
    masks = np.array([[[0, 0, 1, 1]]], dtype=bool)
    maps = np.array([[scores]], dtype=np.float16).reshape(1, 1, 4)
    assert pixel_histogram_f1max(masks, maps) == pytest.approx(0.8, **EXACT)


def test_histogram_f1max_counts_a_score_on_a_bin_edge_as_positive():
    # With 5 bins (multiplier 4) the edges 0.25, 0.5, ... are exact in float32.
    # 0.25 sits on edge 1 and 0.2499 just below: b = 1 and 0. Threshold k = 1 takes
    # the positive at 0.25 and leaves the negative out: F1 = 1.
    labels, scores = [0, 1, 0, 1], [0.0, 0.25, 0.2499, 1.0]
    assert histogram_f1max(labels, scores, n_bins=5) == 1.0
    # one float32 ulp below the edge the positive falls into bin 0 with both negatives:
    # only k = 4 (the max) or k = 0 (all) remain, F1 = 2/3 either way
    below = float(np.nextafter(np.float32(0.25), np.float32(0)))
    assert histogram_f1max(labels, [0.0, below, 0.2499, 1.0], n_bins=5) == pytest.approx(2 / 3)


def test_histogram_f1max_puts_only_the_maximum_in_the_top_bin():
    # float32(1 - 1e-8) is 1, so the max alone reaches bin 999 and the threshold k = 999
    # isolates it from 0.9995 (bin 998): F1 = 1. Were the clamp below 1 (float64), the
    # max would share bin 998 with the negative and F1max would be 2/3.
    assert histogram_f1max([0, 0, 1], [0.0, 0.9995, 1.0]) == 1.0
    # the same three scores with the max negative: it is alone above the positive
    assert histogram_f1max([0, 1, 0], [0.0, 0.9995, 1.0]) == pytest.approx(2 / 3)
    # on a range of 0.01 the 1e-8 is not lost: s'(max) < 1, the max falls into bin 998
    # with the negative and F1max drops to 2/3
    assert histogram_f1max([0, 0, 1], [0.0, 0.009995, 0.01]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_histogram_f1max_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(150) < 0.3
    scale = 10.0 ** rng.uniform(-3, 3)
    scores = np.round(rng.standard_normal(150) + 0.8 * labels, 2) * scale + rng.uniform(-1, 1)
    assert histogram_f1max(labels, scores) == pytest.approx(
        reference_histogram_f1max(labels, scores), **EXACT
    )
    assert histogram_f1max(labels, scores) <= compute_all(labels, scores)["i_f1max"] + 1e-12


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_pixel_histogram_f1max_matches_slow_reference(dtype):
    rng = np.random.default_rng(11)
    masks = blob_masks(rng, 4, 10)
    maps = noisy_maps(rng, masks, decimals=2).astype(dtype)
    expected = reference_histogram_f1max(masks.ravel(), maps.ravel())
    assert pixel_histogram_f1max(masks, maps) == pytest.approx(expected, **EXACT)


# --- InversionAD: ADEval's binned pixel AUROC and AUPRO --------------------------


def _adeval_case(c: float):
    # One region: a = 1.0 (the max), b = 0.6025. Negatives: c and seven zeros.
    masks = np.zeros((1, 2, 5), dtype=bool)
    masks[0, 0, :2] = True
    maps = np.zeros((1, 2, 5), dtype=np.float32)
    maps[0, 0, 0], maps[0, 0, 1], maps[0, 1, 4] = 1.0, 0.6025, c
    return masks, maps


def test_adeval_by_hand_ties_a_positive_and_a_negative_in_one_bin():
    # c = 0.6021 shares b's histc bin 602 (cell 603). a is in cell 1000 and, being the
    # max, in the overflow cell 1001 too: positives count 3 (weights 1/2 each: 1.5).
    #   j = 1000: (FPR 0, TPR 1/3);  603..999: (0, 2/3);  1..602: (1/8, 1);  0: (1, 1).
    # AUROC = 1/8 (2/3 + 1) / 2 + 7/8 = 47/48   (31/32 if a were counted once).
    # AUPRO = (5/48 + (0.3 - 1/8)) / 0.3 = 67/72.  Exact: both 1 (b is above c).
    masks, maps = _adeval_case(0.6021)
    p_auroc, pro = adeval_pixel_metrics(masks, maps)
    assert p_auroc == pytest.approx(47 / 48, **EXACT)
    assert pro == pytest.approx(67 / 72, **EXACT)
    assert aupro(masks, maps) == 1.0
    # c in a bin of its own below b: the binned curves are perfect too
    assert adeval_pixel_metrics(*_adeval_case(0.5)) == (1.0, 1.0)


def test_adeval_is_nan_for_constant_maps():
    masks, _ = _adeval_case(0.5)
    assert all(np.isnan(v) for v in adeval_pixel_metrics(masks, np.ones(masks.shape)))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("nstrips", [5, 37, 1000])
def test_adeval_matches_slow_reference(seed, nstrips):
    rng = np.random.default_rng(seed)
    masks = blob_masks(rng, 4, 9, normal=1)
    maps = noisy_maps(rng, masks, decimals=1).astype(np.float32)
    p_auroc, pro = adeval_pixel_metrics(masks, maps, nstrips=nstrips)
    ref_auroc, ref_pro = reference_adeval(masks, maps, nstrips)
    assert p_auroc == pytest.approx(ref_auroc, **EXACT)
    assert pro == pytest.approx(ref_pro, **EXACT)


def test_inversionad_protocol_combines_the_rules():
    rng = np.random.default_rng(12)
    masks = blob_masks(rng, 10, 20)
    maps = noisy_maps(rng, masks).astype(np.float16)
    labels = masks.any(axis=(1, 2))
    scores = np.round(maps.astype(np.float64).max(axis=(1, 2)), 1)
    unified = compute_all(labels, scores, masks, maps)
    inv = evaluate_protocol("inversionad", labels, scores, masks, maps)
    assert list(inv) == list(unified)
    for key in ("i_auroc", "i_ap", "p_ap"):  # sklearn's exact metrics, as ours
        assert inv[key] == unified[key]
    assert inv["i_f1max"] == histogram_f1max(labels, scores)
    assert inv["p_f1max"] == pixel_histogram_f1max(masks, maps)
    assert (inv["p_auroc"], inv["aupro"]) == adeval_pixel_metrics(masks, maps)
    assert inv["p_auroc"] == pytest.approx(unified["p_auroc"], abs=1e-2)
    assert inv["p_auroc"] != unified["p_auroc"]


# --- shared behaviour ----------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_masks_or_no_anomalous_pixel_gives_nan_pixel_metrics(protocol):
    labels, scores = [0, 1, 0, 1], [0.1, 0.7, 0.3, 0.6]
    result = evaluate_protocol(protocol, labels, scores)
    assert result["i_auroc"] == 1.0
    assert all(np.isnan(result[k]) for k in ("p_auroc", "p_ap", "p_f1max", "aupro"))
    empty = evaluate_protocol(protocol, labels, scores, np.zeros((4, 3, 3)), np.ones((4, 3, 3)))
    assert all(np.isnan(empty[k]) for k in ("p_auroc", "p_ap", "p_f1max", "aupro"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chunked_walk_gives_the_same_result(protocol, monkeypatch):
    rng = np.random.default_rng(13)
    masks = blob_masks(rng, 9, 16)
    maps = noisy_maps(rng, masks, decimals=1).astype(np.float16)
    labels, scores = masks.any(axis=(1, 2)), maps.astype(np.float64).max(axis=(1, 2))
    whole = evaluate_protocol(protocol, labels, scores, masks, maps)
    monkeypatch.setattr(_ranking, "CHUNK_PIXELS", 2 * 16 * 16 + 5)  # 2 images per chunk
    chunked = evaluate_protocol(protocol, labels, scores, masks, maps)
    assert chunked == pytest.approx(whole, rel=1e-12)


def test_bad_input_is_rejected():
    masks = np.array([[[1, 0], [0, 0]]])
    with pytest.raises(ValueError, match=r"maps contain 1 NaN or infinite value\(s\) out of 4"):
        diad_aupro(masks, np.array([[[np.nan, 0.1], [0.2, 0.3]]]))
    with pytest.raises(ValueError, match="masks must be binary"):
        adeval_pixel_metrics(masks * 2, np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="only one class"):
        pixel_histogram_f1max(np.zeros((1, 2, 2)), np.arange(4.0).reshape(1, 2, 2))
    with pytest.raises(ValueError, match="scores contain 1 NaN"):
        histogram_f1max([0, 1], [0.1, np.inf])
    with pytest.raises(ValueError, match="number of bins must be an integer of at least 2"):
        histogram_f1max([0, 1], [0.1, 0.2], n_bins=1)


def test_protocols_import_neither_torch_nor_sklearn():
    code = (
        "import sys, diffad.metrics.protocols\n"
        "bad = [m for m in ('torch', 'sklearn', 'skimage') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_module_example_runs():
    result = doctest.testmod(proto)
    assert result.attempted > 0
    assert result.failed == 0
