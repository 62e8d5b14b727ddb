"""Batches of images for models and methods, read through :func:`~diffad.data.load_image`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from diffad.data.images import load_image
from diffad.logs import progress
from diffad.runtime import Runtime


class ImageFiles(Dataset):
    """RGB images resized to ``size`` x ``size``, as (3, H, W) float tensors in [0, 1]."""

    def __init__(self, paths: list[str], size: int, interpolation: str = "bicubic"):
        self.paths = list(paths)
        self.size = size
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.paths[index], self.size, self.interpolation)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def image_batches(
    paths: list[str], runtime: Runtime, batch_size: int, desc: str = "images",
    interpolation: str = "bicubic",
) -> Iterator[torch.Tensor]:
    """Yield (B, 3, H, W) batches in the order of ``paths``, with a progress report."""
    loader = DataLoader(
        ImageFiles(paths, runtime.image_size, interpolation), batch_size=batch_size,
        shuffle=False,
        num_workers=runtime.num_workers, pin_memory=runtime.device.type == "cuda",
    )
    yield from progress(loader, desc=desc, unit="batch")
