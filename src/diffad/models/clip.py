"""A frozen CLIP image tower (open_clip) with CLIP's input preprocessing.

Paper 000 compares an image and its reconstruction by their CLIP ViT-B/32
embeddings and names a baseline on CLIP's patch tokens; both read the tower
through :class:`ClipVision`: square (B, 3, H, W) images in [0, 1] are resized
(bilinear, antialiased) to the tower's side (a square image needs no centre
crop) and normalised by CLIP's mean and standard deviation.
"""

from __future__ import annotations

import torch

from diffad.device import autocast
from diffad.models.resize import resize
from diffad.runtime import Runtime
from diffad.weights import load_open_clip


class ClipVision(torch.nn.Module):
    """``images -> (projected embeddings (B, D), patch tokens (B, P, W))``, frozen.

    The tokens are the last layer's patch tokens after its final layer norm, before the
    projection (open_clip's ``output_tokens``)."""

    def __init__(self, name: str, runtime: Runtime):
        super().__init__()
        model, _, _ = load_open_clip(name, runtime.weights_root)
        self.visual = model.visual.eval().requires_grad_(False)
        self.visual.output_tokens = True
        side = self.visual.image_size
        self.side = side[0] if isinstance(side, (tuple, list)) else int(side)
        self.register_buffer("mean", torch.tensor(self.visual.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.visual.image_std).view(1, 3, 1, 1))
        self.device = runtime.device
        self.to(runtime.device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = resize(images.to(self.device).clamp(0, 1), self.side)
        with autocast(self.device):
            pooled, tokens = self.visual((x - self.mean) / self.std)
        return pooled.float(), tokens.float()


__all__ = ["ClipVision"]
