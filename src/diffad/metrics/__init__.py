"""Anomaly-detection metrics: exact, tie-aware and lean enough for a whole split.

One metric per module; all share one rank-count pass (:mod:`._ranking`), so
:func:`compute_all` walks the pixels of a split once for all four pixel metrics.

- :func:`image_auroc`, :func:`pixel_auroc` (``auroc``)
- :func:`image_ap`, :func:`pixel_ap` (``average_precision``)
- :func:`f1_max` (= :func:`image_f1max`), :func:`pixel_f1max` (``f1max``)
- :func:`aupro` (``aupro``)
- :func:`compute_all` (``summary``)
- :func:`evaluate_protocol` over ``PROTOCOLS`` (``protocols``): the same seven metrics
  as a paper's own evaluation code computes them (``unified`` = :func:`compute_all`)
"""

from diffad.metrics.aupro import aupro
from diffad.metrics.auroc import image_auroc, pixel_auroc
from diffad.metrics.average_precision import image_ap, pixel_ap
from diffad.metrics.f1max import f1_max, image_f1max, pixel_f1max
from diffad.metrics.protocols import PROTOCOLS, evaluate_protocol
from diffad.metrics.summary import IMAGE_KEYS, PIXEL_KEYS, compute_all

__all__ = [
    "IMAGE_KEYS",
    "PIXEL_KEYS",
    "PROTOCOLS",
    "aupro",
    "compute_all",
    "evaluate_protocol",
    "f1_max",
    "image_ap",
    "image_auroc",
    "image_f1max",
    "pixel_ap",
    "pixel_auroc",
    "pixel_f1max",
]
