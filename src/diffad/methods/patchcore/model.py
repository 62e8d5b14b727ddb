"""PatchCore's networks and memory bank: a frozen timm CNN, patch features, kNN scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from diffad.data.loader import image_batches
from diffad.device import autocast
from diffad.io import atomic_path
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.patchcore import PatchCoreParams
from diffad.methods.patchcore.coreset import greedy_coreset
from diffad.runtime import Runtime
from diffad.training import TrainingSession
from diffad.weights import load_timm

MEMORY_BANK = "memory_bank.safetensors"


class PatchCoreModel(AnomalyModel):
    def __init__(self, params: PatchCoreParams, runtime: Runtime,
                 artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        self.backbone = load_timm(params.backbone, runtime.weights_root, features_only=True,
                                  out_indices=tuple(params.layers)).to(runtime.device).eval()
        cfg = self.backbone.pretrained_cfg
        self._mean = torch.tensor(cfg["mean"], device=runtime.device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg["std"], device=runtime.device).view(1, 3, 1, 1)
        self.memory_bank: torch.Tensor | None = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """The paper's centre crop of the resized image, where one is set."""
        side = self.params.center_crop
        if side is None or side >= images.shape[-1]:
            return images
        top = (images.shape[-1] - side) // 2
        return images[..., top:top + side, top:top + side]

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch features, (B, embed_dim, h, w) on the finest selected stage's grid."""
        x = (self.crop(images) - self._mean) / self._std
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

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        batches = image_batches(train["image_path"].tolist(), self.runtime,
                                self.params.infer_batch_size, desc="features")
        features = [self.embed(images.to(self.runtime.device)) for images in batches]
        patches = torch.cat(features).permute(0, 2, 3, 1).reshape(-1, features[0].shape[1])
        keep = greedy_coreset(patches, self.params.coreset_ratio, self.params.projection_dim,
                              self.runtime.seed)
        self.memory_bank = patches[keep.to(patches.device)].contiguous()
        # No loss: one row records the coreset size, so the curve file is never empty.
        return pd.DataFrame({"step": [0], "loss": [float("nan")],
                             "memory_bank": [len(self.memory_bank)],
                             "patches": [len(patches)]})

    @torch.no_grad()
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        features = self.embed(images)
        b, c, h, w = features.shape
        query = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
        distances = nearest_distances(query.reshape(-1, c), self.memory_bank,
                                      self.params.patch_neighbors).reshape(b, h * w)
        best = distances.argmax(dim=1)
        s_star = distances.gather(1, best[:, None])[:, 0]
        patch_maps = distances.reshape(b, 1, h, w)
        side = images.shape[-1] if self.params.center_crop is None else min(
            self.params.center_crop, images.shape[-1])
        maps = F.interpolate(patch_maps, size=(side, side), mode="bilinear",
                             align_corners=False)
        if side < images.shape[-1]:  # the crop's map in a full-size frame; evaluate crops it
            pad = images.shape[-1] - side
            maps = F.pad(maps, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2),
                         mode="replicate")
        m_test = query[torch.arange(b), best]
        return Prediction(
            scores={"max": s_star.cpu().numpy(),
                    "reweighted": self.reweighted(m_test, s_star).cpu().numpy()},
            maps={"patch": maps[:, 0].cpu().numpy()},
        )

    def reweighted(self, m_test: torch.Tensor, s_star: torch.Tensor) -> torch.Tensor:
        """Eq. 7: s = (1 - exp(s*) / sum_{m in N_b(m*)} exp(||m_test,* - m||)) s*.

        N_b(m*) are the b = ``reweight_neighbors`` bank entries nearest to m*, the
        entry nearest to the most anomalous test patch m_test,* (m* among them, at
        distance s*): an anomalous patch far from a dense region of the bank is
        weighted up, one near a sparse, rare region down.
        """
        bank = self.memory_bank
        nearest = torch.cdist(m_test, bank).argmin(dim=1)
        b = min(self.params.reweight_neighbors, len(bank))
        support = torch.cdist(bank[nearest], bank).topk(b, largest=False).indices
        distances = torch.linalg.vector_norm(m_test[:, None] - bank[support], dim=-1)
        return (1 - torch.softmax(distances, dim=1)[:, 0]) * s_star

    def save_networks(self, folder: Path) -> None:
        with atomic_path(Path(folder) / MEMORY_BANK) as tmp:
            save_file({"memory_bank": self.memory_bank.cpu().contiguous()}, str(tmp))

    def load_networks(self, folder: Path) -> None:
        tensors = load_file(str(Path(folder) / MEMORY_BANK))
        self.memory_bank = tensors["memory_bank"].to(self.runtime.device)


def nearest_distances(
    query: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 4096
) -> torch.Tensor:
    """Mean Euclidean distance of each query row to its ``k`` nearest bank rows."""
    out = []
    for start in range(0, len(query), chunk):
        dist = torch.cdist(query[start:start + chunk], bank)
        out.append(dist.topk(min(k, len(bank)), dim=1, largest=False).values.mean(dim=1))
    return torch.cat(out)


__all__ = ["PatchCoreModel", "nearest_distances"]
