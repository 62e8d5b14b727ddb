"""Reconstruction-free anomaly detection by DDIM inversion in feature space (paper 001).

Training (Sec. 5.1): a diffusers ``UNet2DModel`` learns the epsilon
objective (Eq. 9, gamma = 1) on normalized backbone features of the normal
images (:mod:`diffad.models.features`), T = 1000, linear betas, AdamW with a
cosine learning rate. A checkpoint every ``checkpoint_every`` epochs lets a
killed job resume where it stopped, to the same final weights.

Inference, ``mode: inversion`` (Sec. 4.2, Algorithm 1): the features x_0
are inverted deterministically to x_T over S evenly spaced steps (Eq. 15,
exactly S UNet evaluations), then scored by

``nll``
    the negative log-likelihood of x_T under N(0, I);
``norm``
    the spatial norm map ||x_T(:, i, j)||_2 (Eq. 17): image score max - min;
``combined``
    Algorithm 1: min-max normalized NLL plus min-max normalized max - min.
    As in the paper, the normalization uses the range of the *test split*,
    so a score depends on the other test images;
``combined_train``
    the same sum with each term standardized by its mean and standard
    deviation over the train split, so scores are independent of the test set.

Every variant's pixel map is the norm map, bilinearly upsampled to the image.

``mode: reconstruction`` is the baseline of Table 4: x_0 is noised (Eq. 7)
to the timestep ``start_percent`` of the way along the S-step grid and
denoised back with DDIM; the map is the per-location squared feature error,
the image score its maximum. It shares the trained model with inversion.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from diffad.device import autocast, synchronize
from diffad.errors import TrainingError
from diffad.io import atomic_path
from diffad.methods.base import AnomalyMethod, BatchPrediction, Runtime
from diffad.methods.registry import register_method
from diffad.models.ddim import inversion_path, run_ddim, step_grid
from diffad.models.features import FeatureExtractor, cached_features

log = logging.getLogger(__name__)

SCORES = ("nll", "norm", "combined", "combined_train")


@dataclass
class LatentInversionParams:
    # Feature space (Sec. 4.3)
    backbone: str = "efficientnet_b4"
    stages: tuple[int, ...] = (0, 1, 2, 3)  #: timm features_only stages, concatenated
    feature_stride: int = 16
    # Diffusion model (diffusers UNet2DModel); the paper does not give its size.
    block_out_channels: tuple[int, ...] = (256, 512, 512)
    layers_per_block: int = 2
    attention: bool = True  #: self-attention in the lowest-resolution blocks
    train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # Training (Sec. 5.1)
    epochs: int = 1000
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    checkpoint_every: int = 50  #: epochs between resumable checkpoints
    # Inference
    mode: str = "inversion"
    steps: int = 2  #: S
    score: str = "combined"
    start_percent: int = 20  #: reconstruction: where denoising starts, % of the S-step grid

    CHOICES: ClassVar[dict[str, tuple]] = {"mode": ("inversion", "reconstruction"),
                                           "score": SCORES}


@register_method
class LatentInversion(AnomalyMethod):
    kind = "latent_inversion"
    Params = LatentInversionParams
    inference_params = frozenset({"mode", "steps", "score", "start_percent"})

    def __init__(self, params: LatentInversionParams, runtime: Runtime):
        super().__init__(params, runtime)
        from diffusers import DDPMScheduler

        self.extractor = FeatureExtractor(params.backbone, params.stages, params.feature_stride,
                                          runtime)
        self.scheduler = DDPMScheduler(
            num_train_timesteps=params.train_timesteps, beta_schedule="linear",
            beta_start=params.beta_start, beta_end=params.beta_end,
            prediction_type="epsilon",
        )
        self.unet = build_unet(params, self.extractor.channels,
                               runtime.image_size // params.feature_stride).to(runtime.device)
        channels = self.extractor.channels
        self.feature_mean = torch.zeros(1, channels, 1, 1)
        self.feature_std = torch.ones(1, channels, 1, 1)
        self.train_score_stats: tuple[float, float, float, float] | None = None

    @classmethod
    def applicable(cls, resolved: dict[str, Any]) -> bool:
        if resolved.get("mode") != "reconstruction":
            return True
        # Table 4's "-" cells: a start before the grid's first step leaves nothing to denoise.
        return resolved["steps"] * resolved["start_percent"] // 100 >= 1

    @classmethod
    def weight_names(cls, params: LatentInversionParams) -> list[str]:
        return [params.backbone]

    @property
    def nfe(self) -> int:
        if self.params.mode == "inversion":
            return self.params.steps
        return self.params.steps * self.params.start_percent // 100

    def num_parameters(self) -> int:
        return (sum(p.numel() for p in self.unet.parameters())
                + sum(p.numel() for p in self.extractor.model.parameters()))

    # ----------------------------------------------------------------- features

    def features(self, paths: list[str], desc: str = "features") -> tuple[torch.Tensor, float]:
        """Backbone features of ``paths`` (cached on disk) and backbone ms per image."""
        return cached_features(self.extractor, paths, self.params.batch_size,
                               self.runtime.cache_dir, desc)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        mean, std = self.feature_mean.to(features.device), self.feature_std.to(features.device)
        return (features - mean) / std

    # ----------------------------------------------------------------- training

    def fit(self, image_paths: list[str], checkpoint_dir: Path | None = None,
            on_epoch_end: Callable[[int], None] | None = None) -> pd.DataFrame:
        features, _ = self.features(image_paths, desc="train features")
        # Per-channel statistics of the train split (Sec. 4.3: the diffusion model
        # expects unit-scale data like images in [-1, 1]).
        self.feature_mean = features.mean(dim=(0, 2, 3), keepdim=True)
        self.feature_std = features.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        data = self.normalize(features)
        return train_epsilon(self.unet, self.scheduler, data, self.params, self.runtime,
                             checkpoint_dir, on_epoch_end)

    # ---------------------------------------------------------------- inference

    def _eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        timestep = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        with autocast(self.runtime.device):
            return self.unet(x, timestep).sample

    @torch.no_grad()
    def invert(self, x0: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """x_T of normalized features ``x0`` by S-step DDIM inversion (Eq. 15)."""
        self.unet.eval()
        path = inversion_path(steps or self.params.steps, self.scheduler.alphas_cumprod)
        return run_ddim(self._eps, x0, path)

    @torch.no_grad()
    def sample(self, xt: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """DDIM sampling (Eq. 12, sigma = 0) from tau_S back to the data, S evaluations."""
        self.unet.eval()
        path = inversion_path(steps or self.params.steps, self.scheduler.alphas_cumprod)
        return run_ddim(self._eps, xt, path[::-1])

    @torch.no_grad()
    def reconstruct(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Table 4's baseline: noise x0 to tau_k (Eq. 7) and denoise k DDIM steps."""
        self.unet.eval()
        alphas = self.scheduler.alphas_cumprod
        k = self.nfe
        grid = step_grid(self.params.steps, len(alphas))[:k]
        path = [(0, 1.0)] + [(t, float(alphas[t])) for t in grid]
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        alpha = path[-1][1]
        xt = alpha**0.5 * x0 + (1 - alpha) ** 0.5 * noise
        return run_ddim(self._eps, xt, path[::-1])

    def _train_score_stats(self, train_paths: list[str]) -> tuple[float, float, float, float]:
        """Mean and std of NLL and of max - min over the train split, at this variant's S."""
        features, _ = self.features(train_paths, desc="train features")
        nll, spread = [], []
        for start in range(0, len(features), self.params.batch_size):
            batch = features[start:start + self.params.batch_size].to(self.runtime.device)
            xt = self.invert(self.normalize(batch)).float()
            norm = xt.norm(dim=1).flatten(1)
            nll.append(gaussian_nll(xt).cpu())
            spread.append((norm.amax(1) - norm.amin(1)).cpu())
        nll_all, spread_all = torch.cat(nll).double(), torch.cat(spread).double()
        return (float(nll_all.mean()), float(nll_all.std()), float(spread_all.mean()),
                float(spread_all.std()))

    @torch.no_grad()
    def predict_features(self, features: torch.Tensor, image_size: int,
                         generator: torch.Generator | None = None) -> BatchPrediction:
        """Scores and maps of raw backbone ``features`` on ``runtime.device``."""
        x0 = self.normalize(features)
        if self.params.mode == "reconstruction":
            x0_hat = self.reconstruct(x0, generator or torch.Generator().manual_seed(0))
            error = (x0_hat.float() - x0).pow(2).mean(dim=1, keepdim=True)
            maps = upsample(error, image_size)
            return BatchPrediction(scores=error.flatten(1).amax(1).cpu().numpy(),
                                   maps=maps.cpu().numpy(), detectors={})
        xt = self.invert(x0).float()
        norm = xt.norm(dim=1, keepdim=True)
        nll = gaussian_nll(xt)
        spread = norm.flatten(1).amax(1) - norm.flatten(1).amin(1)
        detectors = {"nll": nll.cpu().numpy(), "norm": spread.cpu().numpy()}
        # `combined*` needs the whole split: combine_scores replaces this per-batch value.
        score = detectors["nll" if self.params.score == "nll" else "norm"]
        return BatchPrediction(scores=score, maps=upsample(norm, image_size).cpu().numpy(),
                               detectors=detectors)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> BatchPrediction:
        return self.predict_features(self.extractor(images), images.shape[-1])

    def score_files(self, paths: list[str], batch_size: int, train_paths: list[str]
                    ) -> Iterator[tuple[BatchPrediction, float]]:
        # Features come from the cache shared by all variants of this backbone;
        # the backbone's own time, measured when they were extracted, is added
        # to each image's latency.
        if self.params.mode == "inversion" and self.params.score == "combined_train":
            self.train_score_stats = self._train_score_stats(train_paths)
        features, backbone_ms = self.features(paths, desc="test features")
        generator = torch.Generator().manual_seed(self.runtime.seed)
        batches = [features[i:i + batch_size] for i in range(0, len(features), batch_size)]
        self.predict_features(batches[0].to(self.runtime.device), self.runtime.image_size,
                              torch.Generator().manual_seed(0))  # warm-up, untimed
        for batch in tqdm(batches, desc="inference", unit="batch", mininterval=2.0):
            batch = batch.to(self.runtime.device)
            synchronize(self.runtime.device)
            start = time.perf_counter()
            pred = self.predict_features(batch, self.runtime.image_size, generator)
            synchronize(self.runtime.device)
            yield pred, backbone_ms + 1000 * (time.perf_counter() - start) / len(batch)

    def combine_scores(self, scores: np.ndarray, detectors: dict[str, np.ndarray]) -> np.ndarray:
        if self.params.mode != "inversion" or self.params.score not in ("combined",
                                                                         "combined_train"):
            return scores
        nll, spread = detectors["nll"], detectors["norm"]
        if self.params.score == "combined":
            return minmax(nll) + minmax(spread)
        if self.train_score_stats is None:
            raise RuntimeError("combined_train needs score_files() with the train split")
        mean_nll, std_nll, mean_norm, std_norm = self.train_score_stats
        return (nll - mean_nll) / max(std_nll, 1e-12) + (spread - mean_norm) / max(std_norm,
                                                                                     1e-12)

    # ----------------------------------------------------------------- storage

    def save(self, folder: Path) -> None:
        state = {f"unet.{k}": v.detach().cpu().contiguous() for k, v in
                 self.unet.state_dict().items()}
        state["feature_mean"] = self.feature_mean.contiguous()
        state["feature_std"] = self.feature_std.contiguous()
        with atomic_path(Path(folder) / "model.safetensors") as tmp:
            save_file(state, str(tmp))

    def load(self, folder: Path) -> None:
        state = load_file(str(Path(folder) / "model.safetensors"))
        self.feature_mean = state.pop("feature_mean")
        self.feature_std = state.pop("feature_std")
        self.unet.load_state_dict({k[len("unet."):]: v for k, v in state.items()})


