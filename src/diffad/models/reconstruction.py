"""How far a reconstruction is from its input: paper 000's pixel, semantic and structural
distances, and its two anomaly maps.

Per image (B,):

``mse``
    the mean squared error over pixels and channels, images in [0, 1];
``clip``
    1 - cosine similarity of the CLIP image embeddings of input and
    reconstruction (the report's S_CLIP; its notebook: OpenAI's ViT-B/32,
    the projected 512-d embeddings, CLIP's 224-px input; :class:`ClipVision`);
``ssim``
    1 - SSIM (scikit-image, Gaussian-free 7 x 7 windows, colour channels
    averaged, data range 1).

Per pixel (B, H, W): ``sq`` the channel mean of the squared error and ``abs``
the channel mean of the absolute error (the map the notebook draws).
"""

from __future__ import annotations

import numpy as np
import torch

from diffad.models.clip import ClipVision
from diffad.runtime import Runtime


class ClipImageDistance(torch.nn.Module):
    """``1 - cos(CLIP(x), CLIP(x_hat))`` of the projected embeddings of a frozen CLIP tower."""

    def __init__(self, name: str, runtime: Runtime):
        super().__init__()
        self.vision = ClipVision(name, runtime)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        a, b = self.vision(images)[0], self.vision(reconstructions)[0]
        return 1 - torch.nn.functional.cosine_similarity(a, b, dim=1)


def ssim_distance(images: torch.Tensor, reconstructions: torch.Tensor) -> np.ndarray:
    """(B,) 1 - SSIM of each pair of (B, 3, H, W) images in [0, 1]."""
    from skimage.metrics import structural_similarity

    a = images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    b = reconstructions.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return np.array([1 - structural_similarity(x, y, channel_axis=2, data_range=1.0)
                     for x, y in zip(a, b, strict=True)])


def reconstruction_detectors(images: torch.Tensor, reconstructions: torch.Tensor,
                             clip: ClipImageDistance) -> tuple[dict[str, np.ndarray],
                                                               dict[str, np.ndarray]]:
    """(scores, maps) of paper 000: ``mse``, ``clip``, ``ssim`` per image; ``sq`` and ``abs``
    maps, for images and reconstructions of one size in [0, 1]."""
    error = images - reconstructions
    scores = {"mse": error.pow(2).mean(dim=(1, 2, 3)).cpu().numpy(),
              "clip": clip(images, reconstructions).cpu().numpy(),
              "ssim": ssim_distance(images, reconstructions)}
    maps = {"sq": error.pow(2).mean(dim=1).cpu().numpy(),
            "abs": error.abs().mean(dim=1).cpu().numpy()}
    return scores, maps


__all__ = ["ClipImageDistance", "reconstruction_detectors", "ssim_distance"]
