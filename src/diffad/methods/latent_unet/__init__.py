"""A small UNet trained on Stable Diffusion VAE latents of normal images (paper 000).

The report's first pipeline (Sec. 3.1): "a lightweight UNet appended after
Stable Diffusion's latent representation", which "produced blurry
reconstructions". The report gives no architecture or objective and its
notebooks hold no such model, so diffad reads it as a small diffusion model
in SD's latent space: a diffusers ``UNet2DModel`` trained with the epsilon
loss on z = 0.18215 E(x) of the normal train images (E: SD v1.5's VAE,
frozen); a test image is encoded, noised to ``strength`` of the schedule,
denoised with int(``steps`` x ``strength``) DDIM steps (the img2img rule),
decoded, and scored as :mod:`diffad.methods.sd_img2img` scores (MSE, CLIP,
SSIM; the hybrid score tier).

``space: pixel`` is the notebook's pipeline (``codes/diffusion_unet.ipynb``): a
pixel-space DDPM UNet at 128 px (the notebook finetunes
google/ddpm-celebahq-256: ``unet_weights``), and with ``start: clean`` its
sampling: no noise added, 250 stochastic DDPM steps t -> t - 1 at
round(linspace(999, 0, 250)) from the clean image.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from diffad.methods.base import Artefact, MethodKind, Requirements, Scored
from diffad.methods.params import (
    DiffusersWeights,
    OpenClipWeights,
    check_unet_schedule,
    infer,
    train,
)
from diffad.methods.reconstruction import (
    FEWEST_STRENGTH_STEPS,
    HybridScoreParams,
    detector_weights,
    hybrid_score,
    img2img_steps,
    needs_train_statistics,
)
from diffad.methods.registry import register_method
from diffad.scoring.outputs import Outputs
from diffad.training.settings import TrainerParams


class LatentUnetParams(HybridScoreParams, TrainerParams):
    space: Literal["latent", "pixel"] = train(
        "latent", "`latent`: SD VAE latents (the report); `pixel`: images (the notebook)")
    vae_weights: DiffusersWeights = train("sd15", "diffusers source of the VAE (a pipeline's "
                                                  "`vae`)")
    autoencoder: str | None = train(
        None, "an `autoencoders:` entry in place of `vae_weights`: the VAE finetuned on the "
        "category's normal images (paper 003's stage; its resolution and input "
        "normalisation are used)")
    unet_weights: DiffusersWeights | None = train(
        None, "diffusers UNet2DModel source to finetune (the notebook: ddpm_celebahq_256); "
        "None: a UNet of the sizes below from scratch")
    resolution: int = train(256, "side of the images (latent: the VAE's input; pixel: the "
                                 "UNet's, the notebook's 128)", ge=16)
    block_out_channels: list[int] = train([64, 128, 256], min_length=1)
    layers_per_block: int = train(2, ge=1)
    attention_levels: int = train(1, ge=0)
    train_timesteps: int = train(1000, ge=2)
    beta_schedule: Literal["scaled_linear", "linear"] = train(
        "scaled_linear", "SD's for latents; `linear` (DDPM's) for pixels")
    beta_start: float = train(0.00085, gt=0, lt=1)
    beta_end: float = train(0.012, gt=0, lt=1)
    # Training: the shared trainer's fields (TrainerParams, AdamW).
    # Inference
    start: Literal["noised", "clean"] = infer(
        "noised", "`noised`: to `strength`, then DDIM; `clean`: the notebook's sampling")
    strength: float = infer(0.35, gt=0, le=1)
    steps: int = infer(30, "DDIM steps of the full schedule (int(steps x strength) run)", ge=1)
    sample_steps: int = infer(250, "`clean`: DDPM steps from t = 999 to 0", ge=1)
    generator_seed: int = infer(42, ge=0)
    clip_weights: OpenClipWeights = infer("clip_vit_b32", "open_clip source of the CLIP term")

    @model_validator(mode="after")
    def _consistent(self) -> LatentUnetParams:
        if self.space == "latent" and self.resolution % 8:
            raise ValueError(f"resolution: {self.resolution} must be a multiple of 8 in "
                             "latent space (the VAE's downsampling)")
        if self.start == "noised" and img2img_steps(self.steps, self.strength) < 1:
            raise ValueError(f"steps x strength = {self.steps} x {self.strength} runs no "
                             "denoising step")
        if self.sample_steps > self.train_timesteps:
            raise ValueError(f"sample_steps: {self.sample_steps} exceeds train_timesteps")
        check_unet_schedule(self)
        return self


@register_method
class LatentUnet(MethodKind):
    kind = "latent_unet"
    Params = LatentUnetParams
    model = "diffad.methods.latent_unet.model:LatentUnetModel"

    @classmethod
    def requirements(cls, params: LatentUnetParams) -> Requirements:
        latent = params.space == "latent"
        names = [params.vae_weights] if latent and params.autoencoder is None else []
        names += [params.unet_weights] if params.unet_weights else []
        artefacts = ((Artefact("autoencoder", params.autoencoder, "autoencoder"),)
                     if latent and params.autoencoder else ())
        return Requirements(weights=(*names, *detector_weights(params)), artefacts=artefacts)

    @classmethod
    def nfe(cls, params: LatentUnetParams) -> int:
        if params.start == "clean":
            return params.sample_steps
        return img2img_steps(params.steps, params.strength)

    @classmethod
    def fewest_evaluations(cls, params: LatentUnetParams) -> dict[str, Any]:
        if params.start == "clean":
            return {"sample_steps": 1}
        return {"steps": min(params.steps, FEWEST_STRENGTH_STEPS)}

    @classmethod
    def reconstructs_by_strength(cls, params: LatentUnetParams) -> bool:
        return params.start == "noised"

    @classmethod
    def needs_train_scores(cls, params: LatentUnetParams) -> bool:
        return needs_train_statistics(params)

    @classmethod
    def score(cls, params: LatentUnetParams, outputs: Outputs) -> Scored:
        return hybrid_score(params, outputs)


__all__ = ["LatentUnet", "LatentUnetParams"]
