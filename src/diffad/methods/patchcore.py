"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Algorithm:

1. Features of a pretrained CNN at two intermediate stages (``layers``; for
   ``wide_resnet50_2`` timm's indices 2 and 3 are ResNet layer2 and layer3),
   each averaged over its 3x3 neighbourhood (locally aware patch features),
   the coarser one upsampled to the finer grid, concatenated, and reduced to
   ``embed_dim`` channels by adaptive average pooling over channels.
2. A memory bank of all train patch features, subsampled by greedy k-center
   coreset selection (``coreset_ratio``) on a random projection to
   ``projection_dim`` dimensions (Johnson-Lindenstrauss) for speed.
3. At test time each patch's score is its distance to the nearest memory
   bank entry. The image score is the maximum patch score; the anomaly map is
   the patch score grid upsampled bilinearly to the image and smoothed by a
   Gaussian of ``sigma`` = 4 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from diffad.device import autocast
from diffad.io import atomic_path
from diffad.methods.base import AnomalyMethod, BatchPrediction, Runtime
from diffad.methods.loader import image_batches
from diffad.methods.registry import register_method
from diffad.models.weights import load_pretrained


@dataclass
class PatchCoreParams:
    backbone: str = "wide_resnet50_2"
    layers: tuple[int, ...] = (2, 3)  #: timm ``features_only`` stage indices
    embed_dim: int = 1024
    coreset_ratio: float = 0.1
    projection_dim: int = 128
    num_neighbors: int = 1
    sigma: float = 4.0
    batch_size: int = 8


@register_method
class PatchCore(AnomalyMethod):
    kind = "patchcore"
    Params = PatchCoreParams
    inference_params = frozenset({"num_neighbors", "sigma", "batch_size"})

    def __init__(self, params: PatchCoreParams, runtime: Runtime):
        super().__init__(params, runtime)
        self.backbone = load_pretrained(
            params.backbone, runtime.weights_root, features_only=True,
            out_indices=tuple(params.layers),
        ).to(runtime.device).eval()
        cfg = self.backbone.pretrained_cfg
        self._mean = torch.tensor(cfg["mean"], device=runtime.device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg["std"], device=runtime.device).view(1, 3, 1, 1)
        self.memory_bank: torch.Tensor | None = None

    @classmethod
    def weight_names(cls, params: PatchCoreParams) -> list[str]:
        return [params.backbone]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch features, (B, embed_dim, h, w) on the finest selected stage's grid."""
        x = (images - self._mean) / self._std
        with autocast(self.runtime.device):
            stages = self.backbone(x)
        stages = [F.avg_pool2d(s.float(), kernel_size=3, stride=1, padding=1) for s in stages]
        size = stages[0].shape[-2:]
        stages = [s if s.shape[-2:] == size else
                  F.interpolate(s, size=size, mode="bilinear", align_corners=False)
                  for s in stages]
        features = torch.cat(stages, dim=1)
        b, c, h, w = features.shape
        if c > self.params.embed_dim:
            flat = features.permute(0, 2, 3, 1).reshape(-1, 1, c)
            flat = F.adaptive_avg_pool1d(flat, self.params.embed_dim)
            features = flat.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return features

    def fit(self, image_paths: list[str], checkpoint_dir: Path | None = None) -> pd.DataFrame:
        batches = image_batches(image_paths, self.runtime, self.params.batch_size, desc="features")
        features = [self.embed(images.to(self.runtime.device)) for images in batches]
        patches = torch.cat(features).permute(0, 2, 3, 1).reshape(-1, features[0].shape[1])
        keep = greedy_coreset(
            patches, self.params.coreset_ratio, self.params.projection_dim, self.runtime.seed
        )
        self.memory_bank = patches[keep].contiguous()
        # PatchCore has no loss: an empty curve keeps the training contract uniform.
        return pd.DataFrame({"step": pd.Series(dtype="int64"), "loss": pd.Series(dtype="float64")})

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> BatchPrediction:
        if self.memory_bank is None:
            raise RuntimeError("PatchCore.predict before fit() or load()")
        features = self.embed(images)
        b, c, h, w = features.shape
        query = features.permute(0, 2, 3, 1).reshape(-1, c)
        distances = nearest_distances(query, self.memory_bank, self.params.num_neighbors)
        patch_scores = distances.reshape(b, 1, h, w)
        scores = patch_scores.flatten(1).amax(dim=1)
        maps = F.interpolate(patch_scores, size=images.shape[-2:], mode="bilinear",
                             align_corners=False)
        radius = int(4 * self.params.sigma + 0.5)
        maps = gaussian_blur(maps, kernel_size=2 * radius + 1, sigma=self.params.sigma)
        return BatchPrediction(scores=scores.cpu().numpy(), maps=maps[:, 0].cpu().numpy())

    def save(self, folder: Path) -> None:
        with atomic_path(Path(folder) / "model.safetensors") as tmp:
            save_file({"memory_bank": self.memory_bank.cpu().contiguous()}, str(tmp))

    def load(self, folder: Path) -> None:
        tensors = load_file(str(Path(folder) / "model.safetensors"))
        self.memory_bank = tensors["memory_bank"].to(self.runtime.device)


def greedy_coreset(
    features: torch.Tensor, ratio: float, projection_dim: int, seed: int
) -> torch.Tensor:
    """Indices of a greedy k-center coreset of ``ratio * len(features)`` rows.

    Each step adds the row farthest from the rows chosen so far, so the
    coreset covers the feature space the way the full bank does (PatchCore,
    Sec. 3.2). Distances are computed on a random Gaussian projection.
    """
    n, dim = features.shape
    k = max(1, min(n, math.ceil(n * ratio)))
    if k == n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    reduced = features
    if 0 < projection_dim < dim:
        projection = torch.randn(dim, projection_dim, generator=generator)
        reduced = features @ (projection / math.sqrt(projection_dim)).to(features.device)
    start = int(torch.randint(n, (1,), generator=generator))
    selected = torch.empty(k, dtype=torch.long)
    min_dist = torch.full((n,), float("inf"), device=features.device)
    index = start
    for i in tqdm(range(k), desc="coreset", mininterval=2.0, leave=False):
        selected[i] = index
        dist = (reduced - reduced[index]).pow(2).sum(dim=1)
        min_dist = torch.minimum(min_dist, dist)
        index = int(min_dist.argmax())
    return selected


def nearest_distances(
    query: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 4096
) -> torch.Tensor:
    """Mean Euclidean distance of each query row to its ``k`` nearest bank rows."""
    out = []
    for start in range(0, len(query), chunk):
        dist = torch.cdist(query[start:start + chunk], bank)
        out.append(dist.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.cat(out)


__all__ = ["PatchCore", "PatchCoreParams", "greedy_coreset", "nearest_distances"]
