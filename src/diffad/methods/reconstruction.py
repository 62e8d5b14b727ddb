"""The score tier of reconstruction kinds scored as paper 000 scores them.

Paper 000's hybrid score (Sec. 3.5): S = alpha MSE(x, x_hat) + (1 - alpha)
(1 - cos(CLIP(x), CLIP(x_hat))), alpha from 0.3 to 0.9 (its notebooks: 0.8, 0.9,
and 0.7 with LoRA). The two terms live on different scales (an MSE of images in
[0, 1] is ~1e-3, a CLIP cosine distance ~1e-2 to 1e-1), so the raw sum of the
report is mostly its CLIP term at alpha < 0.99; ``standardize: train`` divides
each term by the train split's statistics first ((s - mean) / sd of the normal
train images' scores), which makes alpha the relative weight of the two.
The pixel map (``sq`` or ``abs``, optionally smoothed) is the report's heatmap;
the image score does not depend on it. Infer stores every detector, so one set
of reconstructions serves every alpha.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from diffad.methods.base import Scored
from diffad.methods.params import MethodParams, score
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


def img2img_steps(steps: int, strength: float) -> int:
    """The denoising steps a reconstruction from ``strength`` runs on a grid of ``steps``
    (diffusers' img2img rule: the last int(steps x strength) steps of the grid)."""
    return min(int(steps * strength), steps)


#: The fewest schedule steps that still run a step at strength 0.1, the lowest strength
#: the report's strength figure reconstructs at (a rehearsal's cut).
FEWEST_STRENGTH_STEPS = 10


def needs_train_statistics(params: HybridScoreParams) -> bool:
    return params.standardize == "train"


def hybrid_score(params: HybridScoreParams, outputs: Outputs) -> Scored:
    """S = alpha mse + (1 - alpha) clip per test image, and the chosen map."""
    mse, clip = outputs.scores("mse"), outputs.scores("clip")
    if params.standardize == "train":
        mse = standardize(mse, outputs.train_scores("mse"))
        clip = standardize(clip, outputs.train_scores("clip"))
    scores = params.alpha * mse + (1 - params.alpha) * clip
    # The report's fidelity column: mean SSIM of the test images and their reconstructions.
    ssim = float(np.mean(1 - outputs.scores("ssim")))
    return Scored(scores, gaussian_smooth(outputs.map(params.anomaly_map), params.sigma),
                  statistics={"ssim": ssim})


__all__ = ["HybridScoreParams", "hybrid_score", "img2img_steps", "needs_train_statistics"]
