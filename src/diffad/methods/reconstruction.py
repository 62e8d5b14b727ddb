"""The score tier of reconstruction kinds scored as paper 000 scores them.

Paper 000's hybrid score (Sec. 3.5): S = alpha MSE(x, x_hat) + (1 - alpha)
(1 - cos(CLIP(x), CLIP(x_hat))), alpha from 0.3 to 0.9 (its notebooks: 0.8, 0.9,
and 0.7 with LoRA). The two terms live on different scales (an MSE of images in
[0, 1] is ~1e-3, a CLIP cosine distance ~1e-2 to 1e-1), so the raw sum of the
report is mostly its CLIP term at alpha < 0.99; ``standardize: train`` divides
each term by the train split's statistics first ((s - mean) / sd of the normal
train images' scores), which makes alpha the relative weight of the two.
The report's "pixel, semantic and optionally perceptual metrics" (Sec. 3.5) prints
no perceptual term; ``weight_lpips`` adds one, weight_lpips x LPIPS(x, x_hat), on
the network ``perceptual_weights`` (stored at inference where it is set).
The pixel map (``sq`` or ``abs``, optionally smoothed) is the report's heatmap;
the image score does not depend on it. Infer stores every detector, so one set
of reconstructions serves every alpha.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import model_validator

from diffad.methods.base import Scored
from diffad.methods.params import Backbone, MethodParams, infer, score
from diffad.scoring.fusion import gaussian_smooth, standardize
from diffad.scoring.outputs import Outputs


class HybridScoreParams(MethodParams):
    alpha: float = score(0.8, "weight of the MSE term; 1 - alpha weighs the CLIP term", ge=0,
                         le=1)
    standardize: Literal["none", "train"] = score(
        "none", "`none`: the report's raw sum; `train`: each term standardised by the train "
        "split's statistics first (scores the train split too)")
    anomaly_map: Literal["sq", "abs"] = score(
        "sq", "`sq`: per-pixel squared error; `abs`: channel-mean absolute error (notebook)")
    sigma: float = score(0.0, "Gaussian smoothing of the map, pixels", ge=0)
    # The report's optional perceptual term: stored by inference, weighed by the score tier.
    perceptual_weights: Backbone | None = infer(
        None, "timm source of the LPIPS distance stored per image (`vgg16`: LPIPS's "
              "calibrated VGG-16); None: not computed")
    weight_lpips: float = score(0.0, "weight of the perceptual (LPIPS) term added to the "
                                     "hybrid score; needs `perceptual_weights`", ge=0)

    @model_validator(mode="after")
    def _perceptual_term(self) -> HybridScoreParams:
        if self.weight_lpips > 0 and self.perceptual_weights is None:
            raise ValueError(f"weight_lpips: {self.weight_lpips} needs perceptual_weights "
                             "(the LPIPS network, e.g. vgg16)")
        return self


def img2img_steps(steps: int, strength: float) -> int:
    """The denoising steps a reconstruction from ``strength`` runs on a grid of ``steps``
    (diffusers' img2img rule: the last int(steps x strength) steps of the grid)."""
    return min(int(steps * strength), steps)


#: The fewest schedule steps that still run a step at strength 0.1, the lowest strength
#: the report's strength figure reconstructs at (a rehearsal's cut).
FEWEST_STRENGTH_STEPS = 10


def needs_train_statistics(params: HybridScoreParams) -> bool:
    return params.standardize == "train"


def detector_weights(params: HybridScoreParams) -> tuple[str, ...]:
    """The weight sources the detectors load: the CLIP tower, and LPIPS's network if set."""
    perceptual = (params.perceptual_weights,) if params.perceptual_weights else ()
    return (params.clip_weights, *perceptual)


def hybrid_score(params: HybridScoreParams, outputs: Outputs) -> Scored:
    """S = alpha mse + (1 - alpha) clip (+ weight_lpips lpips) per test image, and the
    chosen map."""
    def term(name: str) -> np.ndarray:
        values = outputs.scores(name)
        if params.standardize == "train":
            return standardize(values, outputs.train_scores(name))
        return values

    scores = params.alpha * term("mse") + (1 - params.alpha) * term("clip")
    if params.weight_lpips:
        scores = scores + params.weight_lpips * term("lpips")
    # The report's three measures of reconstruction (Sec. 3.9), means over the test images:
    # SSIM (stored as 1 - SSIM), MSE and the CLIP distance, raw whatever `standardize` says.
    statistics = {"ssim": float(np.mean(1 - outputs.scores("ssim"))),
                  "mse": float(np.mean(outputs.scores("mse"))),
                  "clip": float(np.mean(outputs.scores("clip")))}
    return Scored(scores, gaussian_smooth(outputs.map(params.anomaly_map), params.sigma),
                  statistics=statistics)


__all__ = ["HybridScoreParams", "detector_weights", "hybrid_score", "img2img_steps",
           "needs_train_statistics"]
