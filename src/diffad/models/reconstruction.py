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
    averaged, data range 1);
``lpips``
    where a perceptual network is given: the LPIPS distance
    (:class:`diffad.models.perceptual.LPIPS`, the report's "optionally
    perceptual" term).

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


class ReconstructionDetectors:
    """Paper 000's detectors of one inference: CLIP tower ``clip_weights`` (open_clip) and,
    where ``perceptual_weights`` (timm) is given, LPIPS on it; each network is loaded on
    first use."""

    def __init__(self, clip_weights: str, runtime: Runtime,
                 perceptual_weights: str | None = None):
        self.clip_weights, self.perceptual_weights = clip_weights, perceptual_weights
        self.runtime = runtime
        self._clip: ClipImageDistance | None = None
        self._lpips = None

    def clip(self) -> ClipImageDistance:
        if self._clip is None:
            self._clip = ClipImageDistance(self.clip_weights, self.runtime)
        return self._clip

    def lpips(self):
        if self._lpips is None:
            from diffad.models.perceptual import LPIPS

            self._lpips = LPIPS(self.perceptual_weights, self.runtime)
        return self._lpips

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(scores, maps): ``mse``, ``clip``, ``ssim`` (and ``lpips``) per image; ``sq`` and
        ``abs`` maps, for images and reconstructions of one size in [0, 1]."""
        error = images - reconstructions
        scores = {"mse": error.pow(2).mean(dim=(1, 2, 3)).cpu().numpy(),
                  "clip": self.clip()(images, reconstructions).cpu().numpy(),
                  "ssim": ssim_distance(images, reconstructions)}
        if self.perceptual_weights is not None:
            scores["lpips"] = self.lpips()(images, reconstructions.clamp(0, 1)).cpu().numpy()
        maps = {"sq": error.pow(2).mean(dim=1).cpu().numpy(),
                "abs": error.abs().mean(dim=1).cpu().numpy()}
        return scores, maps


__all__ = ["ClipImageDistance", "ReconstructionDetectors", "ssim_distance"]
