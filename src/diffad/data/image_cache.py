"""Decoded images, once per (image files, side, filter): what training reads at every step.

A training that decodes its PNGs at every step pays for the decode as often as it
sees an image (Real-IAD at 100 epochs: about 3.6 million decodes of 2-5 MP files).
:func:`cached_images` decodes each image once, resized to the training side, into
a memory-mapped uint8 array in the cache folder (``runtime.cache_dir``, under the
results root); every later run of any variant that trains on the same files at the
same side reads it from there. uint8 is what the files hold; the resize is the one
:func:`diffad.data.images.load_image` does, rounded to 8 bits.

The key is the ordered list of files with their sizes and modification times, the
side and the filter: a manifest that changes its images, or an image rewritten in
place, gets a new array (the old one stays until the cache folder is cleared).
Writes are atomic (a killed job leaves no half array behind) and decode through a
DataLoader with ``num_workers`` processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from diffad.data.loader import ImageFiles
from diffad.io import atomic_path
from diffad.logs import progress

log = logging.getLogger(__name__)

#: Bumped when the array layout or the decoding changes.
LAYOUT = 1


def cache_key(paths: list[str], size: int, interpolation: str) -> str:
    files = [(p, (s := os.stat(p)).st_size, s.st_mtime_ns) for p in paths]
    text = json.dumps([LAYOUT, size, interpolation, files])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_images(paths: list[str], size: int, cache_dir: str | os.PathLike,
                  interpolation: str = "bicubic", num_workers: int = 0) -> np.ndarray:
    """(N, 3, size, size) uint8 images of ``paths`` in their order, memory-mapped read-only;
    decoded on the first call for these files, side and filter."""
    folder = Path(cache_dir) / "images"
    array = folder / f"{cache_key(paths, size, interpolation)}.npy"
    shape = (len(paths), 3, size, size)
    if not array.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        loader = DataLoader(ImageFiles(paths, size, interpolation), batch_size=16,
                            num_workers=num_workers)
        with atomic_path(array) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            start = 0
            for batch in progress(loader, desc=f"decoding images at {size} px", unit="batch"):
                out[start:start + len(batch)] = (batch * 255).round().clamp(0, 255).to(
                    torch.uint8).numpy()
                start += len(batch)
            out.flush()
            del out
        log.info("decoded %d images at %d px once into %s", len(paths), size, array)
    images = np.load(array, mmap_mode="r")
    if images.shape != shape:
        raise ValueError(f"{array} holds {images.shape}, expected {shape}; remove it")
    return images


class CachedImages(Dataset):
    """The images of :func:`cached_images` as (3, H, W) float tensors in [0, 1]: the same
    items as :class:`~diffad.data.loader.ImageFiles`, rounded to 8 bits, without a decode."""

    def __init__(self, paths: list[str], size: int, cache_dir: str | os.PathLike | None,
                 interpolation: str = "bicubic", num_workers: int = 0):
        self.images = (cached_images(paths, size, cache_dir, interpolation, num_workers)
                       if cache_dir is not None else None)
        self.files = ImageFiles(paths, size, interpolation)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.images is None:  # no cache folder (a library call without a run): decode
            return self.files[index]
        return torch.from_numpy(np.array(self.images[index], dtype=np.float32) / 255.0)


class IndexedImages(Dataset):
    """(image, its row index) pairs of :class:`CachedImages`: a loss that batches them looks
    up what else belongs to each row (its caption, its cached posterior) by the index."""

    def __init__(self, paths: list[str], size: int, cache_dir: str | os.PathLike | None,
                 num_workers: int = 0):
        self.images = CachedImages(paths, size, cache_dir, num_workers=num_workers)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], index


__all__ = ["CachedImages", "IndexedImages", "cache_key", "cached_images"]