def build_unet(params: LatentInversionParams, channels: int, sample_size: int):
    """The diffusers UNet2DModel of ``params`` for ``channels`` x ``sample_size``^2 features."""
    from diffusers import UNet2DModel

    n = len(params.block_out_channels)
    down, up = ["DownBlock2D"] * n, ["UpBlock2D"] * n
    if params.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(params.block_out_channels),
        layers_per_block=params.layers_per_block,
        down_block_types=tuple(down), up_block_types=tuple(up),
        norm_num_groups=min(32, min(params.block_out_channels)),
    )


def gaussian_nll(x: torch.Tensor) -> torch.Tensor:
    """-log N(x; 0, I) per sample, summed over every dimension but the first."""
    flat = x.float().flatten(1)
    return 0.5 * flat.pow(2).sum(1) + 0.5 * flat.shape[1] * math.log(2 * math.pi)


def minmax(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, h, w) -> (B, size, size), bilinear."""
    return F.interpolate(maps.float(), size=(size, size), mode="bilinear",
                         align_corners=False)[:, 0]


def train_epsilon(unet: torch.nn.Module, scheduler, data: torch.Tensor,
                  params: LatentInversionParams, runtime: Runtime,
                  checkpoint_dir: Path | None,
                  on_epoch_end: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Eq. 9 with gamma = 1, resumable: returns the loss per optimizer step.

    All randomness (order, timesteps, noise) comes from one generator whose
    state is checkpointed, so a resumed run ends with the same weights as an
    uninterrupted one.
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup

    device = runtime.device
    generator = torch.Generator().manual_seed(runtime.seed)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=params.learning_rate,
                                  weight_decay=params.weight_decay)
    per_epoch = math.ceil(len(data) / params.batch_size)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0,
                                                  num_training_steps=params.epochs * per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    losses: list[tuple[int, float]] = []
    first_epoch = 0
    checkpoint = checkpoint_dir / "checkpoint.pt" if checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["params"] == repr(params) and state["n_train"] == len(data):
            unet.load_state_dict(state["unet"])
            optimizer.load_state_dict(state["optimizer"])
            lr_schedule.load_state_dict(state["lr_schedule"])
            scaler.load_state_dict(state["scaler"])
            generator.set_state(state["generator"])
            losses, first_epoch = state["losses"], state["epoch"]
            log.info("resuming from %s at epoch %d", checkpoint, first_epoch)
        else:
            log.warning("ignoring %s: it was made with other parameters or data", checkpoint)
    alphas = scheduler.alphas_cumprod
    unet.train()
    for epoch in tqdm(range(first_epoch, params.epochs), desc="epochs", mininterval=5.0,
                      initial=first_epoch, total=params.epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), params.batch_size):
            x0 = data[order[start:start + params.batch_size]]
            t = torch.randint(0, params.train_timesteps, (len(x0),), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
            a = alphas[t].view(-1, 1, 1, 1)
            xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(device)  # Eq. 7
            with autocast(device):
                pred = unet(xt, t.to(device)).sample
            loss = F.mse_loss(pred.float(), noise.to(device))
            if not torch.isfinite(loss):
                raise TrainingError(f"loss is {loss.item()} at epoch {epoch}, step "
                                    f"{len(losses)}: lower learning_rate or check the features")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            lr_schedule.step()
            losses.append((len(losses), loss.item()))
        done = epoch + 1
        if checkpoint is not None and (done % params.checkpoint_every == 0
                                       and done < params.epochs):
            state = {"unet": unet.state_dict(), "optimizer": optimizer.state_dict(),
                     "lr_schedule": lr_schedule.state_dict(), "scaler": scaler.state_dict(),
                     "generator": generator.get_state(), "losses": losses, "epoch": done,
                     "params": repr(params), "n_train": len(data)}
            with atomic_path(checkpoint) as tmp:
                torch.save(state, tmp)
        if on_epoch_end is not None:
            on_epoch_end(done)
    if checkpoint is not None and checkpoint.is_file():
        checkpoint.unlink()
    return pd.DataFrame(losses, columns=["step", "loss"])

