"""Explicit score matching with a dual-stream diffusion model (paper 002, "ESM").

Pixel-space diffusion for reconstruction-based anomaly detection, per
(dataset, category), 256 x 256 in the paper. Two copies of one diffusers
``UNet2DModel`` form the dual-stream network (Sec. 3.2): stream 1 predicts the
noise expectation eps_t, stream 2 the log-variance of X_t, floored at
``variance_floor`` = 0.01 (Sec. 4.2). The networks are in :mod:`.model`.

Training (Sec. 3.3), ``objective``:

``mle``
    Eq. 10, the Gaussian negative log-likelihood of X_t:
    (1 - abar_t)(eps - eps_t)^2 / sigma_t^2 + log sigma_t^2 (both streams);
``dsm``
    the usual epsilon MSE, stream 1 only: the SGM baseline.

Denoising from T_d (``t_d``, per category: appendix Tables 6-8), ``sampler``:

``sgm``
    Eq. 5 with DSM's denominator (Eq. 4: sigma_t^2 -> 1 - abar_t), the paper's
    like-for-like baseline (Sec. 2: ESM and DSM differ only in that denominator):
    x_{t-1} = x_t + beta_t (x_t / 2 - eps_t / sqrt(1 - abar_t)); T_d evaluations;
``sgm_ddim``
    DDIM with eta = 0 (the probability-flow ODE, which weights the score by 1/2
    where Eq. 5 weights it by 1): T_d evaluations;
``esm``
    Eq. 5 with the explicit score of Eq. 3, -(x - mu_t) / sigma_t^2, where the
    deviation x - mu_t is read as sqrt(1 - abar_t) eps_t (the paper leaves mu_t
    at inference undefined): x_{t-1} = x_t + beta_t (x_t / 2 - sqrt(1 - abar_t)
    eps_t / sigma_t^2); T_d evaluations;
``esm_sigma``
    the variance-guided diffusion process (Sec. 3.4), beta(t) replaced by the
    predicted variance; ``variance_guidance`` chooses the reading:

    ``forward`` (the paper's, default)
        Eq. 11 noises x_0 to T_d step by step with the variance the network
        predicts for the current image, x_{t+1} = x_t - sigma_t^2 dt_t x_t / 2 +
        sigma_t sqrt(dt_t) xi_t (Euler-Maruyama), then Eq. 13 denoises,
        x_{t-1} = x_t + dt_t (sigma_t^2 x_t / 2 - sqrt(1 - abar_t) eps_t): the
        variance is "recalculated at each diffusion step" (Sec. 4.2), hence the
        paper's "twice the steps of ESM": T_d variance-stream plus T_d
        dual-stream evaluations;
    ``proposal`` (an earlier reading of this project)
        the beta schedule noises x_0 in one draw; Eq. 13 denoises, the variance
        re-estimated at each proposed x_{t-1} and the step retaken with the mean
        of the two variances: also 2 T_d evaluations. Here sigma^2 only scales
        the small x / 2 term: on a Gaussian toy with the exact networks the
        result is within 0.01 per pixel of ``sgm``'s.

    Both read beta(t) dt as dt_t = beta_t / (1 - abar_t): the one time change
    under which sigma_t^2 = 1 - abar_t (DSM's variance) makes Eq. 11 the DDPM
    forward step, x_{t+1} = (1 - beta_t / 2) x_t + sqrt(beta_t) xi_t, and
    Eq. 13 the ``sgm`` step (the paper gives no discretisation).

Detectors (Sec. 3.5), each stored with its map: ``cos`` (1 - cosine
similarity of multi-layer features of a frozen backbone, DINO ViT-B/8 blocks
3, 6, 9, 12 as in GLAD), ``re`` (squared error), ``u`` ((x - x_hat)^2 /
sigma_0^2, UAE) and ``kl`` (KL(N(x, sigma_0^2(x)) || N(x_hat, sigma_0^2(x_hat)))
per pixel, ADSPR's spatial restoration score with the variances of both images
at t = 0); the last two need the variance stream (``mle``). Evaluating the
variances at t = 0 costs 2 more (variance-stream) evaluations. NFE counts
network evaluations: one per dual-stream call, one per variance-only call.

Score tier: each detector's map min-max scaled by the range of the test split's
maps, or of the normal train images' (``normalization: train``; inference then
stores each train image's map extremes as ``<detector>_min``/``_max``), fused
S = u S_cos + v S_U + w S_KL + r S_RE (Eq. 14, equal weights by default: the
paper gives none), image score = mean of the top
``top_k`` = 250 pixels (Eq. 15).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from diffad.methods.base import MethodKind, Requirements, Scored
from diffad.methods.params import (
    Backbone,
    MethodParams,
    check_unet_schedule,
    infer,
    score,
    train,
)
from diffad.methods.registry import register_method
from diffad.scoring.fusion import gaussian_smooth, minmax, top_k_mean, weighted_sum
from diffad.scoring.outputs import Outputs
from diffad.training.settings import TrainerParams

DETECTORS = ("cos", "u", "kl", "re")
#: The samplers that read the mean stream only (a DSM-trained model has no other).
SINGLE_STREAM = ("sgm", "sgm_ddim")


class EsmParams(MethodParams, TrainerParams):
    # Dual-stream network: two copies of this UNet2DModel. The paper copies "the U-net
    # backbone of SGM" (NCSN++) without its size; this default is NCSN++-like for 256 px.
    resolution: int = train(256, "side of the images the diffusion model sees", ge=16)
    block_out_channels: list[int] = train([128, 128, 256, 256, 512, 512], min_length=1)
    layers_per_block: int = train(2, ge=1)
    attention_levels: int = train(2, "self-attention in this many lowest-resolution levels",
                                  ge=0)
    objective: Literal["mle", "dsm"] = train(
        "mle", "`mle`: Eq. 10, both streams (ESM); `dsm`: epsilon MSE, one stream (SGM)")
    variance_floor: float = train(0.01, "lower bound of the predicted variance", gt=0)
    train_timesteps: int = train(1000, "T", ge=2)
    beta_start: float = train(1e-4, gt=0, lt=1)
    beta_end: float = train(0.02, gt=0, lt=1)
    # Training: the shared trainer's fields (TrainerParams), these defaults the paper's.
    epochs: int = train(1000, ge=1)
    learning_rate: float = train(2e-5, "Adam (Sec. 4.1)", gt=0)
    # Inference
    sampler: Literal["sgm", "sgm_ddim", "esm", "esm_sigma"] = infer(
        "esm", "default: `sgm` (Eq. 5 with 1 - abar_t) for objective `dsm`, `esm` for "
               "`mle`; `sgm_ddim`: DDIM, eta 0")
    t_d: int = infer(100, "denoising start T_d (per category in the paper: `per_category`)",
                     ge=1)
    feature_backbone: Backbone = infer("dino_vitb8", "frozen network of S_cos (a weights source)")
    feature_layers: list[int] = infer([2, 5, 8, 11], "its blocks / stages (0-based)",
                                      min_length=1)
    feature_resolution: int | None = infer(
        None, "side at which S_cos compares input and reconstruction (both resized alike); "
        "default: the diffusion `resolution`", ge=16)
    variance_guidance: Literal["forward", "proposal"] = infer(
        "forward", "esm_sigma: `forward`, the variance-guided diffusion of Eq. 11 and "
                   "denoising of Eq. 13 (the paper); `proposal`, beta-schedule noising and "
                   "Eq. 13 with the variance re-estimated at each proposed step")
    variance_timestep: int = infer(
        0, "timestep at which S_U and S_KL read the variances of input and reconstruction, "
        "both noised to it alike (the paper's sigma_0^2: 0, where the MLE variance sits at "
        "`variance_floor` and both detectors reduce to multiples of S_RE)", ge=0)
    # Score tier (Eqs. 14 and 15)
    weight_cos: float = score(1.0, "u", ge=0)
    weight_u: float = score(1.0, "v (needs the variance stream)", ge=0)
    weight_kl: float = score(1.0, "w (needs the variance stream)", ge=0)
    weight_re: float = score(1.0, "r", ge=0)
    normalization: Literal["split", "train", "none"] = score(
        "split", "each detector's maps min-max scaled before fusion by the range of the test "
                 "split's maps (`split`) or of the train split's (`train`: scores the train "
                 "split too)")
    top_k: int = score(250, "N_a: image score = mean of the top N_a fused pixels", ge=1)
    smoothing: float = score(0.0, "Gaussian sigma (pixels) on the fused map", ge=0)

    @model_validator(mode="before")
    @classmethod
    def _default_sampler(cls, data: Any) -> Any:
        # The default sampler follows the objective, so that a model's train settings
        # with the other defaults are always a valid configuration (a train job and a
        # model folder know the train settings only).
        if isinstance(data, dict) and "sampler" not in data and data.get("objective") == "dsm":
            data = {**data, "sampler": "sgm"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> EsmParams:
        if self.sampler not in SINGLE_STREAM and self.objective != "mle":
            raise ValueError(f"sampler: {self.sampler} needs the variance stream "
                             "(objective: mle)")
        if self.t_d > self.train_timesteps:
            raise ValueError(f"t_d: {self.t_d} exceeds train_timesteps ({self.train_timesteps})")
        if self.variance_timestep >= self.train_timesteps:
            raise ValueError(f"variance_timestep: {self.variance_timestep} must be below "
                             f"train_timesteps ({self.train_timesteps})")
        check_unet_schedule(self)
        return self


@register_method
class Esm(MethodKind):
    kind = "esm"
    Params = EsmParams
    model = "diffad.methods.esm.model:EsmModel"

    @classmethod
    def requirements(cls, params: EsmParams) -> Requirements:
        return Requirements(weights=(params.feature_backbone,))

    @classmethod
    def nfe(cls, params: EsmParams) -> int:
        steps = params.t_d * (2 if params.sampler == "esm_sigma" else 1)
        return steps + (2 if params.objective == "mle" else 0)

    @classmethod
    def fewest_evaluations(cls, params: EsmParams) -> dict[str, Any]:
        # One sampler step from T_d = 1: the same sampler, stream and detectors.
        return {"t_d": 1}

    @classmethod
    def needs_train_scores(cls, params: EsmParams) -> bool:
        return params.normalization == "train"

    @classmethod
    def detectors(cls, params: EsmParams) -> tuple[str, ...]:
        """``sgm`` has no variance: S_cos and S_RE only."""
        return DETECTORS if params.objective == "mle" else ("cos", "re")

    @classmethod
    def score(cls, params: EsmParams, outputs: Outputs) -> Scored:
        weights = {"cos": params.weight_cos, "u": params.weight_u, "kl": params.weight_kl,
                   "re": params.weight_re}
        weights = {name: w for name, w in weights.items() if name in cls.detectors(params)}
        maps = {name: outputs.map(name) for name, w in weights.items() if w}
        if params.normalization == "split":
            maps = {name: minmax(m) for name, m in maps.items()}
        elif params.normalization == "train":
            # The extremes of every train image's map: test statistics never enter.
            maps = {name: minmax(m, (outputs.train_scores(f"{name}_min").min(),
                                     outputs.train_scores(f"{name}_max").max()))
                    for name, m in maps.items()}
        fused = gaussian_smooth(weighted_sum(maps, weights), params.smoothing)
        return Scored(top_k_mean(fused, params.top_k), fused)


__all__ = ["DETECTORS", "SINGLE_STREAM", "Esm", "EsmParams"]
