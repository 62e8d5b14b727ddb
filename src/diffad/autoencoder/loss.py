"""LDM's autoencoder loss (``LPIPSWithDiscriminator``), one micro-batch at a time.

What LDM's ``ldm/modules/losses/contperceptual.py`` computes for a batch of
B images x (in the VAE's pixel space) and their reconstructions x_rec from a
posterior sample z ~ q(z | x):

``rec`` (LDM's ``nll_loss``)
    per pixel |x - x_rec| plus ``perceptual_weight`` times the image's LPIPS
    distance (a (B, 1, 1, 1) value added to every pixel), SUMMED over pixels
    and channels and divided by B. LDM divides by exp(logvar) and adds
    logvar, but its learnable ``logvar`` is in no optimizer, so it stays 0
    and is left out here. The sum makes LPIPS count C * H * W times.
``kl``
    the posterior's KL to N(0, I) summed over the latent elements, / B;
    weighted by ``kl_weight`` (1e-6).
``g``
    the generator's adversarial loss -mean(D(x_rec)), weighted by
    ``d_weight`` = ||grad rec|| / (||grad g|| + 1e-4) at the weight of the
    decoder's last layer, clamped to [0, 1e4] and detached, times
    ``disc_weight`` (LDM's ``calculate_adaptive_weight``).
``d``
    the discriminator's hinge loss 0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x_rec)))
    on detached images.

Both adversarial terms carry the disc factor: 0 before ``disc_start``
optimizer steps, 1 from then on (LDM's ``adopt_weight`` on the global step).
Before it the discriminator is not even run (its terms would be multiplied
by 0): ``g``, ``d`` and ``d_weight`` are then reported as NaN.

One difference from LDM: LDM alternates two Adam optimizers (the autoencoder
on ``optimizer_idx`` 0, the discriminator on 1, each with the other's
parameters frozen). Here the shared trainer runs ONE Adam with two parameter
groups, both updated at every step, and :meth:`AutoencoderLoss.__call__`
returns one scalar rec + kl_weight kl + d_weight g + d whose backward gives
each its own gradients: D(x_rec) for ``g`` runs with the discriminator's
parameters not requiring gradients (so ``g`` reaches the autoencoder only),
and ``d`` sees detached images (so it reaches the discriminator only). The
scalar (what the trainer logs as ``loss``) is therefore the autoencoder's
loss plus the discriminator's.

Pixel spaces: the VAE and the discriminator see the images normalised as the
autoencoder's ``normalization`` says (the authors: ImageNet mean/std); LPIPS
sees them mapped back to [0, 1] and applies its own network's normalisation.
(The authors' code hands LDM's LPIPS, which expects [-1, 1], the
ImageNet-normalised tensors; we give LPIPS the images it was calibrated on.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffad.autoencoder.params import AutoencoderParams, Normalization, denormalize, normalize
from diffad.models.perceptual import LPIPS

#: LDM's ``calculate_adaptive_weight``: epsilon of the ratio and its upper clamp.
ADAPTIVE_EPS, ADAPTIVE_MAX = 1e-4, 1e4
PARTS = ("rec", "kl", "g", "d", "d_weight")


@dataclass(frozen=True)
class LossWeights:
    """The loss's weights and the step from which the discriminator is on."""

    kl_weight: float = 1e-6
    perceptual_weight: float = 1.0
    disc_weight: float = 0.5
    disc_start: int = 50001

    @classmethod
    def of(cls, params: AutoencoderParams) -> LossWeights:
        return cls(kl_weight=params.kl_weight, perceptual_weight=params.perceptual_weight,
                   disc_weight=params.disc_weight, disc_start=params.disc_start)


def disc_factor(step: int, disc_start: int) -> float:
    """LDM's ``adopt_weight``: 0 while fewer than ``disc_start`` optimizer steps are done."""
    return 0.0 if step < disc_start else 1.0


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss (taming's ``hinge_d_loss``)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec: torch.Tensor, g: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float) -> torch.Tensor:
    """``disc_weight`` * ||d rec / d W|| / (||d g / d W|| + 1e-4), clamped to [0, 1e4],
    detached; W: the decoder's last layer weight (the graph is kept for backward)."""
    rec_grad = torch.autograd.grad(rec, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + ADAPTIVE_EPS)
    return weight.clamp(0.0, ADAPTIVE_MAX).detach() * disc_weight


def sample_posterior(posterior: Any, generator: torch.Generator) -> torch.Tensor:
    """z = mean + std * eps with eps drawn from ``generator`` on the CPU (the trainer's
    generator, so that a resumed run draws the same noise), then moved to the device."""
    eps = torch.randn(posterior.mean.shape, generator=generator)
    return posterior.mean + posterior.std * eps.to(posterior.mean.device, posterior.mean.dtype)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters do not require gradients inside the block."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class AutoencoderLoss:
    """LDM's ``LPIPSWithDiscriminator`` on a diffusers ``AutoencoderKL`` (module docstring).

    ``perceptual`` None (or ``perceptual_weight`` 0) leaves LPIPS out;
    ``discriminator`` None leaves the adversarial terms out at every step.
    """

    def __init__(self, vae: nn.Module, discriminator: nn.Module | None,
                 perceptual: LPIPS | None, weights: LossWeights,
                 normalization: Normalization):
        self.vae, self.discriminator, self.perceptual = vae, discriminator, perceptual
        self.weights, self.normalization = weights, normalization

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive weight is measured at (LDM: ``decoder.conv_out.weight``)."""
        return self.vae.decoder.conv_out.weight

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """(one scalar to backpropagate, its parts as floats) for (B, 3, H, W) images in
        [0, 1] after ``step`` optimizer steps."""
        w = self.weights
        x = normalize(images, self.normalization)
        posterior = self.vae.encode(x).latent_dist
        x_rec = self.vae.decode(sample_posterior(posterior, generator)).sample
        batch = x.shape[0]
        l1 = (x.float() - x_rec.float()).abs().sum()
        rec = l1
        if self.perceptual is not None and w.perceptual_weight > 0:
            distance = self.perceptual(denormalize(x, self.normalization),
                                       denormalize(x_rec, self.normalization))
            # LDM adds the (B, 1, 1, 1) LPIPS value to every pixel's L1 before summing.
            rec = rec + w.perceptual_weight * distance.sum() * x[0].numel()
        rec = rec / batch
        kl = posterior.kl().float().sum() / batch
        loss = rec + w.kl_weight * kl
        parts = {"rec": float(rec.detach()), "kl": float(kl.detach()), "g": math.nan,
                 "d": math.nan, "d_weight": math.nan}
        factor = disc_factor(step, w.disc_start)
        if self.discriminator is None or factor == 0:
            return loss, parts
        with frozen(self.discriminator):
            g = -self.discriminator(x_rec).float().mean()
        d_weight = adaptive_weight(rec, g, self.last_layer, w.disc_weight)
        d = hinge_d_loss(self.discriminator(x.detach()).float(),
                         self.discriminator(x_rec.detach()).float())
        loss = loss + d_weight * factor * g + factor * d
        parts.update(g=float(g.detach()), d=float(d.detach()), d_weight=float(d_weight))
        return loss, parts


__all__ = ["ADAPTIVE_EPS", "ADAPTIVE_MAX", "PARTS", "AutoencoderLoss", "LossWeights",
           "adaptive_weight", "disc_factor", "frozen", "hinge_d_loss", "sample_posterior"]
