"""Frozen backbone features at one stride, and their on-disk cache.

Feature-space diffusion (paper 001, Sec. 4.3) trains and inverts in the
space of a pretrained CNN. Several stages of ``timm``'s ``features_only``
model are average-pooled (finer stages) or resized (coarser ones) to one grid
of ``stride`` and concatenated: for ``efficientnet_b4`` stages 0-3 give
24 + 32 + 56 + 160 = 272 channels on a 16 x 16 grid for a 256 input, the
layout of the authors' public code.

Extracting features is the costly part of a grid of inference variants, so
:func:`cached_features` keeps them per (backbone setting, image list) under
``<cache_dir>/features/``, together with the backbone's measured latency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from diffad.data.loader import image_batches
from diffad.device import autocast, synchronize
from diffad.io import atomic_path
from diffad.runtime import Runtime
from diffad.weights import load_timm

log = logging.getLogger(__name__)


class FeatureExtractor(torch.nn.Module):
    """Concatenated, stride-aligned stages of a frozen pretrained timm backbone."""

    def __init__(self, backbone: str, stages: tuple[int, ...], stride: int, runtime: Runtime,
                 stage_resize: str = "area", interpolation: str = "bicubic"):
        super().__init__()
        self.name, self.stages, self.stride = backbone, tuple(stages), stride
        self.stage_resize, self.interpolation = stage_resize, interpolation
        self.runtime = runtime
        self.model = load_timm(backbone, runtime.weights_root, features_only=True,
                               out_indices=self.stages).to(runtime.device).eval()
        self.model.requires_grad_(False)
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))
        self.to(runtime.device)

    @property
    def channels(self) -> int:
        return sum(self.model.feature_info.channels())

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, channels, H / stride, W / stride)."""
        size = (images.shape[-2] // self.stride, images.shape[-1] // self.stride)
        with autocast(self.runtime.device):
            maps = self.model((images - self.mean) / self.std)
        # `area`: averaging for finer stages (no aliasing); `bilinear` (the official
        # code of paper 001) samples them. Coarser stages are upsampled bilinearly.
        return torch.cat([
            F.adaptive_avg_pool2d(m.float(), size)
            if m.shape[-1] >= size[-1] and self.stage_resize == "area"
            else F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False)
            for m in maps
        ], dim=1)

    def key(self, paths: list[str]) -> str:
        """Identifies the features of ``paths``: backbone setting, size, files and their mtimes."""
        files = [(p, st.st_size, st.st_mtime_ns) for p in paths for st in [os.stat(p)]]
        blob = json.dumps([self.name, self.stages, self.stride, self.runtime.image_size,
                           self.stage_resize, self.interpolation, files])
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def extract(extractor: FeatureExtractor, paths: list[str], batch_size: int,
            desc: str = "features") -> tuple[torch.Tensor, float]:
    """Features of ``paths`` (on the CPU) and the backbone's mean ms per image.

    The first batch is run once untimed (allocator and kernel warm-up).
    """
    runtime = extractor.runtime
    chunks, elapsed, warm = [], 0.0, False
    for images in image_batches(paths, runtime, batch_size, desc=desc,
                                interpolation=extractor.interpolation):
        images = images.to(runtime.device)
        if not warm:
            extractor(images)
            warm = True
        synchronize(runtime.device)
        start = time.perf_counter()
        chunks.append(extractor(images))
        synchronize(runtime.device)
        elapsed += time.perf_counter() - start
    return torch.cat(chunks).cpu(), 1000 * elapsed / len(paths)


def cached_features(extractor: FeatureExtractor, paths: list[str], batch_size: int,
                    cache_dir: str | os.PathLike | None, desc: str = "features",
                    ) -> tuple[torch.Tensor, float]:
    """:func:`extract`, read from / written to ``cache_dir`` when one is given."""
    if cache_dir is None:
        return extract(extractor, paths, batch_size, desc)
    path = Path(cache_dir) / "features" / f"{extractor.key(paths)}.safetensors"
    if path.is_file():
        tensors = load_file(str(path))
        log.info("features from cache %s", path)
        return tensors["features"], float(tensors["backbone_ms"])
    features, backbone_ms = extract(extractor, paths, batch_size, desc)
    with atomic_path(path) as tmp:
        save_file({"features": features.contiguous(),
                   "backbone_ms": torch.tensor(backbone_ms, dtype=torch.float64)}, str(tmp))
    return features, backbone_ms

