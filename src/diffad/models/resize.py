"""Resizing image batches and anomaly maps between a network's side and the dataset's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, side, side), bilinear with antialiasing (a no-op at ``side``)."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True,
                         align_corners=False)


def upsample_maps(maps: torch.Tensor, side: int) -> torch.Tensor:
    """(B, h, w) anomaly maps -> (B, side, side), bilinear, no antialiasing (maps are
    enlarged, and a map must keep its peaks)."""
    return F.interpolate(maps[:, None].float(), size=(side, side), mode="bilinear",
                         align_corners=False)[:, 0]


__all__ = ["resize", "upsample_maps"]
