"""Batches of images for the methods, read through the dataset loaders."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from diffad.data import load_image
from diffad.methods.base import Runtime


class ImageFiles(Dataset):
    """RGB images resized to ``size`` x ``size``, as (3, H, W) float tensors in [0, 1]."""

    def __init__(self, paths: list[str], size: int):
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.paths[index], self.size)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def image_batches(
    paths: list[str], runtime: Runtime, batch_size: int, desc: str = "images"
) -> Iterator[torch.Tensor]:
    """Yield (B, 3, H, W) batches in the order of ``paths``, with a progress bar."""
    loader = DataLoader(
        ImageFiles(paths, runtime.image_size), batch_size=batch_size, shuffle=False,
        num_workers=runtime.num_workers, pin_memory=runtime.device.type == "cuda",
    )
    yield from tqdm(loader, desc=desc, unit="batch", mininterval=2.0)
