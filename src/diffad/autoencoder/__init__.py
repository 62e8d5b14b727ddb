"""Autoencoders for latent diffusion: LDM's finetuning recipe of a kl-f8 AutoencoderKL.

Paper 003 (VLMDiff) finetunes SD's VAE on the normal train images before
training its latent diffusion model. :mod:`.params` declares the settings and
the built-ins (importable without torch, for the DAG); :mod:`.loss` holds
LDM's ``LPIPSWithDiscriminator``; :mod:`.finetune` trains on the shared
trainer, writes the model folder and loads it back. Its names are imported
from here on first use, so that reading the settings imports no torch.
"""

from typing import Any

from diffad.autoencoder.params import (
    AutoencoderParams,
    builtin_autoencoders,
    denormalize,
    normalize,
    resolve_autoencoders,
)

_FINETUNE = ("AutoencoderInfo", "finetune_autoencoder", "load_autoencoder",
             "load_pretrained_vae")


def __getattr__(name: str) -> Any:
    if name in _FINETUNE:
        from diffad.autoencoder import finetune

        return getattr(finetune, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AutoencoderInfo", "AutoencoderParams", "builtin_autoencoders", "denormalize",
           "finetune_autoencoder", "load_autoencoder", "load_pretrained_vae", "normalize",
           "resolve_autoencoders"]
