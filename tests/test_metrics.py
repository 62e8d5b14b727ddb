"""Tests of diffad.metrics: agreement with sklearn, hand-computed AUPRO, input checks."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as skimage_label
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

import diffad.metrics as metrics
from diffad.metrics import (
    _ranking,
    aupro,
    compute_all,
    f1_max,
    image_ap,
    image_auroc,
    image_f1max,
    pixel_ap,
    pixel_auroc,
    pixel_f1max,
)
from diffad.metrics.aupro import region_weights

EXACT = {"rel": 1e-12, "abs": 1e-12}


# --- helpers -------------------------------------------------------------------


def sklearn_f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return float(np.nanmax(f1))


def blob_masks(rng: np.random.Generator, n: int, size: int, normal: int = 2) -> np.ndarray:
    """Random masks of several irregular regions; the first ``normal`` images are empty."""
    smooth = ndimage.gaussian_filter(rng.random((n, size, size)), sigma=(0, 1.2, 1.2))
    masks = smooth > np.quantile(smooth, 0.85)
    masks[:normal] = False
    return masks


def tied_maps(rng: np.random.Generator, masks: np.ndarray, decimals: int) -> np.ndarray:
    """Maps correlated with ``masks``, rounded so that many pixels tie across classes."""
    return np.round(rng.random(masks.shape) + 0.4 * masks, decimals)


def reference_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float) -> float:
    """Slow AUPRO straight from the definition: one loop step per distinct threshold.

    Regions come from skimage (connectivity=2, i.e. 8-neighbours), independently of
    the scipy labelling of the fast implementation.
    """
    regions = []
    for mask, score in zip(masks, maps, strict=True):
        labels = skimage_label(mask, connectivity=2)
        regions += [score[labels == k] for k in range(1, labels.max() + 1)]
    negatives = maps[masks == 0].astype(np.float64)
    fpr, pro = [0.0], [0.0]  # threshold above every score
    for t in np.unique(maps.astype(np.float64))[::-1]:
        fpr.append(np.mean(negatives >= t))
        pro.append(np.mean([np.mean(r.astype(np.float64) >= t) for r in regions]))
    area = 0.0
    for x0, x1, y0, y1 in zip(fpr[:-1], fpr[1:], pro[:-1], pro[1:], strict=True):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


# --- agreement with sklearn ----------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # ~14 values: heavy ties
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), **EXACT)
    assert image_ap(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), **EXACT
    )
    assert f1_max(labels, scores) == pytest.approx(sklearn_f1_max(labels, scores), **EXACT)
    assert image_f1max(labels.astype(int), scores) == f1_max(labels, scores)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pixel_metrics_match_sklearn_with_ties(dtype):
    rng = np.random.default_rng(3)
    masks = blob_masks(rng, 12, 32)
    maps = tied_maps(rng, masks, decimals=2).astype(dtype)
    y, s = masks.ravel(), maps.ravel().astype(np.float64)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), **EXACT)
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), **EXACT)
    assert pixel_f1max(masks, maps) == pytest.approx(sklearn_f1_max(y, s), **EXACT)


def test_float16_histogram_path_equals_sort_path():
    # float16 maps are counted through a bit-pattern histogram, others by sorting:
    # the same values must give exactly the same counts, hence the same metrics.
    rng = np.random.default_rng(4)
    masks = blob_masks(rng, 8, 24)
    maps16 = (rng.standard_normal(masks.shape) + masks).astype(np.float16)
    maps16[0, 0, :4] = -0.0  # -0 and +0 are two bit patterns but one score
    maps16[np.nonzero(masks)[0][:3], np.nonzero(masks)[1][:3], np.nonzero(masks)[2][:3]] = 0.0
    maps32 = maps16.astype(np.float32)
    for metric in (pixel_auroc, pixel_ap, pixel_f1max, aupro):
        assert metric(masks, maps16) == metric(masks, maps32)


def test_negative_zero_ties_with_positive_zero_in_float16():
    masks = np.array([[[1, 0, 0, 0]]], dtype=bool)
    maps = np.array([[[0.0, -0.0, 1.0, -1.0]]], dtype=np.float16)
    # the positive ties with one negative, beats one and loses to one: (1 + 0.5) / 3
    assert pixel_auroc(masks, maps) == pytest.approx(0.5)
    assert pixel_auroc(masks, maps) == pixel_auroc(masks, maps.astype(np.float64))


def test_chunked_walk_gives_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    masks = blob_masks(rng, 9, 16)
    maps = tied_maps(rng, masks, decimals=1).astype(np.float16)
    whole = compute_all(masks.any(axis=(1, 2)), maps.max(axis=(1, 2)), masks, maps)
    monkeypatch.setattr(_ranking, "CHUNK_PIXELS", 2 * 16 * 16 + 5)  # 2 images per chunk
    chunked = compute_all(masks.any(axis=(1, 2)), maps.max(axis=(1, 2)), masks, maps)
    assert chunked == whole


# --- AUPRO ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_slow_reference_with_ties(seed, fpr_limit):
    rng = np.random.default_rng(seed)
    masks = blob_masks(rng, 5, 14)
    maps = tied_maps(rng, masks, decimals=1)  # ~15 distinct scores shared by both classes
    expected = reference_aupro(masks, maps, fpr_limit)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, **EXACT)


def test_aupro_two_regions_of_different_sizes_by_hand():
    # Region A: one pixel scoring 0.9. Region B: two pixels scoring 0.8 and 0.2.
    # Negatives (9): one at 0.85, eight at 0.1. Curve (FPR, PRO) per threshold:
    #   start (0, 0); 0.9 -> (0, 1/2); 0.85 -> (1/9, 1/2); 0.8 -> (1/9, (1 + 1/2)/2);
    #   0.2 -> (1/9, 1); 0.1 -> (1, 1).
    # Area up to 0.3: 1/2 * 1/9 + 1 * (0.3 - 1/9) = 0.3 - 1/18; / 0.3 = 1 - 5/27 = 22/27.
    # Area up to 1.0: 1/2 * 1/9 + (1 - 1/9) = 17/18.
    masks = np.array([[[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]], dtype=np.uint8)
    maps = np.full(masks.shape, 0.1)
    maps[0, 0, 0], maps[0, 0, 3], maps[0, 1, 3], maps[0, 2, 0] = 0.9, 0.8, 0.2, 0.85
    assert aupro(masks, maps) == pytest.approx(22 / 27, **EXACT)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(17 / 18, **EXACT)


def test_aupro_regions_use_8_connectivity():
    # (0,0) and (1,1) touch diagonally: ONE region of 2 pixels; (3,3) is a second.
    # Scores: (0,0) 0.9, (1,1) 0.1, (3,3) 0.1; negatives (13): one 0.5, twelve 0.
    # 8-connected: PRO(0.9) = (1/2 + 0) / 2 = 1/4; FPR 1/13 at 0.5; PRO 1 at 0.1.
    # Area/0.3 = (1/4 * 1/13 + (0.3 - 1/13)) / 0.3 = 1 - 5/26 = 21/26.
    # (4-connected would give three regions, PRO(0.9) = 1/3 and 97/117.)
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[3, 3] = True
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 3, 3], maps[0, 2, 0] = 0.9, 0.1, 0.1, 0.5
    assert region_weights(mask).tolist() == [0.5, 0.5, 1.0]
    assert aupro(mask[None], maps) == pytest.approx(21 / 26, **EXACT)


def test_aupro_interpolates_at_the_limit_and_honours_fpr_limit():
    # One positive at 0.5; negatives 0.9, 0.5 (a tie), 0, 0. Curve:
    # (0, 0) -> 0.9: (1/4, 0) -> 0.5: (1/2, 1), a diagonal from the tie -> 0: (1, 1).
    masks = np.array([[[1, 0, 0, 0, 0]]])
    maps = np.array([[[0.5, 0.9, 0.5, 0.0, 0.0]]])
    # limit 0.3 cuts the diagonal: PRO(0.3) = 0.05/0.25 = 0.2; area 0.05 * 0.2 / 2.
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.005 / 0.3, **EXACT)
    assert aupro(masks, maps, fpr_limit=0.25) == 0.0
    assert aupro(masks, maps, fpr_limit=0.5) == pytest.approx(0.125 / 0.5, **EXACT)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.625, **EXACT)


def test_perfect_and_inverted_maps():
    rng = np.random.default_rng(6)
    masks = blob_masks(rng, 6, 16)
    perfect = masks.astype(np.float32)
    assert aupro(masks, perfect) == 1.0
    assert pixel_auroc(masks, perfect) == 1.0
    assert pixel_ap(masks, perfect) == 1.0
    assert pixel_f1max(masks, perfect) == 1.0
    inverted = 1.0 - perfect
    assert pixel_auroc(masks, inverted) == 0.0  # returned as is, never flipped
    assert aupro(masks, inverted) == 0.0
    assert image_auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


# --- compute_all ---------------------------------------------------------------


def test_compute_all_agrees_with_the_single_metrics():
    rng = np.random.default_rng(7)
    masks = blob_masks(rng, 10, 20)
    maps = tied_maps(rng, masks, decimals=2).astype(np.float16)
    labels, scores = masks.any(axis=(1, 2)), maps.max(axis=(1, 2)).astype(np.float64)
    result = compute_all(labels, scores, masks, maps)
    assert list(result) == [*metrics.IMAGE_KEYS, *metrics.PIXEL_KEYS]
    assert result == {
        "i_auroc": image_auroc(labels, scores),
        "i_ap": image_ap(labels, scores),
        "i_f1max": image_f1max(labels, scores),
        "p_auroc": pixel_auroc(masks, maps),
        "p_ap": pixel_ap(masks, maps),
        "p_f1max": pixel_f1max(masks, maps),
        "aupro": aupro(masks, maps),
    }
    assert compute_all(labels, scores, masks, maps, fpr_limit=1.0)["aupro"] == aupro(
        masks, maps, fpr_limit=1.0
    )


def test_compute_all_without_masks_or_without_anomalous_pixels_gives_nan():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.7, 0.3, 0.6])
    no_masks = compute_all(labels, scores)
    assert no_masks["i_auroc"] == 1.0
    assert all(np.isnan(no_masks[k]) for k in metrics.PIXEL_KEYS)
    empty = compute_all(labels, scores, np.zeros((4, 3, 3)), np.ones((4, 3, 3), np.float16))
    assert all(np.isnan(empty[k]) for k in metrics.PIXEL_KEYS)
    assert empty["i_ap"] == 1.0


# --- input checks --------------------------------------------------------------


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"masks shape \(2, 4, 4\) does not match maps shape"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"masks must be \(N, H, W\); got shape \(4, 4\)"):
        aupro(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="labels has 3 entries but scores has 2"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="masks hold 2 images but labels has 3 entries"):
        compute_all([0, 1, 1], [0.1, 0.2, 0.3], np.ones((2, 2, 2)), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="got maps=None"):
        compute_all([0, 1], [0.1, 0.2], masks=np.ones((2, 2, 2)))


def test_non_binary_mask_is_rejected_with_its_value_and_position(monkeypatch):
    masks = np.zeros((3, 4, 4), dtype=np.uint8)
    masks[1, 0, 0] = 1
    masks[2, 1, 3] = 2
    monkeypatch.setattr(_ranking, "CHUNK_PIXELS", 16)  # one image per chunk
    with pytest.raises(ValueError, match=r"found value 2 at index \(2, 1, 3\)"):
        pixel_auroc(masks, np.zeros(masks.shape))
    masks[2, 1, 3] = 255
    with pytest.raises(ValueError, match="divided by 255"):
        aupro(masks, np.zeros(masks.shape))
    with pytest.raises(ValueError, match=r"labels must be binary .* found value 0\.5"):
        image_ap([0, 0.5, 1], [0.1, 0.2, 0.3])


def test_single_class_is_rejected():
    for metric in (image_auroc, image_ap, f1_max):
        with pytest.raises(ValueError, match="only one class"):
            metric([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="compute_all: labels contain only one class"):
        compute_all([0, 0], [0.1, 0.2])
    for metric in (pixel_auroc, pixel_ap, pixel_f1max, aupro):
        with pytest.raises(ValueError, match=f"{metric.__name__}: masks contain only one class"):
            metric(np.zeros((2, 3, 3)), np.ones((2, 3, 3)))


def test_bad_values_are_rejected():
    masks = np.array([[[1, 0], [0, 0]]])
    for dtype in (np.float16, np.float32):
        maps = np.array([[[np.nan, 0.1], [0.2, np.inf]]], dtype=dtype)
        with pytest.raises(ValueError, match=r"maps contain 2 NaN or infinite value\(s\) out of 4"):
            pixel_auroc(masks, maps)
    with pytest.raises(ValueError, match="scores contain 1 NaN"):
        image_auroc([0, 1], [0.1, np.nan])
    for limit in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"fpr_limit must lie in \(0, 1\]; got {limit}"):
            aupro(masks, np.zeros((1, 2, 2)), fpr_limit=limit)
    with pytest.raises(ValueError, match="maps must hold real numbers; got dtype complex"):
        pixel_ap(masks, np.zeros((1, 2, 2), dtype=complex))


# --- documentation -------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["_ranking", "auroc", "average_precision", "f1max", "aupro", "summary"]
)
def test_module_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"diffad.metrics.{module}"))
    assert result.attempted > 0
    assert result.failed == 0
