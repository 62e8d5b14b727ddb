"""Inference noise drawn per image: the same noise for an image at any batch size or order.

A diffusion method's score depends on the noise its sampler draws. Drawn from
one generator per batch, image i of every batch would share its noise, and
every score would move with the batch size, that is with the GPU's memory.
Instead each image gets its own generator, seeded from (the run's seed, the
image's identity), and every draw of a batch stacks one draw per image
(diffusers' ``randn_tensor`` and schedulers take such a list of generators).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import PurePath

import torch


def image_key(path: str) -> str:
    """An image's identity independent of where the dataset lies: the last three parts of
    its path (category or split, defect type or label, file name in every layout)."""
    return "/".join(PurePath(path).parts[-3:])


def image_generators(seed: int, paths: Sequence[str]) -> list[torch.Generator]:
    """One CPU generator per image, seeded from (``seed``, :func:`image_key`)."""
    generators = []
    for path in paths:
        digest = hashlib.sha256(f"{seed}:{image_key(path)}".encode()).digest()
        generators.append(torch.Generator().manual_seed(int.from_bytes(digest[:8], "little")
                                                        >> 1))
    return generators


def image_noise(shape: Sequence[int], generators: list[torch.Generator],
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise of ``shape`` (batch first), row i drawn from generator i."""
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generators]
                       ).to(device)


__all__ = ["image_generators", "image_key", "image_noise"]
