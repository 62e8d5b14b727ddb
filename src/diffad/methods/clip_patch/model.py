"""A memory bank of CLIP ViT patch tokens and its nearest-neighbour cosine distance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from diffad.data.loader import image_batches
from diffad.methods.base import AnomalyModel, Artefacts, Prediction
from diffad.methods.clip_patch import ClipPatchParams
from diffad.models.clip import ClipVision
from diffad.models.resize import upsample_maps
from diffad.runtime import Runtime
from diffad.training import TrainingSession

BANK_FILE = "memory_bank.safetensors"


class ClipPatchModel(AnomalyModel):
    def __init__(self, params: ClipPatchParams, runtime: Runtime,
                 artefacts: Artefacts | None = None):
        super().__init__(params, runtime, artefacts)
        self.vision = ClipVision(params.clip_weights, runtime)
        self.bank: torch.Tensor | None = None

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, P, D) unit patch tokens of (B, 3, H, W) images in [0, 1]."""
        return F.normalize(self.vision(images)[1], dim=-1)

    def fit(self, train: pd.DataFrame, session: TrainingSession) -> pd.DataFrame:
        batches = image_batches(train["image_path"].tolist(), self.runtime,
                                self.params.infer_batch_size, desc="CLIP patch tokens")
        self.bank = torch.cat([self.tokens(b).flatten(0, 1).cpu() for b in batches])
        return pd.DataFrame({"step": [0], "loss": [0.0]})

    @torch.no_grad()
    def predict(self, images: torch.Tensor, rows: pd.DataFrame) -> Prediction:
        tokens = self.tokens(images)  # (B, P, D)
        bank = self.bank.to(tokens.device)
        best = torch.full(tokens.shape[:2], -1.0, device=tokens.device)
        for start in range(0, len(bank), 16384):  # bounded memory for large banks
            best = torch.maximum(best, (tokens @ bank[start:start + 16384].T).amax(dim=-1))
        grid = int(round(tokens.shape[1] ** 0.5))
        patch = (1 - best).view(len(images), grid, grid)
        maps = upsample_maps(patch, images.shape[-1]).cpu().numpy()
        return Prediction(scores={"max": maps.reshape(len(maps), -1).max(axis=1)},
                          maps={"patch": maps})

    def num_parameters(self) -> int:
        return sum(q.numel() for q in self.vision.parameters())

    def save_networks(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file({"bank": self.bank.contiguous()}, str(Path(folder) / BANK_FILE))

    def load_networks(self, folder: Path) -> None:
        self.bank = load_file(str(Path(folder) / BANK_FILE))["bank"]


__all__ = ["ClipPatchModel"]
