"""Reconstruction-free anomaly detection by DDIM inversion in feature space (paper 001).

Training (Sec. 5.1): a diffusers ``UNet2DModel`` learns the epsilon
objective (Eq. 9, gamma = 1) on backbone features of the normal images
(:mod:`diffad.models.features`), T = 1000, linear betas, AdamW with a cosine
learning rate, on the shared trainer (:mod:`diffad.training`).

Inference, ``mode: inversion`` (Sec. 4.2, Algorithm 1): the features x_0
are inverted deterministically to x_T over S steps (Eq. 15, exactly S UNet
evaluations). Stored detectors: ``nll`` (-log N(x_T; 0, I)), ``norm`` (the
max - min of the spatial norm map ||x_T(:, i, j)||_2, Eq. 17) and the map
``norm`` (bilinearly upsampled to the image).

Score tier, ``score``:

``nll`` / ``norm``
    one detector alone;
``combined``
    Algorithm 1: min-max normalised NLL plus min-max normalised max - min.
    As in the paper, the normalisation uses the range of the *test split*,
    so a score depends on the other test images;
``combined_train``
    the same sum with each term standardised by its mean and standard
    deviation over the train split (which infer then scores too), so scores
    are independent of the test set.

``mode: reconstruction`` is the baseline of Table 4: x_0 is noised (Eq. 7)
to the timestep ``start_percent`` of the way along the S-step grid and
denoised back with DDIM; detector ``error``: the per-location squared
feature error (its map) and its maximum (the image score). It shares the
trained model with inversion.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from diffad.methods.base import MethodKind, Requirements, Scored
from diffad.methods.params import (
    Backbone,
    MethodParams,
    check_unet_schedule,
    infer,
    run,
    score,
    train,
)
from diffad.methods.registry import register_method
from diffad.scoring.fusion import minmax, standardize
from diffad.scoring.outputs import Outputs
from diffad.training.settings import TrainerParams


class LatentInversionParams(MethodParams, TrainerParams):
    # Feature space (Sec. 4.3)
    backbone: Backbone = train("efficientnet_b4", "pretrained timm CNN (a weights source name)")
    stages: list[int] = train([0, 1, 2, 3], "timm features_only stages, concatenated",
                              min_length=1)
    feature_stride: int = train(16, "stride of the feature grid", ge=1)
    stage_resize: Literal["area", "bilinear"] = train(
        "area", "finer stages to the grid: `area` averages each cell; `bilinear` samples "
        "it (the official code's nn.Upsample)")
    feature_normalization: Literal["standardize", "none"] = train(
        "standardize", "per-channel train mean / std (ours) or raw features (official code)")
    interpolation: Literal["bicubic", "bilinear"] = train(
        "bicubic", "image resize filter (the official code: bilinear)")
    # Diffusion model (diffusers UNet2DModel); the paper does not give its size.
    block_out_channels: list[int] = train([256, 512, 512], min_length=1)
    layers_per_block: int = train(2, ge=1)
    attention_levels: int = train(1, "self-attention in this many lowest-resolution levels "
                                  "(the middle block always has it)", ge=0)
    train_timesteps: int = train(1000, "T", ge=2)
    beta_start: float = train(1e-4, gt=0, lt=1)
    beta_end: float = train(0.02, gt=0, lt=1)
    # Training (Sec. 5.1): the shared trainer's fields (TrainerParams), and
    epochs: int = train(1000, ge=1)
    batch_size: int = train(16, "feature maps per micro-batch", ge=1)
    warmup_epochs: int = train(0, "linear warm-up before the cosine decay", ge=0)
    weight_decay: float = train(0.01, ge=0)
    # Inference
    mode: Literal["inversion", "reconstruction"] = infer("inversion")
    steps: int = infer(2, "S", ge=1)
    timestep_spacing: Literal["paper", "official"] = infer(
        "paper", "inversion grid: `paper` (Eq. 15, tau evenly spaced up to T - 1) or "
        "`official` (the authors' code: evaluated at round(linspace(0, T - 1, S)), "
        "then a last step to alpha-bar 0)")
    start_percent: int = infer(20, "reconstruction: where denoising starts, % of the "
                               "S-step grid", ge=1, le=100)
    infer_batch_size: int = run(16, "feature maps per inference batch", ge=1)
    # Score tier
    score: Literal["nll", "norm", "combined", "combined_train"] = score("combined")

    @model_validator(mode="after")
    def _consistent(self) -> LatentInversionParams:
        if self.steps > self.train_timesteps:
            raise ValueError(f"steps: {self.steps} exceeds train_timesteps "
                             f"({self.train_timesteps})")
        check_unet_schedule(self)
        return self


@register_method
class LatentInversion(MethodKind):
    kind = "latent_inversion"
    Params = LatentInversionParams
    model = "diffad.methods.latent_inversion.model:LatentInversionModel"

    @classmethod
    def requirements(cls, params: LatentInversionParams) -> Requirements:
        return Requirements(weights=(params.backbone,))

    @classmethod
    def applicable(cls, params: LatentInversionParams) -> bool:
        # Table 4's "-" cells: a start before the grid's first step leaves nothing to denoise.
        return params.mode != "reconstruction" or cls.nfe(params) >= 1

    @classmethod
    def nfe(cls, params: LatentInversionParams) -> int:
        if params.mode == "inversion":
            return params.steps
        return params.steps * params.start_percent // 100

    @classmethod
    def needs_train_scores(cls, params: LatentInversionParams) -> bool:
        return params.mode == "inversion" and params.score == "combined_train"

    @classmethod
    def score(cls, params: LatentInversionParams, outputs: Outputs) -> Scored:
        if params.mode == "reconstruction":
            return Scored(outputs.scores("error"), outputs.map("error"))
        nll, spread = outputs.scores("nll"), outputs.scores("norm")
        if params.score == "nll":
            scores = nll
        elif params.score == "norm":
            scores = spread
        elif params.score == "combined":
            scores = minmax(nll) + minmax(spread)
        else:
            scores = (standardize(nll, outputs.train_scores("nll"))
                      + standardize(spread, outputs.train_scores("norm")))
        return Scored(scores, outputs.map("norm"))


__all__ = ["LatentInversion", "LatentInversionParams"]
